"""The HTTP API fuzzer's cases and property, shared by `tests/test_api_fuzz.py` (a small
budget) and `scripts/chaos/fuzz_api.py` (the long run).

A case is one request to `ocsched serve` on 127.0.0.1, serving the CLI fuzzer's seeded
store: an operation of the API's own OpenAPI document, its path parameters (seeded ids,
their prefixes, hostile text), some of its query parameters and unknown ones with hostile
values (percent-encoded, or raw: `%ZZ`, `%FF`), and for a decision a hostile body, content
type and credentials. Decisions, the only writes, are drawn about a quarter of the time,
often on the job that holds approvals, and after each one recorded that job gets a new
pending approval, so later decisions read their bodies too. The property: never a 5xx;
every refusal is the API's envelope, `{"ok": false, "error": "<one line>"}`; every answer
is JSON; the log moves only when a decision was accepted; the server never logs a
traceback.
"""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import assume
from hypothesis import strategies as st

from ocsched.adapters.http.openapi import document

from .cli_fuzz import (
    Seeds,
    approval_pending_again,
    fuzz_scheduler,
    seed_store,
    unreachable_gateway_url,
)
from .conftest import Scheduler
from .test_serve import Served

OPERATIONS = sorted(
    (path, method, tuple(p["name"] for p in spec.get("parameters", []) if p["in"] == "query"))
    for path, methods in document()["paths"].items()
    for method, spec in methods.items()
    if not path.endswith("/events/stream")  # (an answer that never ends)
)
WRITES = [operation for operation in OPERATIONS if operation[1] == "post"]
DRAWN = OPERATIONS + WRITES * max(1, len(OPERATIONS) // (3 * max(len(WRITES), 1)))
"""The operations a case is drawn from: the writes (the approval decisions, the only
requests that record anything, with the most input to read) about a quarter of the time."""
ID_KINDS = {
    "id": ("job", "run", "approval_job", "dispatch_id"),
    "decision_id": ("approval_job",),  # a write's job: the one that holds approvals
    "label": ("label",),
}
HOSTILE = (
    "",
    " ",
    "-1",
    "0",
    "-0",
    "+5",
    "0x10",
    "1e400",
    "nan",
    "inf",
    "9" * 40,
    "²",
    "٣",
    "null",
    "true",
    "[]",
    "{}",
    "..",
    "../../etc/passwd",
    "x" * 3000,
    "\x00",
    "\t\n",
    "\udcff",
    "2026-13-45T99:99:99Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "2h",
    "-2h",
    "99999999999d",
    base64.urlsafe_b64encode(b"[" * 4000).decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"k": [[1], 2], "o": 1e+30}').decode().rstrip("="),
)
LINE_LIMIT = 8190
"""aiohttp's limit on a request line, in bytes."""
RAW = ("%", "%ZZ", "%FF", "%ED%A0%80", "%00", "a%2Fb", "%2e%2e")
"""Sent as they are, not percent-encoded: broken escapes and bytes that are not UTF-8."""
BODIES = (
    b"",
    b"{",
    b"[]",
    b'"x"',
    b"null",
    b'{"reason": 5}',
    b'{"reason": null}',
    b'{"reason": "\\ud800"}',
    b'{"reason": "' + b"x" * 200_000 + b'"}',
    b"[" * 100_000,
    b"\xff\xfe",
    b"reason=later&reason=again",
    b"reason=%FF",
)
CONTENT_TYPES = (
    None,
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/json; charset=latin-1",
)


@dataclass(frozen=True)
class ApiCase:
    method: str
    path: str
    """The path with its parameters in place, already escaped."""
    query: tuple[tuple[str, str], ...] = ()
    """Each name and value already escaped (or raw)."""
    body: bytes | None = None
    content_type: str | None = None
    credentials: str = "token"
    """`token` (the server's), `wrong` or `none`."""

    @property
    def target(self) -> str:
        query = "&".join(f"{name}={value}" for name, value in self.query)
        return self.path + (f"?{query}" if query else "")


def _escaped(text: str) -> str:
    return quote(text.encode("utf-8", "surrogateescape"), safe="")


