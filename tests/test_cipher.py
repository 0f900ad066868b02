"""Events encrypted at rest with OCSCHED_CIPHER_KEY (adapters/cipher.py): the secret is not
in the database file's bytes, everything else still works, keys rotate, and a missing or
wrong key is one clear line."""

from __future__ import annotations

import base64
import json

import pytest

from .conftest import Scheduler, shell_job

pytest.importorskip("cryptography")

KEY = base64.b64encode(b"k" * 32).decode()
NEW_KEY = base64.b64encode(b"n" * 32).decode()
SECRET = "s3cr3t-TOKEN-4f9a1c"


def keyed(scheduler: Scheduler, key: str | None, old: str | None = None) -> None:
    for name, value in (("OCSCHED_CIPHER_KEY", key), ("OCSCHED_CIPHER_OLD_KEYS", old)):
        if value is None:
            scheduler.env.pop(name, None)
        else:
            scheduler.env[name] = value


def add_secret_job(scheduler: Scheduler, name: str = "deploy") -> dict:
    return scheduler.add(
        shell_job(name=name, payload_message=f"curl -H 'Authorization: Bearer {SECRET}' x")
    )


def database_bytes(scheduler: Scheduler) -> bytes:
    files = [scheduler.db_path, scheduler.db_path.with_name("ocsched.db-wal")]
    return b"".join(path.read_bytes() for path in files if path.exists())


def one_line_error(scheduler: Scheduler, *args: str) -> str:
    result = scheduler.run(*args)
    assert result.returncode == 1, result.stdout
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


def test_a_secret_is_not_in_the_database_file_and_everything_works(scheduler):
    keyed(scheduler, KEY)
    job = add_secret_job(scheduler)
    scheduler.ok("msg", "send", "ops", "main", f"the token is {SECRET}")
    scheduler.ok("jobs", "update", job["id"], json.dumps({"payload_message": f"echo {SECRET}"}))
    assert SECRET.encode() not in database_bytes(scheduler)
    assert scheduler.event_count() >= 3
    # Read models are a cache of decoded values, in a file of their own.
    assert SECRET in scheduler.ok("jobs", "get", job["id"]).stdout
    assert (scheduler.home / "read-models.db").exists()
    scheduler.ok("projections", "rebuild")
    assert scheduler.ok("jobs", "get", job["id"]).json["payload_message"] == f"echo {SECRET}"
    assert SECRET in scheduler.ok("--json", "events", "show", job["id"]).stdout
    assert scheduler.ok("--json", "audit", "verify").json["intact"]
    keyed(scheduler, None)  # the chain is over the stored bytes: no key needed
    assert scheduler.ok("--json", "audit", "verify").json["checked"] >= 3


def test_a_missing_or_wrong_key_is_one_clear_line(scheduler):
    keyed(scheduler, KEY)
    add_secret_job(scheduler)
    keyed(scheduler, None)
    error = one_line_error(scheduler, "jobs", "list")
    assert "encrypted with key" in error and "set OCSCHED_CIPHER_KEY" in error
    keyed(scheduler, NEW_KEY)
    error = one_line_error(scheduler, "projections", "rebuild")
    assert "add that key to OCSCHED_CIPHER_OLD_KEYS" in error
    keyed(scheduler, "not a key")
    assert "OCSCHED_CIPHER_KEY is not a key" in one_line_error(scheduler, "jobs", "list")


def test_keys_rotate_old_events_are_read_with_the_old_key(scheduler):
    keyed(scheduler, KEY)
    first = add_secret_job(scheduler, "first")
    keyed(scheduler, NEW_KEY, old=KEY)
    second = add_secret_job(scheduler, "second")
    scheduler.ok("projections", "rebuild")
    listed = {job["id"] for job in scheduler.ok("--json", "jobs", "list").json}
    assert listed == {first["id"], second["id"]}
    assert SECRET.encode() not in database_bytes(scheduler)
    keyed(scheduler, NEW_KEY)
    assert "OCSCHED_CIPHER_OLD_KEYS" in one_line_error(scheduler, "projections", "rebuild")


def test_events_from_before_the_key_stay_readable(scheduler):
    before = add_secret_job(scheduler, "plain")
    assert SECRET.encode() in database_bytes(scheduler)  # (what the key prevents)
    keyed(scheduler, KEY)
    after = add_secret_job(scheduler, "sealed")
    listed = {job["id"] for job in scheduler.ok("--json", "jobs", "list").json}
    assert listed == {before["id"], after["id"]}
    assert scheduler.ok("--json", "audit", "verify").json["intact"]


def test_the_daemon_runs_jobs_of_an_encrypted_log(scheduler, daemons):
    from .conftest import wait_until

    keyed(scheduler, KEY)
    job = scheduler.add(
        shell_job(schedule_cron="* * * * * *", payload_message=f"echo {SECRET} >/dev/null")
    )
    daemons.start()

    def finished() -> list[dict]:
        runs = scheduler.ok("--json", "runs", "list", job["id"], "10").json
        return [run for run in runs if run["finished_at"]]

    (run, *_) = wait_until(finished, 15, what="a finished run")
    assert run["status"] == "ok"
    assert SECRET.encode() not in database_bytes(scheduler)
    assert scheduler.ok("--json", "audit", "verify").json["intact"]


def test_export_replay_and_projections_verify_work_with_a_key(scheduler, tmp_path):
    keyed(scheduler, KEY)
    add_secret_job(scheduler)
    assert "agree" in scheduler.ok("projections", "verify").stdout
    export = scheduler.ok("export").stdout
    assert SECRET in export  # an export is deciphered: keep it as safely as the key
    exported = tmp_path / "log.jsonl"
    exported.write_text(export)
    scratch = tmp_path / "scratch"
    scheduler.ok("replay", str(exported), "--into", str(scratch))
    assert SECRET.encode() not in (scratch / "ocsched.db").read_bytes()
    copy = Scheduler(scratch)
    keyed(copy, KEY)
    assert [job["name"] for job in copy.ok("--json", "jobs", "list").json] == ["deploy"]
    assert copy.ok("--json", "audit", "verify").json["intact"]
