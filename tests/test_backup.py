"""`ocsched backup` and `ocsched restore`: an online copy taken while a daemon writes,
restored into a new home with the same read models; retention; refusals; PostgreSQL."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import stat
import threading
import uuid
from pathlib import Path

import pytest

from .conftest import Scheduler, shell_job, wait_until
from .test_daemon import every_second, finished_runs
from .test_postgres import ADMIN_URL, database_url  # noqa: F401 - a fixture


def read_models(path: Path) -> dict[str, list[str]]:
    """Every read-model table's rows, in a stable order."""
    from ocsched.projections.runner import all_projections

    db = sqlite3.connect(path)
    try:
        tables: dict[str, list[str]] = {}
        for projection in all_projections():
            for table in projection.tables:
                tables[table] = sorted(map(repr, db.execute(f"SELECT * FROM [{table}]")))
        return tables
    finally:
        db.close()


def stored_events(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events"
            " ORDER BY rowid"
        ).fetchall()
    finally:
        db.close()


def fill(scheduler: Scheduler) -> None:
    """A store with jobs in several states, an alias, and a run."""
    first = scheduler.add(shell_job(name="nightly"))
    scheduler.add(
        shell_job(name="child", parent_id=first["id"], schedule_cron=None, trigger_on="success")
    )
    scheduler.ok("jobs", "disable", first["id"])
    scheduler.ok("jobs", "update", first["id"], '{"max_retries": 3}')
    scheduler.ok("alias", "add", "ops", "telegram", "-100200", "the ops room")


def test_a_backup_restores_into_a_new_home_with_identical_read_models(scheduler, tmp_path):
    fill(scheduler)
    done = scheduler.ok("--json", "backup").json
    path = Path(done["path"])
    assert path.parent == scheduler.home / "backups"
    assert path.name.startswith("ocsched-") and path.suffix == ".db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert done["events"] == scheduler.event_count()

    restored = Scheduler(tmp_path / "restored")
    result = restored.ok("--json", "restore", str(path)).json
    assert (result["events"], result["read_models_match"]) == (done["events"], True)
    assert read_models(restored.db_path) == read_models(scheduler.db_path)
    assert stored_events(restored.db_path) == stored_events(scheduler.db_path)
    assert restored.ok("audit", "verify").returncode == 0
    assert stat.S_IMODE(restored.db_path.stat().st_mode) == 0o600


def test_a_compressed_backup_in_a_folder_of_its_own_restores_the_newest(scheduler, tmp_path):
    fill(scheduler)
    folder = tmp_path / "elsewhere"
    scheduler.ok("backup", str(folder), "--gzip")
    scheduler.add(shell_job(name="later"))
    newest = Path(scheduler.ok("--json", "backup", str(folder), "--gzip").json["path"])
    assert newest.name.endswith(".db.gz")
    with gzip.open(newest) as packed:
        assert packed.read(16) == b"SQLite format 3\0"
    restored = Scheduler(tmp_path / "restored")
    restored.ok("restore", str(folder))  # the folder: its newest backup
    assert [j["name"] for j in restored.ok("--json", "jobs", "list").json] == [
        "child",
        "later",
        "nightly",
    ]
    assert read_models(restored.db_path) == read_models(scheduler.db_path)


def test_keep_removes_all_but_the_newest_backups(scheduler, tmp_path):
    scheduler.add(shell_job())
    folder = tmp_path / "backups"
    made = [scheduler.ok("--json", "backup", str(folder)).json["path"] for _ in range(3)]
    (folder / "notes.txt").write_text("not a backup")
    last = scheduler.ok("--json", "backup", str(folder), "--keep", "2").json
    assert last["removed"] == made[:2]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [Path(made[2]).name, Path(last["path"]).name, "notes.txt"]
    )


def test_restore_refuses_a_home_with_events_naming_it(scheduler, tmp_path):
    scheduler.add(shell_job())
    path = scheduler.ok("--json", "backup").json["path"]
    refused = scheduler.run("restore", path)
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith(
        f"The home is not empty: {scheduler.db_path} holds 1 events"
    )
    assert scheduler.event_count() == 1


