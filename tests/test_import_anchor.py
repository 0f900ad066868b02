"""`ocsched import openclaw-scheduler`: databases written by openclaw-scheduler itself
(its CLI and its dispatcher, `ocsched.testing.anchor`), plus odd rows added with SQL, are
imported and read back row by row; skipped with the reason where the anchor is missing."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ocsched.testing.anchor import Anchor, locate

from .conftest import Daemon, Scheduler, shell_job, wait_until
from .test_postgres import database_url  # noqa: F401 - a fixture


@pytest.fixture(scope="module")
def anchor() -> Anchor:
    found = locate()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def _job(anchor: Anchor, db: Path, spec: dict) -> str:
    return anchor.json(db, "jobs", "add", json.dumps(spec))["job"]["id"]


@pytest.fixture(scope="module")
def anchor_db(anchor: Anchor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every table filled by openclaw-scheduler: jobs of each kind, its dispatcher's runs
    (clock, manual, chain, a failure with its retry waiting), approvals pending, approved
    and rejected, aliases, messages read and acknowledged, agents, a task group; then odd
    rows written with SQL."""
    db = tmp_path_factory.mktemp("anchor") / "scheduler.db"
    ticking = _job(anchor, db, shell_job(name="every 2 s ✓", schedule_cron="*/2 * * * * *"))
    parent = _job(anchor, db, shell_job(name="parent", payload_message="echo ALERT"))
    for name in ("approve me", "reject me", "leave me pending"):
        child = shell_job(name=name, parent_id=parent, trigger_on="success", approval_required=1)
        del child["schedule_cron"]
        _job(anchor, db, child)
    chained = shell_job(name="chained", parent_id=parent, trigger_on="success")
    del chained["schedule_cron"]
    _job(anchor, db, chained)
    failing = _job(anchor, db, shell_job(name="failing", payload_message="exit 3", max_retries=1))
    _job(anchor, db, shell_job(name="disabled", enabled=False))
    agent = {
        "name": "agent turn",
        "schedule_cron": "0 9 * * 1",
        "payload_message": "Summarise the news",
        "run_timeout_ms": 120000,
        "delivery_mode": "announce",
        "delivery_channel": "telegram",
        "delivery_to": "@team",
        "origin": "telegram:42",
    }
    _job(anchor, db, agent)
    anchor.cli(db, "jobs", "add", json.dumps(shell_job(name="one shot")), "--in", "3d")
    for job in (parent, failing):
        anchor.cli(db, "jobs", "run", job)
    anchor.cli(db, "alias", "add", "team", "telegram", "-100123", "Team room")
    anchor.cli(db, "alias", "add", "owner", "telegram", "42")
    anchor.cli(db, "agents", "register", "ops", "Ops Agent", '["deploy","logs"]')
    sent = [
        anchor.json(db, "msg", "send", "main", "ops", text)["message"]["id"]
        for text in ("hello ünïcode 🚀", "read me", "ack me")
    ]
    anchor.cli(db, "msg", "read", sent[1])
    anchor.cli(db, "msg", "ack", sent[2], "ops")
    group = json.dumps({"name": "team", "expectedAgents": ["a", "b"]})
    group_id = anchor.json(db, "tasks", "create", group)["group"]["id"]
    anchor.cli(db, "tasks", "heartbeat", group_id, "a", "running")
    anchor.cli(db, "tasks", "heartbeat", group_id, "b", "completed", "all done")
    _dispatch(anchor, db, [parent, failing])
    approvals = {a["job_name"]: a for a in anchor.json(db, "approvals", "list")}
    anchor.cli(db, "jobs", "approve", approvals["approve me"]["job_id"])
    anchor.cli(db, "jobs", "reject", approvals["reject me"]["job_id"], "not today")
    assert ticking
    _odd_rows(db)
    return db


