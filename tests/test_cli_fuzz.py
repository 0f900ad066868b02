"""The CLI fuzzer (issue 9's chaos suite, small budget): hostile argv for every command in
the CLI's table, run in process against a seeded store. Never a traceback, never "Internal
error", exit status 0/1/2, one-line or JSON errors, and a rejected command records nothing.

`OCSCHED_FUZZ_EXAMPLES` raises the budget (default 200); `scripts/chaos/fuzz_cli.py` runs
the same cases and property 100,000 times and prints the figures.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings

from ocsched.commands.cli import build_parser, command_paths
from ocsched.commands.dispatch import SUBCOMMANDS

from .cli_fuzz import (
    EXCLUDED,
    Case,
    FileArg,
    FuzzStore,
    Ref,
    cli_cases,
    covered_commands,
)

EXAMPLES = int(os.environ.get("OCSCHED_FUZZ_EXAMPLES") or 200)


def test_every_command_in_the_table_is_fuzzed_or_excluded_with_a_reason():
    table = {
        (path[0], path[1] if len(path) > 1 else None) for path in command_paths(build_parser())
    }
    table.discard(("dispatch", None))
    table |= {("dispatch", sub) for sub in SUBCOMMANDS}
    missing = table - covered_commands() - set(EXCLUDED)
    assert not missing, f"add these to tests/cli_fuzz.py SHAPES (or EXCLUDED): {missing}"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FuzzStore:
    return FuzzStore(tmp_path_factory.mktemp("fuzz"))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(case=cli_cases())
def test_no_input_breaks_the_error_contract(store: FuzzStore, case: Case):
    store.check(case)


# --- the classes the fuzzer found, one example each ------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        Case(("--json", "jobs", "get", "\udcff")),
        Case(("events", "show", "\udcffabc")),
        Case(("--json", "runs", "list", Ref("job"), str(10**30))),
        Case(("--json", "events", "tail", "-n", str(10**30))),
        Case(("events", "tail", "-n", "²")),
        Case(("--json", "runs", "stale", str(10**30))),
        Case(
            (
                "--json",
                "dispatch",
                "enqueue",
                "--label",
                "x",
                "--message-file",
                FileArg("file", b"\xff\xfe\x00"),
            ),
        ),
        Case(
            (
                "dispatch",
                "done",
                "--label",
                Ref("label", 2),
                "--checklist",
                '{"work_complete": true}',
                "--force-done",
                "--reason",
                "x",
                "--sha",
                "not-hex",
            )
        ),
        Case(("--actor", "jobs", "list", "--as-of", "--type=")),
        Case(("restore", FileArg("file", b"\x1f\x8b\x08\x00\x00\x00"))),
        Case(("tasks", "--json", "create", "[" * 100_000)),
        Case(("team", "gate", "main", "-3857", '{"a": ' * 100_000, "7e-152")),
        Case(("dispatch", "done", "--label", "x", "--sha=\x00ocs1", "--checklist", "1")),
        Case(("backup", "--keep=--", "")),
        Case(("backup", "--keep", "37", "\x00")),
    ],
    ids=repr,
)
def test_known_hostile_inputs_keep_the_contract(store: FuzzStore, case: Case):
    store.check(case)


def test_a_relative_path_lands_in_the_case_folder(store: FuzzStore):
    store.check(Case(("backup", "\ufeff")))
    assert not os.path.exists("\ufeff")  # (not where the tests were started from)
    assert list(store.root.glob("store-*/files-*/\ufeff/ocsched-*.db"))