def test_bad_input_is_one_line(scheduler, tmp_path):
    assert scheduler.run("backup").stderr.startswith("No store at")
    scheduler.add(shell_job())
    for bad in ("0", "-1", "x", "1e3"):
        result = scheduler.run("--json", "backup", "--keep", bad)
        assert result.returncode == 1 and "--keep must be a whole number" in result.json["error"]
    assert scheduler.run("restore", str(tmp_path / "none")).stderr.strip() == (
        f"No backup at {tmp_path / 'none'}"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scheduler.run("restore", str(empty)).stderr.strip() == f"No backups found in {empty}"
    junk = tmp_path / "ocsched-junk.jsonl"
    junk.write_text("not json\n")
    other = Scheduler(tmp_path / "other")
    failed = other.run("restore", str(junk))
    assert failed.returncode == 1 and "not an exported event" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize("damage", ["cut short", "bytes overwritten", "the header only"])
def test_a_damaged_compressed_backup_is_one_line_and_restores_nothing(scheduler, tmp_path, damage):
    fill(scheduler)
    packed = Path(scheduler.ok("--json", "backup", str(tmp_path / "b"), "--gzip").json["path"])
    data = bytearray(packed.read_bytes())
    if damage == "cut short":
        data = data[: len(data) // 2]
    elif damage == "bytes overwritten":
        data[len(data) // 2 : len(data) // 2 + 64] = b"x" * 64
    else:
        data = data[:6]
    damaged = tmp_path / "damaged.db.gz"
    damaged.write_bytes(bytes(data))
    restored = Scheduler(tmp_path / "restored")
    for args in (("restore",), ("--json", "restore")):
        failed = restored.run(*args, str(damaged))
        message = failed.json["error"] if "--json" in args else failed.stderr.strip()
        assert failed.returncode == 1, failed
        assert message.startswith(f"{damaged} is a damaged gzip file: "), failed
        assert "Traceback" not in failed.stderr and "\n" not in message
    restored.ok("restore", str(packed))  # still empty: the good backup restores
    assert read_models(restored.db_path) == read_models(scheduler.db_path)


def test_a_backup_taken_while_a_daemon_writes_is_one_moment_of_the_log(
    scheduler, daemons, tmp_path
):
    job = scheduler.add(every_second(payload_message="echo tick"))
    daemons.start()
    finished_runs(scheduler, job["id"], count=2)
    stop = threading.Event()

    def write() -> None:  # a second writer: the CLI, as fast as it goes
        number = 0
        while not stop.is_set():
            scheduler.process("jobs", "add", json.dumps(shell_job(name=f"w{number}")))
            number += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        wait_until(lambda: scheduler.event_count() > 20, what="writes")
        backups = [Path(scheduler.ok("--json", "backup").json["path"]) for _ in range(3)]
        wait_until(lambda: scheduler.event_count() > 40, what="more writes")
    finally:
        stop.set()
        writer.join()
    original = stored_events(scheduler.db_path)
    for number, backup in enumerate(backups):
        copied = stored_events(backup)
        assert 0 < len(copied) < len(original)  # taken mid-way
        assert copied == original[: len(copied)]  # a prefix of the log: one commit's state
        restored = Scheduler(tmp_path / f"restored-{number}")
        assert restored.ok("--json", "restore", str(backup)).json["read_models_match"]
        # The copy's own read models (made live by the daemon and the CLI, then brought
        # up to its last event) equal the restore's, rebuilt from the first event.
        caught_up = tmp_path / f"caught-up-{number}.db"
        shutil.copy(backup, caught_up)
        Scheduler(tmp_path / "reader").ok("status", env={"SCHEDULER_DB": str(caught_up)})
        assert read_models(restored.db_path) == read_models(caught_up)


@pytest.mark.postgres
def test_a_postgres_log_backs_up_as_an_export_and_restores_into_another(
    tmp_path,
    database_url,  # noqa: F811 - the fixture
):
    psycopg = pytest.importorskip("psycopg")
    host = Scheduler(tmp_path / "alpha")
    host.env["SCHEDULER_DB"] = database_url
    fill(host)
    done = host.ok("--json", "backup", "--gzip").json
    assert done["path"].endswith(".jsonl.gz") and done["events"] == 5
    second = f"ocsched_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    admin.execute(f"CREATE DATABASE {second}")
    try:
        target = Scheduler(tmp_path / "beta")
        target.env["SCHEDULER_DB"] = f"postgresql://postgres@127.0.0.1:5432/{second}"
        assert target.ok("--json", "restore", done["path"]).json["events"] == 5
        assert read_models(target.home / "read-models.db") == read_models(
            host.home / "read-models.db"
        )
        assert target.ok("audit", "verify").returncode == 0
        refused = target.run("restore", done["path"])
        assert "The home is not empty: postgresql://127.0.0.1:5432/" in refused.stderr
        # and into a SQLite home
        local = Scheduler(tmp_path / "gamma")
        local.ok("restore", done["path"])
        assert read_models(local.db_path) == read_models(host.home / "read-models.db")
    finally:
        admin.execute(f"DROP DATABASE {second} WITH (FORCE)")
        admin.close()


def test_an_encrypted_log_restores_with_its_key_and_its_read_models_rebuilt(scheduler, tmp_path):
    key = scheduler.ok("audit", "new-key").stdout.strip()
    scheduler.env["OCSCHED_CIPHER_KEY"] = key
    fill(scheduler)
    path = scheduler.ok("--json", "backup").json["path"]
    assert b"nightly" not in Path(path).read_bytes()  # the copy holds the log, enciphered
    restored = Scheduler(tmp_path / "restored")
    restored.env["OCSCHED_CIPHER_KEY"] = key
    restored.ok("restore", path)
    assert read_models(restored.home / "read-models.db") == read_models(
        scheduler.home / "read-models.db"
    )
    keyless = Scheduler(tmp_path / "keyless")
    failed = keyless.run("restore", path)
    assert failed.returncode == 1 and "no key is configured" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not keyless.db_path.exists()  # left empty: the restore can be tried again
    keyless.env["OCSCHED_CIPHER_KEY"] = key
    keyless.ok("restore", path)
