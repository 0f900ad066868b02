"""`ocsched audit verify|anchor|new-key`: the log's hash chain (adapters/chain.py) and keys."""

from __future__ import annotations

import re
import sys
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

from .argv import command, group, whole_number
from .context import Context
from .output import CommandError, local_time, print_json, progress

if TYPE_CHECKING:
    import argparse

    from ocsched.adapters.chain import ChainReader, Finding, Verdict

ANCHOR = re.compile(r"^(?:(\d+):)?([0-9a-fA-F]{64})$")


def register(commands: argparse._SubParsersAction) -> None:
    audit = group(
        commands,
        "audit",
        help="tamper evidence: verify the log's hash chain, print its head to keep elsewhere",
        examples=[
            "ocsched audit verify",
            "ocsched audit anchor > anchor-$(date +%F).txt",
            "ocsched audit verify --head $(cat anchor-2026-12-01.txt)",
        ],
    )
    verify = command(
        audit,
        "verify",
        cli_verify,
        help="recompute every event's hash link and name the first event edited, deleted,"
        " inserted or reordered; exit 0 only for an intact log",
        usage="[--from POSITION] [--head ANCHOR]",
        examples=[
            "ocsched audit verify",
            "ocsched audit verify --from 500000",
            'ocsched audit verify --head "$(cat anchor-2026-12-01.txt)"',
            "ocsched --json audit verify",
        ],
    )
    verify.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        help="start at this position, trusting the stored link before it (resume a walk)",
    )
    verify.add_argument(
        "--head",
        metavar="ANCHOR",
        help="an anchor printed earlier (POSITION:HASH): prove nothing up to it was rewritten",
    )
    command(
        audit,
        "anchor",
        cli_anchor,
        help="print the chain's head (POSITION:HASH) to keep outside the database",
        usage="",
        examples=["ocsched audit anchor", "ocsched --json audit anchor"],
    )
    command(
        audit,
        "new-key",
        cli_new_key,
        help="print a new random key for OCSCHED_CIPHER_KEY (events encrypted at rest)",
        usage="",
        examples=["ocsched audit new-key", "export OCSCHED_CIPHER_KEY=$(ocsched audit new-key)"],
    )


def _reader(ctx: Context) -> ChainReader:
    from ocsched.adapters.chain import ChainReader
    from ocsched.adapters.cipher import CipherKeyError
    from ocsched.adapters.event_store import open_event_log

    try:
        log, owned = ctx.log, None
    except CipherKeyError:  # the chain is over the stored bytes: verify without the key
        log = owned = open_event_log(ctx.settings, check_key=False)
    reader = ChainReader(log.recorder, mapper=log.mapper, owned=owned)
    if not reader.has_chain():
        reader.close()
        raise CommandError(
            "this store has no hash chain yet (it was opened read-only since the upgrade):"
            " run any command as its owner once, then verify"
        )
    return reader


def _anchor_text(position: int, digest: bytes) -> str:
    return f"{position}:{digest.hex()}"


def _parse_anchor(text: str) -> tuple[int | None, bytes]:
    match = ANCHOR.match(text.strip())
    if match is None:
        raise CommandError(
            f"--head {text!r} is not an anchor: POSITION:HASH (64 hex digits), as"
            " `ocsched audit anchor` prints it"
        )
    return (int(match[1]) if match[1] else None), bytes.fromhex(match[2])


def cli_verify(ctx: Context, args: argparse.Namespace) -> None:
    from ocsched.adapters.chain import InterruptedVerify, verify

    start = None
    if args.start is not None:
        start = whole_number(args.start)
        if start is None:
            raise CommandError(f"--from {args.start!r} is not a position (a whole number ≥ 1)")
    anchor = _parse_anchor(args.head) if args.head is not None else None
    if anchor is not None and start is not None:
        raise CommandError("--head checks the chain from its first link: drop --from")
    with closing(_reader(ctx)) as reader:
        began = time.monotonic()
        head = reader.head()
        if start is not None and start > head:
            raise CommandError(f"--from {start} is past the log's newest event ({head})")
        total = max(head - (start or 1) + 1, 0)
        try:
            with progress(ctx.json, total, "audit verify") as advance:
                verdict = verify(reader, start=start, anchor=anchor, advance=advance)
        except InterruptedVerify as interrupted:
            resume = interrupted.verdict.stopped_at
            print(
                f"Interrupted: resume with `ocsched audit verify --from {resume}`", file=sys.stderr
            )
            raise SystemExit(130) from None
        seconds = time.monotonic() - began
        report = _report(ctx, reader, verdict, seconds)
    if ctx.json:
        print_json(report)
    else:
        print("\n".join(_report_lines(report)))
    if verdict.finding is not None:
        raise SystemExit(1)


