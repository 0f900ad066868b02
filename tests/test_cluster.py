"""Several hosts on one PostgreSQL log: the driver's absence named, push between hosts."""

from __future__ import annotations

import sys

from .conftest import Scheduler


def test_a_missing_postgres_driver_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    host = Scheduler(tmp_path / "alpha")
    host.env["SCHEDULER_DB"] = "postgresql://postgres@127.0.0.1:5432/test"
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    result = host.run("jobs", "list")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert "pip install 'ocsched[postgres]'" in result.stderr
    json_result = host.run("--json", "jobs", "list")
    assert json_result.returncode != 0 and "ocsched[postgres]" in json_result.stdout
