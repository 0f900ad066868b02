"""`ocsched runs explain <run-id>`: why a run exists and what happened, as a causal chain
read from the log. The run's cause (a clock slot, or a dispatch: manual, chain from a
parent run, retry of a failed run, replay of a crashed one, each explained in turn), every
approval, decision (overlap, resource pool, trust gates) and gateway call, the deliveries,
what the run led to, and who did each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .context import Context
from .events import event_record
from .output import CommandError, local_time, print_json, short_id

if TYPE_CHECKING:
    import argparse

MAX_DEPTH = 24
"""Causes followed back at most (a chain is at most 10 deep; retries add to it)."""


@dataclass
class Step:
    """One node of the explanation: a line, the event it stands for (when it is one), and
    what follows from it or explains it."""

    text: str
    record: dict[str, Any] | None = None
    children: list[Step] = field(default_factory=list)

    def as_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text}
        if self.record is not None:
            data.update(self.record)
            del data["position"]
        data["children"] = [child.as_data() for child in self.children]
        return data


def explain(ctx: Context, run_id: str) -> Step:
    return _Explainer(ctx).run(run_id, depth=0, followups=True)


class _Explainer:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.db = ctx.views()

    def history(self, aggregate_id: str) -> list[dict[str, Any]]:
        return [event_record(None, event) for event in self.ctx.log.events.get(aggregate_id)]

    def job_name(self, job_id: str) -> str:
        from ocsched.projections import views

        row = views.job(self.db, job_id)
        return f"{row['name']} ({short_id(job_id)})" if row else short_id(job_id)

    def run(self, run_id: str, *, depth: int, followups: bool) -> Step:
        records = self.history(run_id)
        if not records or records[0]["type"] != "Run.Scheduled":
            raise CommandError(f"Run not found: {run_id}")
        scheduled = records[0]
        fields = scheduled["fields"]
        status = next(
            (r["fields"]["status"] for r in reversed(records) if r["type"] == "Run.Finished"),
            "started" if any(r["type"] == "Run.Started" for r in records) else "not started",
        )
        head = Step(f"run {run_id} of job {self.job_name(fields['job_id'])}: {status}")
        head.children.append(self.cause(scheduled, depth))
        head.children += [Step(describe_event(r), r) for r in records]
        head.children += self.deliveries(run_id)
        if followups:
            head.children += self.led_to(run_id)
        return head

    def cause(self, scheduled: dict[str, Any], depth: int) -> Step:
        fields = scheduled["fields"]
        if fields["trigger"] == "clock" and fields["slot"]:
            slot = fields["slot"]
            text = f"why: the job's clock slot {local_time(slot, named=True) or slot} came due"
            return Step(text, scheduled)
        records = self.history(fields["dispatch_id"]) if fields["dispatch_id"] else []
        if not records:  # (an imported run: the anchor's record says what it can)
            source = fields["retry_of"] or fields["replay_of"] or fields["triggered_by_run"]
            where = "imported" if scheduled["origin"] == "import" else "recorded"
            step = Step(f"why: a {fields['trigger']} run, {where} without its dispatch", scheduled)
            return self.source(step, source, depth)
        requested = records[0]
        kind = requested["fields"]["kind"]
        source = requested["fields"]["source_run_id"]
        why = {
            "manual": f"asked for by {requested['actor']} (jobs run)",
            "chain": f"chained from parent run {short_id(source)}",
            "retry": f"retry {requested['fields']['retry_count']} of failed run {short_id(source)}",
            "replay": f"replay of crashed run {short_id(source)}",
        }.get(kind, kind)
        step = Step(f"why: {why}: {kind} dispatch {fields['dispatch_id']}", requested)
        for record in records[1:]:
            node = Step(describe_event(record), record)
            if record["type"] == "Dispatch.Held":
                node.children = self.approval(record["fields"]["approval_id"])
            step.children.append(node)
        return self.source(step, source, depth)

    def source(self, step: Step, source: str | None, depth: int) -> Step:
        """`step` with the run that caused it (a parent, a failed or crashed run) explained
        under it, when the log has that run."""
        if not source:
            return step
        if depth >= MAX_DEPTH:
            step.children.append(Step(f"run {source}: (further causes not followed)"))
        elif self.history(source):
            step.children.append(self.run(source, depth=depth + 1, followups=False))
        else:
            step.children.append(Step(f"run {source}: not in this log"))
        return step

    def approval(self, approval_id: str) -> list[Step]:
        steps = [Step(describe_event(r), r) for r in self.history(approval_id)]
        return steps + self.deliveries(approval_id)

    def deliveries(self, source_id: str) -> list[Step]:
        if self.db is None:
            return []
        rows = self.db.execute(
            "SELECT id FROM deliveries WHERE run_id = ? ORDER BY created_at, id", (source_id,)
        ).fetchall()
        steps = []
        for row in rows:
            records = self.history(row["id"])
            if records:
                step = Step(describe_event(records[0]), records[0])
                step.children = [Step(describe_event(r), r) for r in records[1:]]
                steps.append(step)
        return steps

    def led_to(self, run_id: str) -> list[Step]:
        if self.db is None:
            return []
        rows = self.db.execute(
            "SELECT * FROM dispatches WHERE source_run_id = ? ORDER BY created_at, id", (run_id,)
        ).fetchall()
        if not rows:
            return []
        step = Step("led to:")
        for row in rows:
            text = (
                f"{row['dispatch_kind']} dispatch {row['id']} of job {self.job_name(row['job_id'])}"
            )
            text += f": {row['status']}"
            if row["run_id"]:
                run_status = self.db.execute(
                    "SELECT status FROM runs WHERE id = ?", (row["run_id"],)
                ).fetchone()
                text += f", run {row['run_id']}" + (
                    f" ({run_status['status']})" if run_status else ""
                )
            step.children.append(Step(text))
        return [step]


# One line per event type


def _scheduled(f: dict) -> str:
    trigger = f["trigger"]
    if f.get("retry_count"):
        trigger += f" {f['retry_count']}" if trigger == "retry" else f", retry {f['retry_count']}"
    return f"scheduled ({trigger}) by daemon {f['owner']}"


def _started(f: dict) -> str:
    if f.get("session_key"):
        return f"the gateway accepted the agent turn: session {f['session_key']}"
    return f"started: process {f['process_id']}" if f.get("process_id") else "started"


def _finished(f: dict) -> str:
    outcome = f.get("outcome") or {}
    said = outcome.get("error_message") or outcome.get("summary")
    return f"finished {f['status']}" + (f": {_cut(said)}" if said else "")


def _gated(f: dict) -> str:
    return f"{f['gate']} gate: {f['decision']}" + (f" ({f['reason']})" if f.get("reason") else "")


def _approved(f: dict) -> str:
    return f"approved by {f['by']}" + (" (automatically, on timeout)" if f.get("automatic") else "")


def _rejected(f: dict) -> str:
    text = f"rejected by {f['by']}" + (" (automatically, on timeout)" if f.get("automatic") else "")
    return text + (f": {f['reason']}" if f.get("reason") else "")


def _delivery(f: dict) -> str:
    chunks = len(f.get("chunks") or ())
    where = ":".join(part for part in (f.get("channel"), f.get("target")) if part)
    return f"{f['purpose']} delivery to {where or '?'} ({chunks} chunk{'s' if chunks != 1 else ''})"


def _failed_attempt(f: dict) -> str:
    text = f"gateway send of chunk {f['index'] + 1} failed (attempt {f['attempt']})"
    again = f"; again at {f['retry_at']}" if f.get("retry_at") else "; given up"
    return f"{text}: {_cut(f['error'])}{again}"


EVENT_TEXTS: dict[str, Callable[[dict], str]] = {
    "Run.Scheduled": _scheduled,
    "Run.Queued": lambda f: f"queued behind run {f['behind']} (its job or resource pool busy)",
    "Run.Gated": _gated,
    "Run.Started": _started,
    "Run.Finished": _finished,
    "Run.KeyReleased": lambda f: "idempotency key released",
    "Dispatch.Requested": lambda f: f"{f['kind']} dispatch requested, due {f['scheduled_for']}",
    "Dispatch.Held": lambda f: f"held for approval {f['approval_id']}",
    "Dispatch.Released": lambda f: f"released by approval {f['approval_id']}",
    "Dispatch.Claimed": lambda f: f"claimed: run {f['run_id']}",
    "Dispatch.Cancelled": lambda f: f"cancelled: {f['reason']}",
    "Approval.Requested": lambda f: "approval requested",
    "Approval.Approved": _approved,
    "Approval.Rejected": _rejected,
    "Delivery.Requested": _delivery,
    "Delivery.ChunkSent": lambda f: (
        f"the gateway accepted chunk {f['index'] + 1} (attempt {f['attempt']})"
    ),
    "Delivery.AttemptFailed": _failed_attempt,
}


def describe_event(record: dict[str, Any]) -> str:
    text = EVENT_TEXTS.get(record["type"])
    return text(record["fields"]) if text else record["type"]


def _cut(text: str, width: int = 100) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


# Printing


def render(step: Step) -> str:
    lines = [_line(step)]
    _render_children(step, "", lines)
    return "\n".join(lines)


def _render_children(step: Step, indent: str, lines: list[str]) -> None:
    for index, child in enumerate(step.children):
        last = index == len(step.children) - 1
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{_line(child)}")
        _render_children(child, indent + ("   " if last else "│  "), lines)


def _line(step: Step) -> str:
    record = step.record
    if record is None:
        return step.text
    when = local_time(record["time"], named=True) or record["time"]
    return f"{step.text}  [{when}, {record['actor']} via {record['origin']}]"


def cli_explain(ctx: Context, args: argparse.Namespace) -> None:
    step = explain(ctx, ctx.resolve_id(args.run_id, "run"))
    if ctx.json:
        print_json(step.as_data())
    else:
        print(render(step))