def _report(ctx: Context, reader: ChainReader, verdict: Verdict, seconds: float) -> dict:
    report: dict[str, Any] = {
        "ok": verdict.finding is None,
        "intact": verdict.finding is None,
        "from": verdict.start,
        "to": verdict.end,
        "checked": verdict.checked,
        "chain_start": verdict.chain_start,
        "unchained": verdict.unchained,
        "head": _anchor_text(*verdict.head) if verdict.head else None,
        "anchor_matched": verdict.anchor_matched,
        "seconds": round(seconds, 3),
        "events_per_s": round(verdict.checked / seconds) if seconds else None,
    }
    if verdict.finding is not None:
        report["finding"] = _finding(ctx, reader, verdict.finding)
    return report


def _finding(ctx: Context, reader: ChainReader, finding: Finding) -> dict:
    described = _event(ctx, reader, finding.position)
    record: dict[str, Any] = {
        "kind": finding.kind,
        "position": finding.position,
        "detail": finding.detail,
        **described,
    }
    if finding.other is not None:
        record["now_at"] = finding.other
    if not described:  # gone: say what is around it
        record["after"] = _neighbour(ctx, reader, finding.position, -1)
        record["before"] = _neighbour(ctx, reader, finding.position, +1)
    return record


def _event(ctx: Context, reader: ChainReader, position: int) -> dict:
    """The event now at `position`: aggregate, type, time (when it can be decoded)."""
    row = reader.event_at(position)
    if row is None:
        return {}
    originator_id, topic = row[1].decode(errors="replace"), row[3].decode(errors="replace")
    version, state = row[2], row[4]
    described: dict[str, Any] = {
        "aggregate": originator_id,
        "version": version,
        "type": topic.rpartition(":")[2],
        "time": None,
    }
    try:
        from eventsourcing.persistence import StoredEvent

        event: Any = reader.mapper.to_domain_event(
            StoredEvent(originator_id, version, topic, state)
        )
        described["time"] = event.timestamp.isoformat()
    except Exception:  # noqa: BLE001 - an edited state may no longer decode
        pass
    return described


def _neighbour(ctx: Context, reader: ChainReader, position: int, step: int) -> dict | None:
    events, _ = (
        reader.page(max(position - 1000, 0), position - 1)
        if step < 0
        else reader.page(position, position + 1000)
    )
    if not events:
        return None
    near = events[-1] if step < 0 else events[0]
    return {"position": near[0], **_event(ctx, reader, near[0])}


def _where(record: dict | None) -> str:
    if not record:
        return "-"
    time_text = local_time(record.get("time"), named=True) or "time unknown"
    return (
        f"{record.get('type')} of {record.get('aggregate')} v{record.get('version')}, {time_text}"
    )


def _report_lines(report: dict) -> list[str]:
    lines = []
    finding = report.get("finding")
    if finding is not None:
        what = f"position {finding['position']} {finding['kind'].upper()}"
        if finding.get("aggregate"):
            lines.append(f"TAMPERED: {what}: {_where(finding)}")
        else:
            lines.append(
                f"TAMPERED: {what}: between {_where(finding.get('after'))} and"
                f" {_where(finding.get('before'))}"
            )
        lines.append(f"  {finding['detail']}")
        if finding.get("now_at"):
            lines.append(f"  (now at position {finding['now_at']})")
        if finding["kind"] != "rewritten":
            lines.append(f"  {report['checked']:,} events verified before it")
        return lines
    lines.append(
        f"Intact: {report['checked']:,} events verified, positions {report['from']} to"
        f" {report['to']} ({report['seconds']:.1f} s, {report['events_per_s'] or 0:,} events/s)"
    )
    if not report["to"]:
        lines[-1] = "Intact: the log is empty"
    elif report["chain_start"] is None:
        lines.append(
            f"No event is chained yet: the {report['unchained']:,} events were written before"
            " this version chained events (upgrade); events from now on are chained"
        )
    elif report["unchained"]:
        lines.append(
            f"Not covered: positions {report['from']} to {report['chain_start'] - 1}"
            f" ({report['unchained']:,} events) were written before the chain began"
            f" (upgrade at position {report['chain_start']})"
        )
    if report["anchor_matched"]:
        lines.append("Anchor matched: nothing up to it was rewritten since it was taken")
    if report["head"]:
        lines.append(f"Head: {report['head']}")
    return lines


def cli_anchor(ctx: Context, args: argparse.Namespace) -> None:
    with closing(_reader(ctx)) as reader:
        _, _, last = reader.bounds()
    if last is None:
        raise CommandError("no event is chained yet: nothing to anchor")
    position, _, digest = last
    if ctx.json:
        print_json(
            {"anchor": _anchor_text(position, digest), "position": position, "hash": digest.hex()}
        )
    else:
        print(_anchor_text(position, digest))


def cli_new_key(ctx: Context, args: argparse.Namespace) -> None:
    from ocsched.adapters.cipher import new_key

    key = new_key()
    if ctx.json:
        print_json({"key": key})
    else:
        print(key)
