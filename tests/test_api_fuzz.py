"""The HTTP API fuzzer (small budget): hostile requests to every operation of the API's
OpenAPI document, against `ocsched serve` on the CLI fuzzer's seeded store. Never a 5xx,
every refusal the API's one-line JSON envelope, the log unchanged unless a decision was
accepted, no traceback in the server's log.

`OCSCHED_FUZZ_EXAMPLES` raises the budget (default 200); `scripts/chaos/fuzz_api.py` runs
the same cases and property many more times and prints the figures.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .api_fuzz import LINE_LIMIT, OPERATIONS, ApiCase, ApiFuzzServer, api_cases, problems

EXAMPLES = int(os.environ.get("OCSCHED_FUZZ_EXAMPLES") or 200)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    started = ApiFuzzServer(tmp_path_factory.mktemp("api-fuzz"))
    yield started
    started.stop()
    assert started.log_tracebacks() == 0, started.log_path.read_text()[-3000:]


def test_every_operation_of_the_document_is_fuzzed():
    assert {(path, method) for path, method, _ in OPERATIONS} >= {
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{id}/approve", "post"),
        ("/api/v1/jobs/{id}/reject", "post"),
    }


@pytest.mark.parametrize(
    "case",
    [
        ApiCase("GET", "/api/v1/jobs", (("cursor", "WwWwWw" * 900),)),  # deeply nested
        ApiCase(
            "POST", "/api/v1/jobs/x/approve", body=b"[" * 100_000, content_type="application/json"
        ),
        ApiCase(
            "POST",
            "/api/v1/jobs/x/reject",
            body=b"{",
            content_type="multipart/form-data; boundary=x",
        ),
        ApiCase("GET", "/api/v1/nothing-here"),
        ApiCase("GET", "/api/v1/jobs/x/approve"),
        ApiCase("GET", "/api/v1/jobs/%FF"),
        ApiCase("GET", "/api/v1/events", (("after", "%C2%B2"),)),
    ],
    ids=repr,
)
def test_known_hostile_requests_keep_the_contract(server, case):
    assert not problems(case, answer := server.ask(case)), answer


def test_a_request_line_over_aiohttps_limit_is_its_400_and_one_log_line(server):
    answer = server.ask(ApiCase("GET", "/api/v1/jobs", (("cursor", "x" * LINE_LIMIT),)))
    assert answer.status == 400
    log = server.log_path.read_text()
    assert "400 Got more than 8190 bytes" in log and "Traceback" not in log


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_request_breaks_the_contract(server, data):
    case = data.draw(api_cases(server.seeds))
    answer = server.ask(case)
    assert not problems(case, answer), (case.method, case.target[:300], answer)
