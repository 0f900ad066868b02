"""CLI fuzzer, long version: hostile argv for every command of the CLI, run in process
against a seeded store (the cases and the property of `tests/cli_fuzz.py`, which
`tests/test_cli_fuzz.py` runs with a small budget).

    .venv/bin/python scripts/chaos/fuzz_cli.py [--examples N] [--seed S] [--show K]

Prints: cases run, tracebacks, internal errors, non-JSON errors under --json, multi-line
errors, other exit statuses, log changes from rejected input, and the elapsed time; then
up to K examples of each kind of problem. Exit status 1 when any problem was found.
Target (issue 9): 100,000 cases, 0 tracebacks, 0 "Internal error", 0 changes to the log
from rejected input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

from tests.cli_fuzz import Case, FuzzStore, cli_cases  # noqa: E402

KINDS = (
    ("traceback", "tracebacks"),
    ("internal_error", "internal errors"),
    ("json", "non-JSON errors under --json"),
    ("lines", "multi-line errors"),
    ("exit_status", "other exit statuses"),
    ("log_changed", "log changes from rejected input"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (random)")
    parser.add_argument("--show", type=int, default=3, help="examples shown per problem kind")
    parser.add_argument("--reseed-every", type=int, default=200, help="cases per fresh store")
    options = parser.parse_args()

    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    exit_statuses: Counter[int] = Counter()
    with tempfile.TemporaryDirectory(prefix="ocsched-fuzz-") as directory:
        store = FuzzStore(Path(directory), reseed_every=options.reseed_every)
        started = time.monotonic()

        @settings(
            max_examples=options.examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cli_cases())
        def explore(case: Case) -> None:
            outcome, found = store.run(case)
            exit_statuses[outcome.result.returncode] += 1
            for kind, detail in found.items():
                counts[kind] += 1
                if len(examples[kind]) < options.show:
                    shown = [arg[:80] for arg in outcome.args[:12]]
                    examples[kind].append(f"{shown!r}\n      {detail[:400]!r}")
            if store.cases % 5000 == 0:
                elapsed = time.monotonic() - started
                print(f"  {store.cases} cases, {elapsed:.0f} s", file=sys.stderr, flush=True)

        if options.seed is not None:
            explore = seed(options.seed)(explore)
        explore()
        elapsed = time.monotonic() - started

    print(f"cases run:                 {store.cases}")
    for kind, title in KINDS:
        print(f"{title + ':':<27}{counts[kind]}")
    print(f"elapsed:                   {elapsed:.0f} s ({store.cases / elapsed:.0f} cases/s)")
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(exit_statuses.items()))
    print(f"exit statuses:             {statuses}")
    for kind, title in KINDS:
        for example in examples.get(kind, []):
            print(f"- {title}: {example}")
    return 1 if counts else 0


if __name__ == "__main__":
    sys.exit(main())
