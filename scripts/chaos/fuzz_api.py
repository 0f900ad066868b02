"""HTTP API fuzzer, long version: hostile requests to every operation of the API's OpenAPI
document, against `ocsched serve` on the CLI fuzzer's seeded store (the cases and the
property of `tests/api_fuzz.py`, which `tests/test_api_fuzz.py` runs with a small budget).

    .venv/bin/python scripts/chaos/fuzz_api.py [--examples N] [--seed S] [--show K]

Prints: requests made, 5xx answers, answers that are not JSON, refusals outside the
envelope, multi-line errors, log changes from refused requests, tracebacks in the server's
log, and the elapsed time; then up to K examples of each kind of problem. Exit status 1
when any problem was found.
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
from hypothesis import strategies as st  # noqa: E402

from tests.api_fuzz import ApiFuzzServer, api_cases, problems  # noqa: E402

KINDS = (
    ("server_error", "5xx answers"),
    ("json", "answers not JSON"),
    ("envelope", "refusals outside the envelope"),
    ("lines", "multi-line errors"),
    ("log_changed", "log changes from refused requests"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (random)")
    parser.add_argument("--show", type=int, default=3, help="examples shown per problem kind")
    options = parser.parse_args()

    counts: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    statuses: Counter[int] = Counter()
    with tempfile.TemporaryDirectory(prefix="ocsched-api-fuzz-") as directory:
        server = ApiFuzzServer(Path(directory))
        started = time.monotonic()
        try:

            @settings(
                max_examples=options.examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(data=st.data())
            def explore(data: st.DataObject) -> None:
                case = data.draw(api_cases(server.seeds))
                answer = server.ask(case)
                statuses[answer.status] += 1
                for kind, detail in problems(case, answer).items():
                    counts[kind] += 1
                    if len(examples[kind]) < options.show:
                        examples[kind].append(f"{case.method} {case.target[:200]}\n      {detail}")
                made = sum(statuses.values())
                if made % 5000 == 0:
                    elapsed = time.monotonic() - started
                    print(f"  {made} requests, {elapsed:.0f} s", file=sys.stderr, flush=True)

            if options.seed is not None:
                explore = seed(options.seed)(explore)
            explore()
        finally:
            elapsed = time.monotonic() - started
            server.stop()
        tracebacks = server.log_tracebacks()

    made = sum(statuses.values())
    print(f"requests made:                       {made}")
    for kind, title in KINDS:
        print(f"{title + ':':<37}{counts[kind]}")
    print(f"tracebacks in the server's log:      {tracebacks}")
    print(f"elapsed:                             {elapsed:.0f} s ({made / elapsed:.0f} requests/s)")
    shown = ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
    print(f"statuses:                            {shown}")
    for kind, title in KINDS:
        for example in examples.get(kind, []):
            print(f"- {title}: {example}")
    return 1 if counts or tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
