"""The daemon's log: the one channel `ocsched` (and its children) through the standard
`logging` module, on stderr, as text lines or one JSON object per line, at the level asked
for (`--log-level`, else `OCSCHED_LOG_LEVEL`, else info); and the line each run writes as
it starts and as it finishes.

A JSON line holds `time` (UTC, milliseconds), `level`, `logger` and `message`, then the
record's structured fields (a run line's `event`, `job_id`, `job_name`, `run_id`,
`status`, `duration_ms`, `error`) and `exception` when there is a traceback.

A journal line (`--log-format journal`, what `ocsched service install` asks for under
systemd) is a text line without the time, which the journal records itself, after the
`<N>` syslog priority prefix journald reads a line's level from (sd-daemon(3)).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json", "journal")
TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
FAILED = frozenset({"error", "timeout", "crashed"})
"""Run statuses logged at WARNING, with their error."""

log = logging.getLogger("ocsched.runs")


class LogSettingError(ValueError):
    pass


def choose(value: str | None, setting: str, allowed: tuple[str, ...], default: str) -> str:
    """A level or format from the flag or the environment (case-insensitive)."""
    if value is None or value == "":
        return default
    if value.lower() not in allowed:
        raise LogSettingError(f"{setting} must be one of {', '.join(allowed)}, got: {value}")
    return value.lower()


def configure(level: str = "info", form: str = "text", stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    elif form == "journal":
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    channel = logging.getLogger("ocsched")
    channel.handlers[:] = [handler]
    channel.setLevel(level.upper())
    channel.propagate = False


PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = PRIORITIES.get(record.levelname, 6)
        # Every line of a traceback is a journal entry of its own: each gets the prefix.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).split("\n"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            entry.update((key, value) for key, value in fields.items() if key not in entry)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def run_started(run_id: str, job: Mapping[str, Any]) -> None:
    fields = {"event": "run.started", **_job_fields(job), "run_id": run_id}
    log.info("run %s started: job %s", run_id, _job_text(job), extra={"fields": fields})


def run_finished(
    run_id: str, job: Mapping[str, Any], status: str, duration_s: float, error: str | None
) -> None:
    """INFO for a run that ended well (or was skipped or cancelled); WARNING, with its
    error, for one that failed, timed out or crashed."""
    fields = {
        "event": "run.finished",
        **_job_fields(job),
        "run_id": run_id,
        "status": status,
        "duration_ms": round(duration_s * 1000),
    }
    text = f"run {run_id} finished {status} in {duration_s:.2f} s: job {_job_text(job)}"
    if status in FAILED:
        fields["error"] = error
        log.warning("%s: %s", text, error or "no error text", extra={"fields": fields})
    else:
        log.info("%s", text, extra={"fields": fields})


def _job_fields(job: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": job.get("id"), "job_name": job.get("name")}


def _job_text(job: Mapping[str, Any]) -> str:
    return f"{job.get('id')} ({json.dumps(job.get('name'), ensure_ascii=False)})"
