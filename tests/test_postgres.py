"""One log in PostgreSQL shared by several hosts, each with its own read models."""

from __future__ import annotations

import uuid

import pytest

from .conftest import Scheduler, shell_job

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_url():
    psycopg = pytest.importorskip("psycopg")
    name = f"ocsched_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432: {error}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def on_host(tmp_path, host: str, database_url: str) -> Scheduler:
    scheduler = Scheduler(tmp_path / host)
    scheduler.env["SCHEDULER_DB"] = database_url
    return scheduler


def test_a_job_added_on_one_host_is_listed_on_another(tmp_path, database_url):
    alpha = on_host(tmp_path, "alpha", database_url)
    beta = on_host(tmp_path, "beta", database_url)
    job = alpha.add(shell_job(name="shared"))
    assert [j["id"] for j in beta.ok("--json", "jobs", "list").json] == [job["id"]]
    beta.ok("jobs", "disable", job["id"])
    assert alpha.ok("jobs", "get", job["id"]).json["enabled"] == 0
    history = alpha.ok("--json", "events", "show", job["id"]).json
    assert [e["type"] for e in history] == ["Job.Created", "Job.Disabled"]
    assert (alpha.home / "read-models.db").exists() and (beta.home / "read-models.db").exists()


def test_rebuild_on_postgres_reproduces_the_rows(tmp_path, database_url):
    host = on_host(tmp_path, "alpha", database_url)
    first = host.add(shell_job(name="first"))
    host.add(shell_job(name="second"))
    host.ok("jobs", "update", first["id"], '{"max_retries": 4}')
    before = host.ok("--json", "jobs", "list").json
    host.ok("projections", "rebuild")
    assert host.ok("--json", "jobs", "list").json == before


def test_status_never_prints_the_database_password(tmp_path, database_url):
    host = on_host(tmp_path, "alpha", database_url.replace("postgres@", "postgres:s3cret@"))
    status = host.ok("status")
    assert "s3cret" not in status.stdout
    assert "postgresql://postgres@127.0.0.1:5432/" in status.stdout
