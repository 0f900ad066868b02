"""`ocsched service install|uninstall|status`: the unit as systemd reads it, the files
install writes and uninstall removes, setup's helper jobs; the daemon under a service
manager's signals (a real process)."""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from ocsched.adapters import service_units

from .conftest import shell_job, wait_until
from .test_daemon import runs_of


@pytest.fixture
def service_env(scheduler, tmp_path):
    """The scheduler with a private config folder, no user service manager to call, and a
    secret among its settings."""
    scheduler.env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        OPENCLAW_GATEWAY_TOKEN="tok-secret-1",
        OCSCHED_SHUTDOWN_GRACE_S="20",
    )
    scheduler.env.pop("XDG_RUNTIME_DIR", None)
    return scheduler


def unit_lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_print_shows_the_unit_with_this_installation_and_settings_but_no_secret(service_env):
    result = service_env.ok("service", "install", "--print", "--kind", "systemd")
    unit = result.stdout
    (exec_start,) = unit_lines(unit, "ExecStart")
    program = exec_start.split()[0]
    assert os.path.isabs(program) and os.access(program, os.X_OK)
    assert exec_start.endswith("daemon --log-format journal")
    environment = unit_lines(unit, "Environment")
    assert f'"SCHEDULER_HOME={service_env.home}"' in environment
    assert '"OCSCHED_SHUTDOWN_GRACE_S=20"' in environment
    assert '"TZ=UTC"' in environment  # what the jobs' shells and zones inherit
    assert "tok-secret-1" not in unit
    assert "OPENCLAW_GATEWAY_TOKEN" in result.stderr  # named as left out
    assert unit_lines(unit, "KillMode") == ["mixed"]
    assert unit_lines(unit, "TimeoutStopSec") == ["50"]  # the grace, 20 s, and 30
    assert not (Path(service_env.env["XDG_CONFIG_HOME"]) / "systemd").exists()


def test_the_printed_unit_passes_systemd_analyze_verify(service_env, tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    odd_home = tmp_path / 'a home with "quotes", 100% and $HOME'
    service_env.env["SCHEDULER_HOME"] = str(odd_home)
    unit = service_env.ok("service", "install", "--print", "--kind", "systemd").stdout
    folder = tmp_path / "units"
    folder.mkdir()
    (folder / "ocsched.service").write_text(unit)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    checked = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(folder / "ocsched.service")],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")
    (value,) = [v for v in unit_lines(unit, "Environment") if "SCHEDULER_HOME" in v]
    assert value == '"SCHEDULER_HOME=' + str(odd_home).replace('"', '\\"').replace("%", "%%") + '"'


