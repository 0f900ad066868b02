"""Every shell example in README.md runs as written: in the repository, with a temporary
HOME (so the scheduler's home and OpenClaw's files are the defaults under it), against the
project's fake gateway. Placeholders are filled from what earlier examples made: `<id>`
with the walk-through's job, `<run-id>` with its run, `'<json>'` with a job spec.

What a reader does by hand the test does too: the daemon examples are stopped with Ctrl-C
(SIGINT) once it has started (and run the job it was asked to run); `./scripts/test` runs
with `PYTEST_ADDOPTS=--collect-only` (the suite cannot run itself), mypy included. A
dispatch's `done` refuses a session younger than a minute or of two messages, so its
`enqueue` runs in process with the clock an hour back, followed by one more turn (`dispatch
send`), as if the sub-agent had worked. The commands' output
is only checked for being there (exit status 0, something printed): its shape is tested
where each command is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from .conftest import Scheduler, wait_until

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "reminder",
    "schedule_cron": "0 9 * * *",
    "session_target": "shell",
    "payload_message": "echo reminder",
    "run_timeout_ms": 60000,
    "origin": "system",
    "delivery_mode": "none",
}
ENDED = frozenset({"ok", "error", "timeout", "crashed", "cancelled", "skipped"})
LEDGER = {
    "old-task": {
        "sessionKey": "agent:main:subagent:old",
        "status": "done",
        "summary": "Shipped.",
        "spawnedAt": "2026-01-01T00:00:00.000Z",
        "deliverTo": "12345",
    }
}


def readme_commands() -> Iterator[str]:
    """Each command of each ```sh block, its continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        pending = ""
        for line in block.splitlines():
            pending = f"{pending}\n{line}" if pending else line
            if not pending.strip() or pending.rstrip().endswith("\\"):
                continue
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            yield pending
            pending = ""
        assert not pending.strip(), f"unfinished command in README: {pending}"


def written_to(command: str) -> list[str]:
    """The files a command's `> file` writes in the repository (comments and quotes aside)."""
    words = shlex.split(command, comments=True)
    targets = [after for word, after in zip(words, words[1:], strict=False) if word in (">", ">>")]
    targets += [word.lstrip(">") for word in words if re.fullmatch(r">>?[\w.-]+", word)]
    return [target for target in targets if re.fullmatch(r"[\w.-]+", target)]


class Walkthrough:
    def __init__(self, home: Path, gateway_env: dict[str, str]) -> None:
        self.home = home
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("SCHEDULER_", "OCSCHED_", "OPENCLAW_", "PYTEST_"))
        }
        self.env.update(HOME=str(home), TZ="UTC", **gateway_env)
        self.exports: list[str] = []
        self.job_id: str | None = None
        self.run_id: str | None = None

    def fill(self, command: str) -> str:
        if "'<json>'" in command:
            command = command.replace("'<json>'", shlex.quote(json.dumps(SPEC)))
        if "<run-id>" in command:
            command = command.replace("<run-id>", self.find_run())
        if "<id>" in command:
            assert self.job_id, f"no job made before: {command}"
            command = command.replace("<id>", self.job_id)
        return command

    def shell(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        script = "\n".join([*self.exports, command])
        return subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def json(self, *args: str) -> object:
        done = self.shell(shlex.join(["./scripts/run", "--json", *args]))
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def note_job(self) -> None:
        jobs = self.json("jobs", "list")
        assert isinstance(jobs, list) and jobs
        self.job_id = next((j["id"] for j in jobs if j["name"] == "backup"), jobs[0]["id"])

    def runs(self) -> list[dict]:
        assert self.job_id
        runs = self.json("runs", "list", self.job_id)
        assert isinstance(runs, list)
        return runs

    def find_run(self) -> str:
        runs = self.runs()
        assert runs, "no run of the walk-through's job to show"
        return runs[0]["id"]

    def daemon(self, command: str) -> None:
        """Start it as written, wait for its start (and the run it was asked for), Ctrl-C."""
        log = self.home.parent / "daemon.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                ["bash", "-c", "\n".join([*self.exports, command])],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_until(lambda: "started" in log.read_text(), 60, "the daemon to start")
                if self.job_id:
                    wait_until(self._a_run_ended, 30, "the job's run to end")
                os.killpg(process.pid, signal.SIGINT)
                assert process.wait(timeout=30) == 0, log.read_text()
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)

    def _a_run_ended(self) -> bool:
        return any(run.get("status") in ENDED for run in self.runs())

    def enqueue_an_hour_ago(self, command: str, monkeypatch: pytest.MonkeyPatch) -> str:
        import ocsched.commands.context as context

        class AnHourAgo(datetime):
            @classmethod
            def now(cls, tz=None):  # type: ignore[override]
                return datetime.now(tz) - timedelta(hours=1)

        scheduler = Scheduler(self.home / ".openclaw" / "scheduler")
        scheduler.env = dict(self.env)
        words = shlex.split(command, comments=True)
        with monkeypatch.context() as patch:
            patch.setattr(context, "datetime", AnHourAgo)
            result = scheduler.call(*words[1:])
        assert result.returncode == 0, result.stderr or result.stdout
        # ...and the session did some work: a turn more than the first (done refuses a
        # session of two messages or fewer).
        label = words[words.index("--label") + 1]
        more = scheduler.call("dispatch", "send", "--label", label, "--message", "Go on.")
        assert more.returncode == 0, more.stderr or more.stdout
        return result.stdout + result.stderr


def _openclaw_scheduler_files(home: Path) -> None:
    """What "Coming from openclaw-scheduler" imports: a database of schema 23 with one job
    (written with SQL: the tables the importer reads and has, not the anchor's schema), and
    OpenClaw's cron `jobs.json` with one job."""
    import sqlite3
    from contextlib import closing

    scheduler = home / ".openclaw" / "scheduler"
    scheduler.mkdir(parents=True)
    with closing(sqlite3.connect(scheduler / "scheduler.db")) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
        db.execute("INSERT INTO schema_migrations VALUES (23, '2026-01-01 00:00:00')")
        columns = ", ".join(SPEC)
        db.execute(f"CREATE TABLE jobs (id TEXT PRIMARY KEY, created_at TEXT, {columns})")
        values = ", ".join("?" * len(SPEC))
        row = ["old-job", "2026-01-01 00:00:00", *SPEC.values()]
        db.execute(f"INSERT INTO jobs (id, created_at, {columns}) VALUES (?, ?, {values})", row)
        db.commit()
    cron = home / ".openclaw" / "cron" / "jobs.json"
    cron.parent.mkdir(parents=True)
    schedule = {"kind": "cron", "expr": "0 8 * * *"}
    job = {"id": "oc-cron", "name": "morning", "schedule": schedule, "payload": {"message": "hi"}}
    cron.write_text(json.dumps({"jobs": [job]}))


@pytest.fixture
def written_files() -> Iterator[None]:
    """The files examples write in the repository (`audit anchor > anchor.txt`) are
    removed afterwards, unless they were there before."""
    targets = {target for command in readme_commands() for target in written_to(command)}
    there = {target for target in targets if (ROOT / target).exists()}
    yield
    for target in targets - there:
        (ROOT / target).unlink(missing_ok=True)


def test_every_shell_example_in_the_readme_runs_as_written(
    tmp_path, gateway, monkeypatch, written_files
):
    home = tmp_path / "home"
    ledger = home / ".openclaw" / "dispatch" / "labels.json"
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps(LEDGER))
    _openclaw_scheduler_files(home)
    fake = {"OPENCLAW_GATEWAY_URL": gateway.url, "OPENCLAW_GATEWAY_TOKEN": gateway.token}
    walk = Walkthrough(home, fake)
    ran = []
    for written in readme_commands():
        command = walk.fill(written)
        words = shlex.split(command, comments=True)
        if words and words[0] == "export":
            walk.exports.append(command)
        elif words in (["./scripts/run"], ["./scripts/run", "daemon", *words[2:]]):
            walk.daemon(command)
        elif words[:1] == ["./scripts/test"]:
            done = walk.shell(command, PYTEST_ADDOPTS="--collect-only -q")
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert "tests/test_readme_examples.py" in done.stdout  # this suite, collected
        elif words[1:2] == ["enqueue"]:
            assert walk.enqueue_an_hour_ago(command, monkeypatch).strip()
        else:
            done = walk.shell(command)
            assert done.returncode == 0, f"{written}\n{done.stdout}{done.stderr}"
            printed = done.stdout + done.stderr
            for target in written_to(command):  # what went to a file was printed there
                printed += (ROOT / target).read_text()
            assert printed.strip(), f"{written} printed nothing"
            if words[1:3] == ["jobs", "add"] and walk.job_id is None:
                walk.note_job()
        ran.append(written)
    assert len(ran) >= 15  # the blocks were found: the top, the walk-through, dispatch
