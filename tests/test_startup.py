"""What a command or the daemon imports and runs as it starts (issue 10: start-up time).

The figures themselves are in `scripts/bench/cli.py`; these tests keep the slow paths off
the start: croniter's `file -b` process, aiohttp without a gateway, redefined events.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventsourcing.domain import event

from ocsched.domain.aggregate import Aggregate, EventMeta
from ocsched.domain.job import Job, new_job

from .conftest import OCSCHED, shell_job, wait_until


def _imported(importtime: str) -> set[str]:
    """The modules named in `python -X importtime` output."""
    names = set()
    for line in importtime.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_croniter_is_loaded_without_starting_a_process():
    probe = """
import platform, subprocess
calls = []
real_popen_init = subprocess.Popen.__init__
def record(self, args, *rest, **options):
    calls.append(args)
    real_popen_init(self, args, *rest, **options)
subprocess.Popen.__init__ = record
architecture = platform.architecture
from datetime import UTC, datetime
from ocsched.domain.schedule import next_cron_fire
fire = next_cron_fire("0 12 L * *", "Europe/Berlin", datetime(2030, 1, 1, 0, 1, tzinfo=UTC))
print(fire.isoformat(), calls, platform.architecture is architecture)
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert out == ["2030-01-31T11:00:00+00:00", "[]", "True"]  # `L`: croniter's to answer


def _jobs_add_imports(scheduler, **fields) -> set[str]:
    completed = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            *OCSCHED[1:],
            "jobs",
            "add",
            json.dumps(shell_job(**fields)),
        ],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    imported = _imported(completed.stderr)
    assert "ocsched.domain.validation" in imported  # the probe sees our own imports
    return imported


def test_jobs_add_imports_neither_aiohttp_nor_the_gateway_nor_croniter(scheduler):
    imported = _jobs_add_imports(scheduler)
    assert not {"aiohttp", "ocsched.adapters.gateway"} & imported
    assert not _croniter_in(imported)  # a plain cron is evaluated by domain/simple_cron.py


@pytest.mark.parametrize("cron", ["30 */5 * * * *", "0 9 * * mon-fri"])
def test_a_plain_cron_with_seconds_or_names_is_evaluated_without_croniter(scheduler, cron):
    assert not _croniter_in(_jobs_add_imports(scheduler, schedule_cron=cron))


def test_a_cron_that_simple_cron_leaves_alone_is_croniters(scheduler):
    assert _croniter_in(_jobs_add_imports(scheduler, schedule_cron="0 0 L * *"))


def _croniter_in(imported: set[str]) -> bool:
    return any(name.split(".")[0] == "croniter" for name in imported)


def test_jobs_add_on_a_store_imports_nothing_it_does_not_use(scheduler):
    # What the path used to import for little (issue 10): OpenSSL for a few hashes,
    # argparse's terminal and locale lookups, pathlib and urllib.parse for a few folders,
    # zoneinfo for UTC, getpass for the user's name. (The first command on a new store
    # makes its tables with sqlite-utils, which imports more.)
    scheduler.add(shell_job())
    imported = _jobs_add_imports(scheduler)
    unwanted = {"hashlib", "shutil", "locale", "pathlib", "urllib.parse", "zoneinfo", "getpass"}
    assert not unwanted & imported


def test_a_daemon_with_only_shell_jobs_runs_them_without_importing_aiohttp(
    scheduler, tmp_path: Path
):
    marker = tmp_path / "ran"
    job = scheduler.add(shell_job(payload_message=f"touch {marker}", run_now=True))
    errors = tmp_path / "daemon.err"
    with errors.open("w") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-X", "importtime", *OCSCHED[1:], "daemon"],
            env=scheduler.env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_until(marker.exists, what="the shell job to run")
            wait_until(
                lambda: '"ok"' in scheduler.ok("--json", "runs", "list", job["id"]).stdout,
                what="the run to finish",
            )
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
    imported = _imported(errors.read_text())
    assert "ocsched.commands.reactor.scheduler" in imported
    assert "aiohttp" not in imported


def test_an_event_class_with_no_field_of_its_own_is_not_generated_again(monkeypatch):
    generated: list[str] = []
    generate = dataclasses._process_class  # type: ignore[attr-defined]

    def counting(cls, *args, **kwargs):
        generated.append(cls.__qualname__)
        return generate(cls, *args, **kwargs)

    monkeypatch.setattr(dataclasses, "_process_class", counting)

    class Sample(Aggregate):
        class Made(Aggregate.Created):
            size: int

        @event(Made)
        def __init__(self, size: int, meta: EventMeta, timestamp: datetime) -> None:
            self.size = size

        class Grown(Aggregate.Event):
            size: int

        @event(Grown)
        def grow(self, size: int, meta: EventMeta, timestamp: datetime) -> None:
            self.size = size

    # Made and Grown as declared; not the library's caller class for `grow`, which adds none
    assert [name for name in generated if "Made" in name or "Grown" in name] == [
        "test_an_event_class_with_no_field_of_its_own_is_not_generated_again.<locals>.Sample.Made",
        "test_an_event_class_with_no_field_of_its_own_is_not_generated_again.<locals>.Sample.Grown",
    ]


def test_an_event_compares_and_prints_as_a_generated_dataclass_would():
    meta = EventMeta(actor="tester", origin="test", correlation_id="c1")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    (first,) = new_job(shell_job(), "job-1", meta, now).collect_events()
    (same,) = new_job(shell_job(), "job-1", meta, now).collect_events()
    (other,) = new_job(shell_job(name="other"), "job-1", meta, now).collect_events()
    assert first == same
    assert first != other  # the spec differs, every other field is the same
    assert first != dataclasses.replace(first, originator_version=2)
    assert (first == "text") is False
    names = [field.name for field in dataclasses.fields(first)]
    assert repr(first) == f"Job.Created({', '.join(f'{n}={getattr(first, n)!r}' for n in names)})"
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.spec = other.spec  # type: ignore[misc]


def test_an_event_of_a_class_that_was_not_generated_behaves_as_a_generated_one():
    meta = EventMeta(actor="tester", origin="test", correlation_id="c1")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    job = new_job(shell_job(), "job-1", meta, now)
    job.update({"max_retries": 2}, meta, now)
    _, updated = job.collect_events()
    assert [f.name for f in dataclasses.fields(updated)][-2:] == ["meta", "changes"]
    again = dataclasses.replace(updated)
    assert again == updated and again is not updated
    assert repr(updated).startswith("Job.Updated(originator_id='job-1'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        updated.meta = meta  # type: ignore[misc]


def test_events_declared_on_an_aggregate_are_not_redefined_by_the_library():
    """Each redefinition is one more generated dataclass on every start."""
    assert Job.__dict__["Created"].__bases__ == (Aggregate.Created,)
    assert Job.Event is Aggregate.Event