def test_a_verify_of_a_broken_unit_fails(tmp_path):
    """The check above can fail: systemd-analyze reports a unit it cannot run."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here")
    broken = tmp_path / "broken.service"
    broken.write_text("[Service]\nExecStart=not-absolute daemon\nNoSuchKey=1\n")
    checked = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0 and "NoSuchKey" in checked.stderr


def test_install_and_uninstall_write_and_remove_the_files(service_env):
    config = Path(service_env.env["XDG_CONFIG_HOME"])
    installed = service_env.ok("--json", "service", "install", "--kind", "systemd").json
    unit = config / "systemd" / "user" / "ocsched.service"
    assert installed["unit"] == str(unit)
    assert installed["withheld_secrets"] == ["OPENCLAW_GATEWAY_TOKEN"]
    assert installed["started"] is False
    assert installed["manager"].startswith("not asked: no user service manager")
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    assert "tok-secret-1" not in unit.read_text()
    assert service_env.ok("--json", "service", "status", "--kind", "systemd").json["up_to_date"]

    with_secrets = service_env.ok(
        "--json", "service", "install", "--kind", "systemd", "--with-secrets"
    ).json
    env_file = config / "ocsched" / "service.env"
    assert with_secrets["environment_file"] == str(env_file)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    assert "OPENCLAW_GATEWAY_TOKEN='tok-secret-1'" in env_file.read_text()
    assert f"EnvironmentFile=-{env_file}" in unit.read_text()

    service_env.env["OCSCHED_SHUTDOWN_GRACE_S"] = "60"  # settings changed since
    status = service_env.ok("--json", "service", "status", "--kind", "systemd").json
    assert (status["installed"], status["up_to_date"]) == (True, False)

    removed = service_env.ok("--json", "service", "uninstall", "--kind", "systemd").json
    assert sorted(removed["removed"]) == sorted([str(unit), str(env_file)])
    assert not unit.exists() and not env_file.exists()
    assert service_env.ok("service", "status", "--kind", "systemd").stdout.startswith(
        "Not installed"
    )


def test_enabling_through_systemctl():
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime or not os.path.exists(os.path.join(runtime, "bus")):
        pytest.skip("no user service manager here (no $XDG_RUNTIME_DIR/bus): systemctl untested")
    pytest.skip("a user service manager is here, but a test must not enable units in it")


def test_the_service_manager_is_asked_in_order(service_env, tmp_path):
    """A stand-in `systemctl` on PATH (a script that records its arguments), and a user
    bus socket's path, so install, status and uninstall ask it as they would the real one."""
    bin_dir, runtime = tmp_path / "bin", tmp_path / "runtime"
    bin_dir.mkdir()
    runtime.mkdir()
    (runtime / "bus").touch()
    calls = tmp_path / "calls.txt"
    fake = bin_dir / "systemctl"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n[ "$2" = is-active ] && echo active\nexit 0\n'
    )
    fake.chmod(0o755)
    service_env.env.update(
        PATH=f"{bin_dir}:{service_env.env['PATH']}", XDG_RUNTIME_DIR=str(runtime)
    )
    installed = service_env.ok("--json", "service", "install", "--kind", "systemd").json
    assert installed["started"] is True
    assert service_env.ok("--json", "service", "status", "--kind", "systemd").json["state"] == (
        "active"
    )
    service_env.ok("service", "uninstall", "--kind", "systemd")
    assert calls.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable ocsched.service",
        "--user restart ocsched.service",
        "--user is-active ocsched.service",
        "--user disable --now ocsched.service",
        "--user daemon-reload",
    ]
    fake.write_text("#!/bin/sh\necho 'Failed to connect to bus' >&2; exit 1\n")
    failed = service_env.run("service", "install", "--kind", "systemd")
    assert failed.returncode == 1
    assert failed.stderr.strip().endswith(
        "but starting it failed: systemctl --user daemon-reload: Failed to connect to bus"
    )


def test_a_launchd_agent_is_a_plist_with_the_same_settings(service_env):
    text = service_env.ok("service", "install", "--print", "--kind", "launchd").stdout
    agent = plistlib.loads(text.encode())
    assert agent["Label"] == "io.ocsched.daemon"
    assert agent["ProgramArguments"][-1] == "daemon"
    assert os.path.isabs(agent["ProgramArguments"][0])
    assert agent["EnvironmentVariables"]["SCHEDULER_HOME"] == str(service_env.home)
    assert "OPENCLAW_GATEWAY_TOKEN" not in agent["EnvironmentVariables"]
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    secret = service_env.ok(
        "service", "install", "--print", "--kind", "launchd", "--with-secrets"
    ).stdout
    assert plistlib.loads(secret.encode())["EnvironmentVariables"]["OPENCLAW_GATEWAY_TOKEN"] == (
        "tok-secret-1"
    )


def test_a_database_url_with_a_password_is_a_secret(service_env):
    service_env.env["SCHEDULER_DB"] = "postgresql://me:pw@127.0.0.1:5432/test"
    result = service_env.ok("service", "install", "--print", "--kind", "systemd")
    assert "pw@" not in result.stdout and "SCHEDULER_DB" in result.stderr
    refused = service_env.run("service", "install", "--no-start")
    assert refused.returncode == 1 and refused.stderr.startswith("SCHEDULER_DB holds a password")
    assert not (Path(service_env.env["XDG_CONFIG_HOME"]) / "systemd").exists()
    service_env.env["SCHEDULER_DB"] = "postgresql://me@127.0.0.1:5432/test"
    shown = service_env.ok("service", "install", "--print", "--kind", "systemd").stdout
    assert '"SCHEDULER_DB=postgresql://me@127.0.0.1:5432/test"' in shown