def _dispatch(anchor: Anchor, db: Path, manual: list[str]) -> None:
    """The anchor's dispatcher until `_settled`. Now and then, loaded, it stops in the
    middle of a shell run and never comes back: it is stopped, and the next one records
    that run crashed (its recovery) before the job is run again."""
    log = ""
    for _attempt in range(4):
        log = anchor.dispatch_for(db, 15, until=lambda: _settled(db))
        if _settled(db):
            return
        for job_id in manual:
            if not _done(db, job_id):
                anchor.cli(db, "jobs", "run", job_id)
    raise AssertionError(f"the anchor's dispatcher never got there: {log}")


def _done(db: Path, job_id: str) -> bool:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        statuses = connection.execute("SELECT status FROM runs WHERE job_id = ?", (job_id,))
        return any(status in ("ok", "error") for (status,) in statuses)


def _settled(db: Path) -> bool:
    """The dispatcher has done what the test waits for: three approvals asked for, the
    failure's retry queued, the two-second job run."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        approvals = connection.execute("SELECT count(*) FROM approvals").fetchone()[0]
        retries = connection.execute(
            "SELECT count(*) FROM job_dispatch_queue WHERE dispatch_kind = 'retry'"
        ).fetchone()[0]
        ticks = connection.execute(
            "SELECT count(*) FROM runs JOIN jobs ON jobs.id = runs.job_id"
            " WHERE jobs.schedule_cron = '*/2 * * * * *' AND runs.status = 'ok'"
        ).fetchone()[0]
    return approvals == 3 and retries >= 1 and ticks >= 1


def _odd_rows(db: Path) -> None:
    """What years of use and hand edits leave: a run whose job is gone, a job whose parent
    is gone, a spec ocsched refuses, a message answering a deleted one, a task group with
    a broken member list."""
    with closing(sqlite3.connect(db)) as connection:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute(
            "INSERT INTO runs (id, job_id, status, summary)"
            " VALUES ('orphan-run', 'gone-job', 'ok', 'ü')"
        )
        columns = "id, name, schedule_cron, session_target, payload_kind, payload_message"
        connection.execute(
            f"INSERT INTO jobs ({columns}, parent_id, trigger_on, delivery_mode) VALUES"
            " ('orphan-child', 'child of nobody', NULL, 'shell', 'shellCommand', 'echo 日本',"
            " 'gone-parent', 'success', 'none')"
        )
        connection.execute(
            f"INSERT INTO jobs ({columns}, delivery_mode) VALUES"
            " ('bad-cron', 'bad cron', 'not a cron', 'shell', 'shellCommand', 'echo', 'none')"
        )
        connection.execute(
            "INSERT INTO messages (id, from_agent, to_agent, body, subject, reply_to) VALUES"
            " ('odd-message', 'user', 'ops', '日本語 🚀', NULL, 'deleted-message')"
        )
        connection.execute(
            "INSERT INTO task_tracker (id, name, expected_agents) VALUES ('odd-group', 'x', 'nope')"
        )
        connection.execute(  # a message with a job's id
            "INSERT INTO messages (id, from_agent, to_agent, body)"
            " SELECT id, 'a', 'b', 'same id' FROM jobs WHERE name = 'parent'"
        )
        # SQLite keeps bytes as they are given, in a text column too
        connection.execute(
            "INSERT INTO messages (id, from_agent, to_agent, body) VALUES (X'3432', 'a', 'b', 'x'),"
            " ('blob-message', 'a', 'b', X'00FF')"
        )
        connection.commit()


@pytest.fixture
def imported(scheduler: Scheduler, anchor_db: Path, tmp_path: Path) -> tuple[Path, dict]:
    copy = tmp_path / "scheduler.db"
    shutil.copy(anchor_db, copy)
    before = copy.read_bytes()
    report = scheduler.ok("--json", "import", "openclaw-scheduler", str(copy)).json
    assert copy.read_bytes() == before, "the anchor's database was changed"
    return copy, report


def test_the_summary_counts_every_kind_and_names_each_skipped_row(anchor, imported):
    db, report = imported
    assert report["schema_version"] == 23
    counts = report["imported"]
    assert counts["jobs"] == 11 and counts["aliases"] == 2 and counts["task groups"] == 1
    assert counts["runs"] >= 5 and counts["approvals"] == 3 and counts["dispatches"] >= 3
    assert counts["agents"] == 2
    skipped = {(s["table"], s["id"]): s["reason"] for s in report["skipped"]}
    with closing(sqlite3.connect(db)) as connection:
        for table, kind in (("messages", "messages"), ("runs", "runs"), ("jobs", "jobs")):
            (rows,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert counts[kind] == rows - sum(1 for t, _ in skipped if t == table), table
    assert skipped[("runs", "orphan-run")] == "its job gone-job is not imported"
    assert skipped[("jobs", "bad-cron")].startswith("ocsched refuses its spec: Invalid cron")
    assert "expected_agents" in skipped[("task_tracker", "odd-group")]
    assert skipped[("messages", "b'42'")] == "its id is not text"
    assert skipped[("messages", "blob-message")] == "its body is not text"
    twin = next(job["id"] for job in anchor.json(db, "jobs", "list") if job["name"] == "parent")
    assert skipped[("messages", twin)] == "another row of the database has its id"


SENTINEL = {"schedule_cron": None}
"""A child or one-shot stored without a cron gets the at-job sentinel cron, as every job
ocsched makes does (`new_job`)."""


def _differences(theirs: dict, ours: dict) -> dict:
    return {
        key: (value, ours.get(key, "<absent>"))
        for key, value in theirs.items()
        if ours.get(key, "<absent>") != value
        and not (key in SENTINEL and value is None and ours[key] == "0 0 31 2 *")
    }


def test_jobs_list_and_get_show_the_anchor_s_rows(anchor, imported, scheduler):
    db, _ = imported
    theirs = {job["id"]: job for job in anchor.json(db, "jobs", "list")}
    ours = {job["id"]: job for job in scheduler.ok("--json", "jobs", "list").json}
    assert set(ours) == set(theirs) - {"bad-cron"}
    for job_id in ours:
        got = scheduler.ok("--json", "jobs", "get", job_id).json
        assert _differences(anchor.json(db, "jobs", "get", job_id), got) == {}, job_id
        assert _differences(theirs[job_id], ours[job_id]) == {}, job_id


def _newest_first(runs: list[dict]) -> list[tuple[str, list[str]]]:
    """Each start second's runs, newest second first: the anchor orders runs by
    `started_at` alone, so runs of one second come in no set order."""
    seconds: dict[str, list[str]] = {}
    for run in runs:
        seconds.setdefault(run["started_at"], []).append(run["id"])
    return [(second, sorted(ids)) for second, ids in seconds.items()]


def _in_order(runs: list[dict]) -> list[dict]:
    return sorted(runs, key=lambda run: (run["started_at"], run["id"]))


def test_runs_list_shows_the_anchor_s_runs(anchor, imported, scheduler):
    db, report = imported
    placeholders = {s["id"] for s in report["skipped"] if s["table"] == "runs"}
    compared = 0
    for job in anchor.json(db, "jobs", "list"):
        theirs = [
            r
            for r in anchor.json(db, "runs", "list", job["id"], "200")
            if r["id"] not in placeholders
        ]
        ours = (
            scheduler.ok("--json", "runs", "list", job["id"], "200").json
            if job["id"] != "bad-cron"
            else []
        )
        assert _newest_first(ours) == _newest_first(theirs), job["name"]
        for mine, their in zip(_in_order(ours), _in_order(theirs), strict=True):
            if their["status"] in ("pending", "running"):
                # no process of ours follows it: recorded crashed, as recovery would
                assert mine["status"] == "crashed" and mine["finished_at"]
                assert (
                    mine["error_message"]
                    == f"{their['status']} in openclaw-scheduler when it was imported"
                )
                their = {
                    **their,
                    **{k: mine[k] for k in ("status", "finished_at", "error_message")},
                }
            assert _differences(their, mine) == {}, (job["name"], their["id"])
            compared += 1
    assert compared >= 5


def test_approvals_aliases_and_the_idempotency_ledger_read_the_same(anchor, imported, scheduler):
    db, _ = imported
    pending = anchor.json(db, "approvals", "list")
    assert len(pending) == 1
    ours = scheduler.ok("--json", "approvals", "list").json
    assert [a["id"] for a in ours] == [a["id"] for a in pending]
    # ocsched has no placeholder run: its approval names the run that asked for it, and
    # the waiting dispatch as `dispatch_id`
    theirs = dict(pending[0])
    theirs["dispatch_id"] = theirs.pop("dispatch_queue_id")
    placeholder = theirs.pop("run_id")
    assert _differences(theirs, ours[0]) == {}
    parent_runs = anchor.json(db, "runs", "get", placeholder)["triggered_by_run"]
    assert ours[0]["run_id"] == parent_runs
    assert scheduler.ok("--json", "alias", "list").json == anchor.json(db, "alias", "list")
    compared = 0
    for job in scheduler.ok("--json", "jobs", "list").json:
        theirs = anchor.json(db, "idem", "status", job["id"])
        ours = scheduler.ok("--json", "idem", "status", job["id"]).json
        assert sorted(
            (r["claimed_at"], r["key"], r["run_id"], r["status"]) for r in ours
        ) == sorted((r["claimed_at"], r["key"], r["run_id"], r["status"]) for r in theirs), job[
            "name"
        ]
        assert [r["claimed_at"] for r in ours] == [r["claimed_at"] for r in theirs]
        compared += len(ours)
        for row in theirs:
            assert (
                scheduler.ok("--json", "idem", "check", row["key"]).json["run_id"] == row["run_id"]
            )
    assert compared >= 3


def test_events_tell_the_job_s_history_at_its_own_times(anchor, imported, scheduler):
    db, _ = imported
    job = next(j for j in anchor.json(db, "jobs", "list") if j["name"] == "failing")
    history = scheduler.ok("--json", "events", "show", job["id"]).json
    created = history[0]
    assert created["type"].endswith("Job.Created")
    assert created["origin"] == "import" and created["actor"] == "tester"
    assert created["time"] == job["created_at"]
    assert created["cause"].endswith(f"/jobs/{job['id']}")
    for run in anchor.json(db, "runs", "list", job["id"]):
        events = scheduler.ok("--json", "events", "show", run["id"]).json
        assert [e["type"] for e in events][-1] == "Run.Finished"
        assert (events[0]["time"], events[-1]["time"]) == (run["started_at"], run["finished_at"])


def test_a_second_import_adds_nothing(imported, scheduler):
    db, report = imported
    events = scheduler.event_count()
    again = scheduler.ok("--json", "import", "openclaw-scheduler", str(db)).json
    assert scheduler.event_count() == events
    assert set(again["imported"].values()) == {0}
    assert again["already_imported"] == sum(report["imported"].values())
    text = scheduler.ok("import", "openclaw-scheduler", str(db))  # in a pipe: no bar
    assert text.stderr == "" and "Already imported before: " in text.stdout


def test_ids_already_used_by_something_else_refuse_the_import(anchor_db, scheduler, tmp_path):
    copy = tmp_path / "scheduler.db"
    shutil.copy(anchor_db, copy)
    with closing(sqlite3.connect(copy)) as connection:
        (taken,) = connection.execute("SELECT id FROM jobs WHERE name = 'parent'").fetchone()
    scheduler.add(shell_job(id=taken, name="mine"))
    events = scheduler.event_count()
    refused = scheduler.run("import", "openclaw-scheduler", str(copy))
    assert refused.returncode == 1
    assert f"job {taken}" in refused.stderr and "nothing was imported" in refused.stderr
    assert scheduler.event_count() == events


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("INSERT INTO schema_migrations (version) VALUES (24)", "schema version 24, newer"),
        (
            "DELETE FROM schema_migrations WHERE version > 12",
            "schema version 12 (supported: 20-23)",
        ),
        ("DROP TABLE schema_migrations", "not an openclaw-scheduler database"),
    ],
)
def test_an_unknown_schema_is_a_clear_error(anchor_db, scheduler, tmp_path, change, message):
    copy = tmp_path / "scheduler.db"
    shutil.copy(anchor_db, copy)
    with closing(sqlite3.connect(copy)) as connection:
        connection.execute(change)
        connection.commit()
    refused = scheduler.run("--json", "import", "openclaw-scheduler", str(copy))
    assert refused.returncode == 1
    assert message in refused.json["error"]
    assert scheduler.event_count() == 0


def test_a_missing_database_is_named(scheduler, tmp_path):
    refused = scheduler.run("import", "openclaw-scheduler")
    assert refused.returncode == 1
    expected = scheduler.home / "scheduler.db"
    assert refused.stderr.strip() == f"No openclaw-scheduler database at {expected}"


def test_the_daemon_runs_imported_jobs_when_they_are_due(anchor, imported, scheduler):
    """The two-second job at its next fire; the child whose approval was granted in the
    anchor (its dispatch released) at once."""
    db, _ = imported
    jobs = {job["name"]: job["id"] for job in anchor.json(db, "jobs", "list")}

    def runs(name: str) -> list[dict]:
        return scheduler.ok("--json", "runs", "list", jobs[name], "200").json

    before = {name: {run["id"] for run in runs(name)} for name in ("every 2 s ✓", "approve me")}

    def new_runs(name: str) -> list[dict]:
        return [r for r in runs(name) if r["id"] not in before[name] and r["status"] == "ok"]

    daemon = Daemon(scheduler)
    try:
        tick = wait_until(lambda: new_runs("every 2 s ✓"), 20, "the imported job's next fire")
        approved = wait_until(lambda: new_runs("approve me"), 20, "the approved child's run")
    finally:
        assert daemon.stop() == 0
    assert tick[0]["trigger"] == "clock" and tick[0]["summary"] == "stdout:\nhi"
    assert approved[0]["trigger"] == "chain"


def test_an_older_schema_without_the_v0_2_columns_is_read(anchor_db, scheduler, tmp_path):
    """Schema 21: before the v0.2 identity columns (22) and `child_credential_policy` (23)."""
    copy = tmp_path / "scheduler.db"
    shutil.copy(anchor_db, copy)
    with closing(sqlite3.connect(copy)) as connection:
        later = {"jobs": ("child_credential_policy", "identity", "evidence", "contract_audit")}
        later["runs"] = ("identity_resolved", "evidence_record", "trust_evaluation")
        for table, columns in later.items():
            for column in columns:
                connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute("DELETE FROM schema_migrations WHERE version > 21")
        connection.commit()
    report = scheduler.ok("--json", "import", "openclaw-scheduler", str(copy)).json
    assert report["schema_version"] == 21
    assert report["imported"]["jobs"] == 11 and report["imported"]["runs"] >= 5
    job = scheduler.ok("--json", "jobs", "list").json[0]
    assert job["child_credential_policy"] is None and job["identity"] is None


def test_messages_agents_and_task_groups_read_the_same(anchor, imported, scheduler):
    db, _ = imported
    for command in (("msg", "outbox", "main"), ("msg", "inbox", "ops"), ("agents", "list")):
        theirs = {row["id"]: row for row in anchor.json(db, *command)}
        ours = {row["id"]: row for row in scheduler.ok("--json", *command).json}
        assert set(ours) == set(theirs), command
        for row_id, row in theirs.items():
            assert _differences(row, ours[row_id]) == {}, (command, row_id)
    group = next(g for g in anchor.json(db, "tasks", "list") if g["name"] == "team")
    status = ("tasks", "status", group["id"])
    theirs, ours = anchor.json(db, *status), scheduler.ok("--json", *status).json
    # what is counted up to now: each side's own second
    for now_based in ("elapsed", "remaining_timeout"):
        assert abs(theirs.pop(now_based) - ours.pop(now_based)) <= 2
    for their, mine in zip(theirs["agents"], ours["agents"], strict=True):
        if their["status"] == "running":
            assert abs(their.pop("duration") - mine.pop("duration")) <= 2
    assert ours == theirs


def test_a_terminal_shows_a_progress_bar(imported, scheduler, tmp_path):
    """On a terminal (a pseudo-terminal of 100 columns here) the import draws a bar on
    stderr (how far it got before it is wiped depends on tqdm's redraw interval); in a
    pipe (every other test) it does not."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    from .conftest import OCSCHED

    db, _ = imported
    env = {**scheduler.env, "SCHEDULER_HOME": str(tmp_path / "other-home")}
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a terminal of its own, then ocsched (never pytest again)
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
            os.execvpe(OCSCHED[0], [*OCSCHED, "import", "openclaw-scheduler", str(db)], env)
        finally:
            os._exit(127)
    output = bytearray()
    while True:
        try:
            data = os.read(terminal, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        output.extend(data)
    _, status = os.waitpid(pid, 0)
    os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0
    shown = output.decode(errors="replace")
    assert re.search(r"openclaw-scheduler rows: +\d+%\|", shown), shown
    assert "Imported from" in shown


@pytest.mark.postgres
def test_an_import_into_postgresql_and_again(anchor, anchor_db, tmp_path, database_url):  # noqa: F811
    host = Scheduler(tmp_path / "host")
    host.env["SCHEDULER_DB"] = database_url
    report = host.ok("--json", "import", "openclaw-scheduler", str(anchor_db)).json
    assert report["imported"]["jobs"] == 11
    theirs = {job["id"] for job in anchor.json(anchor_db, "jobs", "list")} - {"bad-cron"}
    assert {job["id"] for job in host.ok("--json", "jobs", "list").json} == theirs
    again = host.ok("--json", "import", "openclaw-scheduler", str(anchor_db)).json
    assert set(again["imported"].values()) == {0}
    assert again["already_imported"] == sum(report["imported"].values())


def test_the_dispatch_ledger_comes_with_labels(anchor_db, scheduler, tmp_path):
    ledger = tmp_path / "labels.json"
    entry = {"sessionKey": "agent:main:subagent:x", "status": "done", "summary": "Shipped."}
    ledger.write_text(json.dumps({"fix-login": {**entry, "spawnedAt": "2026-01-01T00:00:00Z"}}))
    missing = scheduler.run("import", "openclaw-scheduler", str(anchor_db), "--labels", "/nope")
    assert missing.returncode == 1 and missing.stderr.startswith("Cannot read /nope")
    assert scheduler.event_count() == 0
    args = ("--json", "import", "openclaw-scheduler", str(anchor_db), "--labels", str(ledger))
    report = scheduler.ok(*args).json
    assert report["labels"] == {"path": str(ledger), "imported": 1, "skipped": 0}
    assert scheduler.ok("--json", "dispatch", "list").json["labels"][0]["label"] == "fix-login"
    assert scheduler.ok(*args).json["labels"]["imported"] == 0


def test_an_enciphered_store_recognises_its_own_import(anchor_db, scheduler):
    scheduler.env["OCSCHED_CIPHER_KEY"] = scheduler.ok("audit", "new-key").stdout.strip()
    first = scheduler.ok("--json", "import", "openclaw-scheduler", str(anchor_db)).json
    again = scheduler.ok("--json", "import", "openclaw-scheduler", str(anchor_db)).json
    assert again["already_imported"] == sum(first["imported"].values()) > 0
