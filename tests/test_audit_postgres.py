"""The hash chain on a PostgreSQL log that several hosts append to at once."""

from __future__ import annotations

import json
import subprocess

import pytest

from .conftest import OCSCHED, shell_job
from .test_postgres import database_url, on_host  # noqa: F401 - the fixture

pytestmark = pytest.mark.postgres


def psql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def test_hosts_appending_at_once_leave_one_intact_chain(tmp_path, database_url):  # noqa: F811
    hosts = [on_host(tmp_path, f"host{n}", database_url) for n in range(4)]
    hosts[0].add(shell_job(name="first"))  # tables made before the race

    def script(host: int) -> str:
        return " && ".join(
            f"{' '.join(OCSCHED)} jobs add '{json.dumps(shell_job(name=f'h{host}j{k}'))}'"
            for k in range(5)
        )

    children = [
        subprocess.Popen(
            ["bash", "-c", script(n)],
            # Processes opening the log at once race in the library's CREATE OR REPLACE
            # FUNCTION ("tuple concurrently updated", with or without the chain): the
            # tables exist already, so the racing processes skip creating them.
            env={**host.env, "OCSCHED_CREATE_TABLE": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, host in enumerate(hosts)
    ]
    for child in children:
        _, errors = child.communicate(timeout=120)
        assert child.returncode == 0, errors
    report = hosts[1].ok("--json", "audit", "verify").json
    assert report["intact"] and report["checked"] == 21 and report["chain_start"] == 1
    links = psql(
        database_url, "SELECT position, previous FROM ocsched_event_chain ORDER BY position"
    )
    assert [previous for _, previous in links[1:]] == [position for position, _ in links[:-1]]
    assert hosts[2].ok("audit", "anchor").stdout.strip() == report["head"]


def test_an_edited_and_a_deleted_event_are_named_on_postgres(tmp_path, database_url):  # noqa: F811
    host = on_host(tmp_path, "alpha", database_url)
    ids = [host.add(shell_job(name=f"job{n}"))["id"] for n in range(3)]
    host.ok("jobs", "disable", ids[0])
    anchor = host.ok("audit", "anchor").stdout.strip()
    psql(
        database_url,
        "UPDATE ocsched_events SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " 'echo hi', 'echo HI'), 'UTF8') WHERE notification_id = 2",
    )
    result = host.run("--json", "audit", "verify", "--head", anchor)
    assert result.returncode == 1
    finding = result.json["finding"]
    assert (finding["kind"], finding["position"], finding["aggregate"]) == ("edited", 2, ids[1])
    psql(database_url, "DELETE FROM ocsched_events WHERE notification_id = 2")
    finding = host.run("--json", "audit", "verify").json["finding"]
    assert (finding["kind"], finding["position"]) == ("deleted", 2)
