"""`ocsched service install|uninstall|status`: `ocsched daemon` as a systemd user service
(Linux) or a launchd agent (macOS), from the current settings (`adapters/service_units.py`);
`install --with-helpers` also creates setup's helper jobs (spec §28.2)."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any

from .argv import command, group
from .context import Context
from .output import CommandError, print_json

if TYPE_CHECKING:
    import argparse

    from ocsched.adapters.service_units import ServiceFiles

KINDS = ("systemd", "launchd")


def register(commands: argparse._SubParsersAction) -> None:
    service = group(
        commands,
        "service",
        help="run the daemon as a systemd user service or a launchd agent",
        examples=[
            "ocsched service install --print",
            "ocsched service install",
            "ocsched service status",
        ],
    )
    install = command(
        service,
        "install",
        cli_install,
        help="write the unit (or agent) that starts `ocsched daemon` with these settings,"
        " and start it",
        usage="[--print] [--kind systemd|launchd] [--with-secrets] [--with-helpers"
        " [--deliver-to <chat-id>] [--channel <channel>]] [--no-start]",
        description="Writes ~/.config/systemd/user/ocsched.service (launchd:"
        " ~/Library/LaunchAgents/io.ocsched.daemon.plist)\nstarting this installation's"
        " `ocsched daemon` with the settings set now (SCHEDULER_HOME, SCHEDULER_DB, …)\n"
        "as Environment= lines, then enables and starts it when the user's service manager"
        " answers.\nSecrets (tokens, cipher keys, webhook URLs, a database password) are"
        " left out unless\n--with-secrets, which writes them to"
        " ~/.config/ocsched/service.env (0600), read by the unit.",
        examples=[
            "ocsched service install --print",
            "ocsched service install --with-secrets",
            "ocsched service install --with-helpers --deliver-to 123456789",
        ],
    )
    _kind(install)
    install.add_argument("--print", action="store_true", help="show the file; install nothing")
    install.add_argument(
        "--with-secrets",
        action="store_true",
        help="write the secret settings too (systemd: to a 0600 environment file)",
    )
    install.add_argument(
        "--with-helpers",
        action="store_true",
        help="also create setup's helper jobs (the stuck-run detector; an inbox consumer"
        " with --deliver-to), skipping names that exist",
    )
    install.add_argument("--deliver-to", metavar="<chat-id>", help="where helpers report")
    install.add_argument("--channel", metavar="<channel>", help="default: telegram")
    install.add_argument(
        "--no-start", action="store_true", help="write the files; do not enable or start"
    )
    uninstall = command(
        service,
        "uninstall",
        cli_uninstall,
        help="stop and disable the service, remove its unit and environment file",
        usage="[--kind systemd|launchd]",
        examples=["ocsched service uninstall"],
    )
    _kind(uninstall)
    status = command(
        service,
        "status",
        cli_status,
        help="whether the unit is installed, up to date with these settings, and running",
        usage="[--kind systemd|launchd]",
        examples=["ocsched service status", "ocsched --json service status"],
    )
    _kind(status)


def _kind(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", metavar="systemd|launchd", help="default: launchd on macOS, else systemd"
    )


def service_files(ctx: Context, args: argparse.Namespace, *, with_secrets: bool = False):
    from ocsched.adapters import service_units

    kind = args.kind or service_units.default_kind()
    if kind not in KINDS:
        raise CommandError(f"--kind must be one of {', '.join(KINDS)}, got: {kind}")
    try:
        return service_units.service_files(
            ctx.settings,
            kind=kind,
            grace_s=ctx.settings.reactor.shutdown_grace_s,
            with_secrets=with_secrets,
            log_format=ctx.settings.log_format,
        )
    except service_units.UnitError as error:
        raise CommandError(str(error)) from None


def install(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from ocsched.adapters import service_units

    files = service_files(ctx, args, with_secrets=args.with_secrets)
    if "SCHEDULER_DB" in files.withheld:
        # Without it the service would run on another store (the home's SQLite file).
        raise CommandError(
            "SCHEDULER_DB holds a password: add --with-secrets (it goes to a 0600 file the"
            " service reads), or keep the password in PGPASSFILE"
        )
    result: dict[str, Any] = {
        "kind": files.kind,
        "unit": str(files.unit_path),
        "environment_file": str(files.env_path) if files.env_text else None,
        "withheld_secrets": list(files.withheld),
    }
    if args.with_helpers:
        result["helpers"] = create_helpers(ctx, args.deliver_to, args.channel)
    try:
        service_units.write_files(files)
    except OSError as error:
        raise CommandError(f"cannot write {error.filename}: {error.strerror}") from None
    result["started"] = False
    if args.no_start:
        result["manager"] = "not asked (--no-start)"
        return result
    unreachable = service_units.manager_reachable(ctx.settings, files.kind)
    if unreachable:
        hint = service_units.start_hint(files)
        result["manager"] = f"not asked: {unreachable}; in a login session run: {hint}"
        return result
    ok, said = service_units.manage(files.kind, "start", files)
    if not ok:
        raise CommandError(f"wrote {files.unit_path}, but starting it failed: {said}")
    result["started"] = True
    result["manager"] = said or "started"
    return result


def create_helpers(ctx: Context, deliver_to: str | None, channel: str | None) -> list[dict]:
    """Spec §28.2's helper jobs as ordinary jobs, each skipped when a job of its name
    exists (so installing again creates nothing): the stuck-run detector every 10 min
    (threshold 45); with a chat, an inbox consumer every 5 min sending to it."""
    from ocsched.adapters.service_units import daemon_command

    from .jobs import add_job, list_jobs

    program = " ".join(shlex.quote(word) for word in daemon_command()[:-1])
    delivery: dict[str, Any] = {"delivery_mode": "none"}
    if deliver_to:
        delivery = {
            "delivery_mode": "announce",
            "delivery_channel": channel or "telegram",
            "delivery_to": deliver_to,
        }
    wanted = [
        {
            "name": "Stuck Run Detector",
            "schedule_cron": "*/10 * * * *",
            "payload_message": f"{program} runs stuck --threshold-min 45",
            "payload_timeout_seconds": 30,
            **delivery,
        }
    ]
    if deliver_to:
        target = shlex.quote(deliver_to)
        wanted.append(
            {
                "name": "Inbox Consumer",
                "schedule_cron": "*/5 * * * *",
                "payload_message": f"{program} inbox-consumer --to {target}"
                + (f" --channel {shlex.quote(channel)}" if channel else ""),
                "payload_timeout_seconds": 60,
                **delivery,
            }
        )
    existing = {job["name"] for job in list_jobs(ctx)}
    done = []
    for spec in wanted:
        if spec["name"] in existing:
            done.append({"name": spec["name"], "created": False, "reason": "already exists"})
            continue
        spec.update(
            session_target="shell",
            payload_kind="shellCommand",
            run_timeout_ms=120000,
            overlap_policy="skip",
            origin="system",
        )
        job = add_job(ctx, spec)
        done.append({"name": spec["name"], "created": True, "id": job["id"]})
    return done


def uninstall(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from ocsched.adapters import service_units

    files = service_files(ctx, args)
    result: dict[str, Any] = {"kind": files.kind, "unit": str(files.unit_path)}
    unreachable = service_units.manager_reachable(ctx.settings, files.kind)
    if unreachable:
        result["manager"] = f"not asked: {unreachable}"
    elif files.unit_path.exists():
        ok, said = service_units.manage(files.kind, "stop", files)
        result["manager"] = said or "stopped" if ok else f"stopping failed: {said}"
    result["removed"] = service_units.remove_files(files)
    return result


def status(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from ocsched.adapters import service_units

    files = service_files(ctx, args)
    installed = files.unit_path.exists()
    result: dict[str, Any] = {
        "kind": files.kind,
        "unit": str(files.unit_path),
        "installed": installed,
        "up_to_date": installed and _current(files),
        "state": None,
    }
    unreachable = service_units.manager_reachable(ctx.settings, files.kind)
    if unreachable:
        result["state_unknown"] = unreachable
    elif installed:
        ok, said = service_units.manage(files.kind, "state", files)
        result["state"] = said or ("active" if ok else "inactive")
    return result


def _current(files: ServiceFiles) -> bool:
    try:
        return files.unit_path.read_text(encoding="utf-8") == files.unit_text
    except OSError:
        return False


def cli_install(ctx: Context, args: argparse.Namespace) -> None:
    if args.print:
        files = service_files(ctx, args, with_secrets=args.with_secrets)
        print(files.unit_text, end="")
        if files.env_text is not None:
            print(f"\n# {files.env_path} (0600):\n{files.env_text}", end="")
        if files.withheld:
            print(_withheld(files.withheld), file=sys.stderr)
        return
    result = install(ctx, args)
    if ctx.json:
        print_json({"ok": True, **result})
        return
    print(f"Wrote {result['unit']}")
    if result["environment_file"]:
        print(f"Wrote {result['environment_file']} (0600)")
    if result["withheld_secrets"]:
        print(_withheld(result["withheld_secrets"]))
    for helper in result.get("helpers", []):
        state = f"created {helper['id']}" if helper["created"] else helper["reason"]
        print(f"Helper job {helper['name']}: {state}")
    print(f"Service manager: {result['manager']}")


def _withheld(names: Any) -> str:
    return (
        "Left out (secrets): "
        + ", ".join(names)
        + "; add --with-secrets to write them to a 0600 file the service reads"
    )


def cli_uninstall(ctx: Context, args: argparse.Namespace) -> None:
    result = uninstall(ctx, args)
    if ctx.json:
        print_json({"ok": True, **result})
        return
    if "manager" in result:
        print(f"Service manager: {result['manager']}")
    print("Removed " + ", ".join(result["removed"]) if result["removed"] else "Nothing installed")


def cli_status(ctx: Context, args: argparse.Namespace) -> None:
    result = status(ctx, args)
    if ctx.json:
        print_json(result)
        return
    if not result["installed"]:
        print(f"Not installed ({result['unit']})")
        return
    fresh = "up to date" if result["up_to_date"] else "differs from these settings"
    print(f"Installed: {result['unit']} ({fresh})")
    state = result["state"] or f"unknown: {result['state_unknown']}"
    print(f"State: {state}")
