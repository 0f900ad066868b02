"""The daemon's log (commands/daemon_log.py): levels, JSON lines, a line per run start and
finish, and a failing job's warning with its error."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocsched.commands import daemon_log

from .conftest import OCSCHED, shell_job, wait_until


@pytest.fixture
def channel() -> Iterator[io.StringIO]:
    """The `ocsched` channel configured into a buffer; put back as it was afterwards."""
    logger = logging.getLogger("ocsched")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    stream = io.StringIO()
    yield stream
    logger.handlers[:], logger.level, logger.propagate = saved


JOB = {"id": "job-1", "name": "nightly backup"}


def test_a_json_line_holds_time_level_logger_message_and_the_run_fields(channel):
    daemon_log.configure("info", "json", stream=channel)
    daemon_log.run_started("run-1", JOB)
    daemon_log.run_finished("run-1", JOB, "ok", 1.2345, None)
    started, finished = (json.loads(line) for line in channel.getvalue().splitlines())
    assert started["level"] == "info" and started["logger"] == "ocsched.runs"
    assert started["time"].endswith("Z") and "T" in started["time"]
    assert started["message"] == 'run run-1 started: job job-1 ("nightly backup")'
    assert {k: started[k] for k in ("event", "job_id", "job_name", "run_id")} == {
        "event": "run.started",
        "job_id": "job-1",
        "job_name": "nightly backup",
        "run_id": "run-1",
    }
    assert finished["event"] == "run.finished"
    assert (finished["status"], finished["duration_ms"]) == ("ok", 1234)
    assert "error" not in finished


def test_a_failed_run_is_a_warning_with_its_error(channel):
    daemon_log.configure("info", "text", stream=channel)
    daemon_log.run_finished("run-2", JOB, "error", 0.5, "exit code 3")
    (line,) = channel.getvalue().splitlines()
    assert " WARNING run run-2 finished error in 0.50 s: " in line
    assert line.endswith(': job job-1 ("nightly backup"): exit code 3')


def test_the_level_filters_lines_below_it(channel):
    daemon_log.configure("warning", "text", stream=channel)
    daemon_log.run_started("run-3", JOB)
    daemon_log.run_finished("run-3", JOB, "ok", 0.1, None)
    assert channel.getvalue() == ""
    daemon_log.run_finished("run-3", JOB, "timeout", 0.1, "Timed out")
    assert "WARNING" in channel.getvalue()


def test_a_text_run_line_is_the_line_the_logging_module_writes(channel):
    """Text run lines skip the LogRecord while the channel has only its own handler; they
    read as the formatter makes them, and go through the logging module otherwise."""
    daemon_log.configure("info", "text", stream=channel)
    daemon_log.run_started("run-4", JOB)
    (line,) = channel.getvalue().splitlines()
    formatter = logging.getLogger("ocsched").handlers[0].formatter
    record = logging.makeLogRecord({"levelname": "INFO", "msg": line.split(" INFO ", 1)[1]})
    for created in (1767225600.0, 1767225600.999, 1767225601.0705):
        record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
        assert formatter.line(created, "INFO", record.msg) == formatter.format(record)
    assert line.endswith(' INFO run run-4 started: job job-1 ("nightly backup")')
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("ocsched").addHandler(extra)
    daemon_log.run_started("run-5", JOB)
    assert [record.getMessage() for record in seen] == [
        'run run-5 started: job job-1 ("nightly backup")'
    ]
    assert channel.getvalue().count("run-5") == 1


def test_on_the_event_loop_a_turns_run_lines_go_out_in_one_write_in_order(channel):
    import asyncio

    writes: list[str] = []
    channel.write = writes.append  # type: ignore[method-assign]
    daemon_log.configure("info", "text", stream=channel)

    async def turn() -> None:
        daemon_log.run_started("run-6", JOB)
        daemon_log.run_started("run-7", JOB)
        assert writes == []  # not before the end of the turn
        await asyncio.sleep(0)
        assert len(writes) == 1
        daemon_log.run_finished("run-6", JOB, "ok", 0.1, None)
        logging.getLogger("ocsched.test").warning("something else")
        await asyncio.sleep(0)

    asyncio.run(turn())
    lines = "".join(writes).splitlines()
    assert [line.split(" ", 3)[3][:20] for line in lines] == [
        "run run-6 started: j",
        "run run-7 started: j",
        "run run-6 finished o",
        "something else",
    ]


def test_an_exception_travels_in_the_json_line(channel):
    daemon_log.configure("debug", "json", stream=channel)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("ocsched.test").exception("it failed")
    entry = json.loads(channel.getvalue())
    assert entry["message"] == "it failed" and entry["level"] == "error"
    assert "RuntimeError: boom" in entry["exception"]


@pytest.mark.parametrize(
    ("args", "env", "error"),
    [
        (["--log-level", "loud"], {}, "--log-level must be one of debug, info, warning, error"),
        ([], {"OCSCHED_LOG_LEVEL": "loud"}, "--log-level must be one of"),
        (["--log-format", "xml"], {}, "--log-format must be one of text, json, journal, got: xml"),
    ],
)
def test_an_unknown_level_or_format_is_refused_in_one_line(scheduler, args, env, error):
    result = scheduler.run("daemon", *args, env=env)
    assert result.returncode == 1
    assert error in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _daemon(scheduler, log: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*OCSCHED, "daemon", *args],
        env={**scheduler.env, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def _finished(scheduler, job_id: str) -> bool:
    runs = scheduler.ok("--json", "runs", "list", job_id).stdout
    return any(status in runs for status in ('"ok"', '"error"'))


def test_a_daemon_logs_json_lines_for_each_run_start_and_finish(scheduler, tmp_path):
    good = scheduler.add(shell_job(name="good one", payload_message="true", run_now=True))
    bad = scheduler.add(shell_job(name="bad one", payload_message="exit 3", run_now=True))
    log = tmp_path / "daemon.log"
    daemon = _daemon(scheduler, log, "--log-format", "json", "--log-level", "debug")
    try:
        wait_until(lambda: _finished(scheduler, good["id"]) and _finished(scheduler, bad["id"]))
        wait_until(lambda: log.read_text().count('"run.finished"') >= 2, what="the run lines")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    entries = [json.loads(line) for line in log.read_text().splitlines()]  # every line JSON
    assert any("started; database" in entry["message"] for entry in entries)
    runs = {(e["event"], e["job_id"]): e for e in entries if "event" in e}
    assert runs[("run.started", good["id"])]["job_name"] == "good one"
    ok = runs[("run.finished", good["id"])]
    assert (ok["level"], ok["status"]) == ("info", "ok")
    assert ok["run_id"] == runs[("run.started", good["id"])]["run_id"]
    assert isinstance(ok["duration_ms"], int) and ok["duration_ms"] >= 0
    failed = runs[("run.finished", bad["id"])]
    assert (failed["level"], failed["status"], failed["job_name"]) == (
        "warning",
        "error",
        "bad one",
    )
    assert failed["error"]


def test_the_level_comes_from_the_environment(scheduler, tmp_path):
    good = scheduler.add(shell_job(payload_message="true", run_now=True))
    bad = scheduler.add(shell_job(payload_message="exit 3", run_now=True))
    log = tmp_path / "daemon.log"
    daemon = _daemon(scheduler, log, env={"OCSCHED_LOG_LEVEL": "WARNING"})
    try:
        wait_until(lambda: _finished(scheduler, good["id"]) and _finished(scheduler, bad["id"]))
        wait_until(lambda: "finished error" in log.read_text(), what="the warning")
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    text = log.read_text()
    assert " INFO " not in text  # not the start line, nor the good run's lines
    assert f"job {bad['id']}" in text and f"job {good['id']}" not in text