def test_bad_kind_and_a_line_break_are_one_line_errors(service_env):
    bad = service_env.run("service", "install", "--print", "--kind", "upstart")
    assert bad.returncode == 1 and bad.stderr.strip().startswith("--kind must be one of")
    service_env.env["OCSCHED_ACTOR"] = "two\nlines"
    broken = service_env.run("--json", "service", "install", "--print")
    assert broken.returncode == 1 and "OCSCHED_ACTOR holds a line break" in broken.json["error"]


def test_every_setting_the_settings_module_reads_is_carried():
    source = Path(service_units.__file__).with_name("settings.py").read_text()
    read = set(re.findall(r'env(?:\.get\(|\[|, )"([A-Z][A-Z0-9_]+)"', source))
    read |= set(re.findall(r'\("(?:loki|webhook)", "([A-Z_]+)"\)', source))
    assert read - {"HOME"} == set(service_units.SETTING_NAMES)


def test_with_helpers_creates_setups_jobs_once(service_env):
    first = service_env.ok(
        "--json", "service", "install", "--no-start", "--with-helpers", "--deliver-to", "4242"
    ).json
    assert [(h["name"], h["created"]) for h in first["helpers"]] == [
        ("Stuck Run Detector", True),
        ("Inbox Consumer", True),
    ]
    jobs = {job["name"]: job for job in service_env.ok("--json", "jobs", "list").json}
    detector = jobs["Stuck Run Detector"]
    assert detector["schedule_cron"] == "*/10 * * * *"
    assert detector["payload_message"].endswith("runs stuck --threshold-min 45")
    assert (detector["delivery_mode"], detector["delivery_to"]) == ("announce", "4242")
    assert jobs["Inbox Consumer"]["payload_message"].endswith("inbox-consumer --to 4242")
    detecting = subprocess.run(  # the detector's command as its run's shell runs it
        detector["payload_message"],
        shell=True,
        env=service_env.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (detecting.returncode, detecting.stdout) == (
        0,
        "No stale runs older than 45 minute(s).\n",
    )
    again = service_env.ok("--json", "service", "install", "--no-start", "--with-helpers").json
    assert [h["created"] for h in again["helpers"]] == [False]
    assert len(service_env.ok("--json", "jobs", "list").json) == 2


# The daemon under a service manager's signals


def test_sighup_keeps_the_daemon_and_sigterm_lets_the_run_finish(scheduler, daemons):
    daemon = daemons.start("--grace", "10", "--log-format", "journal")
    job = scheduler.add(shell_job(payload_message="sleep 1; echo done"), "--in", "1s")
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP" in daemon.log, what="the SIGHUP line")
    assert daemon.process.poll() is None
    assert "<6>INFO SIGHUP: timers reloaded" in daemon.log
    wait_until(lambda: runs_of(scheduler, job["id"]), what="the run to start")
    assert daemon.stop(signal.SIGTERM) == 0
    (run,) = runs_of(scheduler, job["id"])
    assert (run["status"], run["shell_stdout"]) == ("ok", "done")
    assert "<6>INFO stopped" in daemon.log


def test_journal_lines_carry_their_level_and_a_traceback_every_line_of_it():
    import io
    import logging

    from ocsched.commands import daemon_log

    stream = io.StringIO()
    log = logging.getLogger("ocsched")
    before = (list(log.handlers), log.level, log.propagate)
    daemon_log.configure("debug", "journal", stream)
    try:
        log.debug("fine detail")
        log.warning("run failed")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("handler error")
    finally:
        log.handlers[:], log.level, log.propagate = before
    lines = stream.getvalue().splitlines()
    assert lines[:3] == ["<7>DEBUG fine detail", "<4>WARNING run failed", "<3>ERROR handler error"]
    assert len(lines) > 4 and all(line.startswith("<3>") for line in lines[3:])
    assert lines[-1] == "<3>ValueError: boom"