def fragments(seeds: Seeds, kind: str) -> st.SearchStrategy[str]:
    """An escaped path or query value: a seeded id of `kind` or its prefix, hostile text,
    any text, or a raw fragment."""
    ids = [value for k in ID_KINDS.get(kind, ()) for value in seeds.ids.get(k, [])]
    choices = [
        st.sampled_from(HOSTILE).map(_escaped),
        st.text(max_size=40).map(_escaped),
        st.sampled_from(RAW),
    ]
    if ids:
        seeded = st.sampled_from(ids)
        choices = [seeded, seeded.map(lambda value: value[:4]), *choices]
    return st.one_of(choices)


@st.composite
def api_cases(draw: st.DrawFn, seeds: Seeds) -> ApiCase:
    template, method, names = draw(st.sampled_from(DRAWN))
    path = template
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        kind = path[start + 1 : end]
        if method == "post" and kind == "id":
            kind = "decision_id"
        path = path[:start] + draw(fragments(seeds, kind)) + path[end + 1 :]
    asked = draw(st.lists(st.sampled_from([*names, "unknown", "limit"]), max_size=3))
    query = tuple((name, draw(fragments(seeds, name))) for name in asked)
    body = content_type = None
    if method == "post":
        body = draw(st.one_of(st.none(), st.sampled_from(BODIES), st.binary(max_size=64)))
        content_type = draw(st.sampled_from(CONTENT_TYPES))
    credentials = draw(st.sampled_from(("token", "token", "wrong", "none")))
    case = ApiCase(method.upper(), path, query, body, content_type, credentials)
    # (longer, aiohttp's parser refuses the request line before any route: a known case)
    assume(len(case.target) < LINE_LIMIT - 100)
    return case


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes
    events_before: int
    events_after: int


@dataclass
class ApiFuzzServer:
    """`ocsched serve` on the CLI fuzzer's seeded store, in `root`; `stop()` ends it."""

    root: Path
    scheduler: Scheduler = field(init=False)
    seeds: Seeds = field(init=False)

    def __post_init__(self) -> None:
        self.scheduler = fuzz_scheduler(self.root, unreachable_gateway_url())
        self.seeds = seed_store(self.scheduler)
        self.served = Served(self.scheduler)
        self.log_path = self.served.log_path
        self.port = int(self.served.url.rsplit(":", 1)[1])
        self.token = Path(self.served.notice["token_file"]).read_text().strip()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def ask(self, case: ApiCase) -> Answer:
        headers = {}
        if case.content_type is not None:
            headers["Content-Type"] = case.content_type
        if case.credentials != "none":
            token = self.token if case.credentials == "token" else "wrong"
            headers["Authorization"] = f"Bearer {token}"
        before = self.scheduler.event_count()
        try:
            response, body = self._exchange(case, headers)
        except (http.client.HTTPException, OSError):
            self.connection.close()  # (a refused request may end the connection: again)
            response, body = self._exchange(case, headers)
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
        answer = Answer(
            response.status,
            response.getheader("Content-Type", ""),
            body,
            before,
            self.scheduler.event_count(),
        )
        if answer.events_after > answer.events_before:
            approval_pending_again(self.scheduler, self.seeds)
        return answer

    def _exchange(
        self, case: ApiCase, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        self.connection.request(case.method, case.target, body=case.body, headers=headers)
        response = self.connection.getresponse()
        return response, response.read()

    def log_tracebacks(self) -> int:
        return self.log_path.read_text().count("Traceback")

    def stop(self) -> None:
        self.connection.close()
        self.served.stop()


def problems(case: ApiCase, answer: Answer) -> dict[str, str]:
    """What is wrong with the answer, by kind (empty: nothing)."""
    found: dict[str, str] = {}
    if answer.status >= 500:
        found["server_error"] = f"{answer.status}: {answer.body[:200]!r}"
    reply: Any = None
    if answer.content_type.startswith("application/json"):
        try:
            reply = json.loads(answer.body)
        except ValueError:
            found["json"] = f"not JSON: {answer.body[:200]!r}"
    else:
        found["json"] = f"{answer.status} {answer.content_type}: {answer.body[:200]!r}"
    if answer.status >= 400 and reply is not None:
        envelope = isinstance(reply, dict) and set(reply) == {"ok", "error"}
        if not envelope or reply["ok"] is not False or not isinstance(reply["error"], str):
            found["envelope"] = repr(reply)[:200]
        elif "\n" in reply["error"]:
            found["lines"] = reply["error"][:200]
    accepted = case.method == "POST" and 200 <= answer.status < 300
    if answer.events_after != answer.events_before and not accepted:
        found["log_changed"] = f"{answer.events_before} -> {answer.events_after} events"
    return found
