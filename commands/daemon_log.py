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

import asyncio
import atexit
import contextlib
import json
import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json", "journal")
TEXT_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(message)s"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FAILED = frozenset({"error", "timeout", "crashed"})
"""Run statuses logged at WARNING, with their error."""

log = logging.getLogger("ocsched.runs")
_channel = logging.getLogger("ocsched")
_structured = True
"""Whether the run lines' structured fields are wanted (the JSON format shows them; the
others do not, and a burst of runs need not build them)."""
_run_lines: list[str] = []
"""Run lines formatted and not yet written (`_write`); written at exit at the latest."""
_text_handler: logging.StreamHandler | None = None
"""The text handler `configure` made: while it is the channel's only handler, run lines
are written to its stream as it would write them, without a `LogRecord` (a burst writes
thousands a second; the record and its trip through the logging module cost twice the
line)."""


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
    # No line shows the caller's file, thread or process: the logging module's documented
    # switches spare every record the stack walk and lookups ("Optimization" in its HOWTO).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    global _structured, _text_handler
    _structured = form == "json"
    _flush_run_lines()
    _text_handler = None
    handler: logging.StreamHandler
    if form == "json":
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif form == "journal":
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s"))
    else:
        handler = _text_handler = TextHandler(stream or sys.stderr)
        handler.setFormatter(TextFormatter(TEXT_FORMAT, datefmt=TIME_FORMAT))
    channel = logging.getLogger("ocsched")
    channel.handlers[:] = [handler]
    channel.setLevel(level.upper())
    channel.propagate = False


class TextHandler(logging.StreamHandler):
    """The text format's handler: the run lines waiting to be written go first, so the
    log keeps the order in which its lines were made."""

    def emit(self, record: logging.LogRecord) -> None:
        _flush_run_lines()
        super().emit(record)


class TextFormatter(logging.Formatter):
    """The standard formatter, with each second's local time formatted once: a burst of
    runs writes thousands of lines a second."""

    _second: int | None = None
    _text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self._time_text(record.created)

    def line(self, created: float, level: str, message: str) -> str:
        """What `format` makes of a record of this time, level name and message (without a
        traceback)."""
        stamp = self._time_text(created)
        return f"{stamp}.{int((created - int(created)) * 1000):03d} {level} {message}"

    def _time_text(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self.datefmt or TIME_FORMAT, self.converter(created))
            self._second = second
        return self._text


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
    if not log.isEnabledFor(logging.INFO):
        return
    fields = None
    if _structured:
        fields = {"event": "run.started", **_job_fields(job), "run_id": run_id}
    _write(logging.INFO, f"run {run_id} started: job {_job_text(job)}", fields)


def run_finished(
    run_id: str, job: Mapping[str, Any], status: str, duration_s: float, error: str | None
) -> None:
    """INFO for a run that ended well (or was skipped or cancelled); WARNING, with its
    error, for one that failed, timed out or crashed."""
    failed = status in FAILED
    if not log.isEnabledFor(logging.WARNING if failed else logging.INFO):
        return
    fields: dict[str, Any] | None = None
    if _structured:
        fields = {
            "event": "run.finished",
            **_job_fields(job),
            "run_id": run_id,
            "status": status,
            "duration_ms": round(duration_s * 1000),
        }
        if failed:
            fields["error"] = error
    text = f"run {run_id} finished {status} in {duration_s:.2f} s: job {_job_text(job)}"
    if failed:
        _write(logging.WARNING, f"{text}: {error or 'no error text'}", fields)
    else:
        _write(logging.INFO, text, fields)


def _write(level: int, message: str, fields: dict[str, Any] | None) -> None:
    """A run line: to the text handler's stream while it is the channel's only handler
    (`_text_handler`), else through the logging module. On the event loop, the run lines
    of one turn go out in one write at its end (`_flush_run_lines`)."""
    handler = _text_handler
    if handler is not None and _channel.handlers == [handler] and not log.handlers:
        formatter = handler.formatter
        assert isinstance(formatter, TextFormatter)
        _run_lines.append(formatter.line(time.time(), logging.getLevelName(level), message))
        if len(_run_lines) == 1:
            try:
                asyncio.get_running_loop().call_soon(_flush_run_lines)
            except RuntimeError:  # no event loop: at once
                _flush_run_lines()
        return
    log.log(level, "%s", message, extra=None if fields is None else {"fields": fields})


def _flush_run_lines() -> None:
    """Write the run lines waiting (`_write`); a stream that refuses them is reported as
    the logging module reports a line it could not write (`Handler.handleError`)."""
    lines = _run_lines[:]
    _run_lines.clear()
    handler = _text_handler
    if not lines or handler is None:
        return
    try:
        with handler.lock or contextlib.nullcontext():
            handler.stream.write("".join(line + handler.terminator for line in lines))
            handler.stream.flush()
    except Exception:  # noqa: BLE001 - reported as the logging module reports a failed line
        handler.handleError(logging.makeLogRecord({"msg": lines[0]}))


def _job_fields(job: Mapping[str, Any]) -> dict[str, Any]:
    return {"job_id": job.get("id"), "job_name": job.get("name")}


def _job_text(job: Mapping[str, Any]) -> str:
    name = job.get("name")
    if isinstance(name, str) and name.isprintable() and '"' not in name and "\\" not in name:
        quoted = f'"{name}"'  # what json.dumps gives such a name, in a tenth of the time
    else:
        quoted = json.dumps(name, ensure_ascii=False)
    return f"{job.get('id')} ({quoted})"


atexit.register(_flush_run_lines)
