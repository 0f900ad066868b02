"""`/api/v1/…`: the read API over the projections, and the approval decisions.

Each endpoint answers with what a CLI command's `--json` prints (the same service function,
the same values, encoded by msgspec as `output.print_json` does): `/jobs` is `jobs list`,
`/runs/{id}` is `runs get`, … A list that can grow pages with `limit` and `cursor`: the
body is the page (a list, as the command prints it) and the next page's URL is in the
`Link` header (`rel="next"`, also `X-Next-Cursor`). An answer the log position determines
has an `ETag` (the read models' position, or the log's head for events): a client that
sends it back in `If-None-Match` gets 304 without the query being made. Answers that also
depend on the time (`status`, stale runs, a task group's elapsed time) have none. Errors are
the CLI's envelope, `{"ok": false, "error": "<one line>"}`: 400 bad input, 401/403 access,
404 not found, 409 a refused write.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from ocsched.commands import (
    agents,
    approvals,
    deliveries,
    dispatch_labels,
    dispatch_status,
    events,
    jobs,
    messages,
    projections,
    runs,
    status,
    tasks,
)
from ocsched.commands.context import Context
from ocsched.commands.output import CommandError
from ocsched.domain.errors import DomainError
from ocsched.domain.json_text import NotUnicodeText, parse_json_text
from ocsched.projections import views

from .access import read_form
from .app import API_ROOT, STATE, error_response, json_response
from .cache import Encoded
from .events import event_filter, events_after, events_before, position_of
from .reads import ReadContext

log = logging.getLogger("ocsched")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadRequest(ValueError):
    """A query parameter that cannot be used: 400 with its message."""


class NotFound(CommandError):
    """404 (besides a service function's "… not found")."""


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    kind: str = "string"
    """string, integer."""
    repeat: bool = False


@dataclass(frozen=True)
class Page:
    items: list[Any]
    cursor: str | None
    """The next page's cursor; None on the last page."""
    cursor_name: str = "cursor"


class Query:
    """A request's parameters, checked; for a paged endpoint its `limit` and cursor."""

    def __init__(self, request: web.Request, paged: bool) -> None:
        self.request = request
        self.limit = self.number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT) if paged else 0
        self._cursor: Any = None
        text = request.query.get("cursor")
        if paged and text:
            try:
                self._cursor = parse_json_text(
                    base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
                )
            except (binascii.Error, ValueError):
                raise BadRequest(f"cursor is not one this server gave: {text}") from None

    def text(self, name: str) -> str | None:
        return self.request.query.get(name) or None

    def texts(self, name: str) -> list[str]:
        return self.request.query.getall(name, [])

    def number(self, name: str, default: int, lowest: int = 0, highest: int = 10**9) -> int:
        text = self.request.query.get(name)
        if text is None:
            return default
        if not (text.isascii() and text.isdigit() and len(text) <= 10) or not (
            lowest <= int(text) <= highest
        ):
            raise BadRequest(f"{name} must be a whole number from {lowest} to {highest}: {text}")
        return int(text)

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    def key(self, size: int) -> tuple[Any, ...] | None:
        """A keyset cursor: the sort key of the last row of the previous page."""
        cursor = self._cursor
        if cursor is None:
            return None
        key = cursor.get("k") if isinstance(cursor, dict) else None
        if not isinstance(key, list) or [type(k) for k in key] != [str] * size:
            raise BadRequest("cursor is not one this endpoint gave")
        return tuple(key)

    @property
    def offset(self) -> int:
        cursor = self._cursor
        if cursor is None:
            return 0
        offset = cursor.get("o") if isinstance(cursor, dict) else None
        if not isinstance(offset, int) or not 0 <= offset <= 10**9:
            raise BadRequest("cursor is not one this endpoint gave")
        return offset

    def keyset(self, rows: list[Any], key: Callable[[Any], list[Any]]) -> Page:
        """A page of `rows`, read with `limit + 1` after the cursor's key."""
        more = len(rows) > self.limit
        rows = rows[: self.limit]
        return Page(rows, _cursor({"k": key(rows[-1])}) if more else None)

    def window(self, rows: Sequence[Any]) -> Page:
        """A page of a whole list (or of its first `offset + limit + 1`), by offset."""
        end = self.offset + self.limit
        return Page(list(rows[self.offset : end]), _cursor({"o": end}) if len(rows) > end else None)


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


Answer = Callable[[ReadContext, Query], Any]


@dataclass(frozen=True)
class Endpoint:
    path: str
    """Under /api/v1; `{name}` a path parameter (an id or a unique prefix, as the CLI's)."""
    summary: str
    answer: Answer
    params: tuple[Param, ...] = ()
    etag: str | None = "models"
    """What determines the answer: "models" (the read models' position), "log" (the log's
    head), or None (the time too: no ETag)."""
    paged: bool = False
    returns: str = "object"


ENDPOINTS: list[Endpoint] = []


def endpoint(
    path: str,
    summary: str,
    *params: Param,
    etag: str | None = "models",
    paged: bool = False,
    returns: str = "object",
) -> Callable[[Answer], Answer]:
    def register(answer: Answer) -> Answer:
        ENDPOINTS.append(Endpoint(path, summary, answer, params, etag, paged, returns))
        return answer

    return register


# The endpoints: each calls the service function of a CLI command.

JOB_TYPE = Param("type", "standard or watchdog: only jobs of this type")


@endpoint("/status", "what is stored and what runs next (`status`)", etag=None)
def _status(ctx: ReadContext, q: Query) -> Any:
    return status.scheduler_status(ctx)


@endpoint("/jobs", "jobs by name (`jobs list`)", JOB_TYPE, paged=True, returns="list")
def _jobs(ctx: ReadContext, q: Query) -> Any:
    after = q.key(2)
    rows = jobs.list_jobs(
        ctx, q.text("type"), after=(after[0], after[1]) if after else None, limit=q.limit + 1
    )
    return q.keyset(rows, lambda row: [row["name"], row["id"]])


@endpoint("/jobs/tree", "jobs with their chained children (`jobs tree`)", returns="list")
def _tree(ctx: ReadContext, q: Query) -> Any:
    return jobs.job_tree(ctx)


@endpoint("/jobs/{id}", "a job's record (`jobs get`)")
def _job(ctx: ReadContext, q: Query) -> Any:
    return jobs.get_job(ctx, ctx.resolve_id(q.path("id")))


@endpoint("/jobs/{id}/runs", "a job's runs, newest first (`runs list`)", paged=True, returns="list")
def _job_runs(ctx: ReadContext, q: Query) -> Any:
    job_id = ctx.resolve_id(q.path("id"))
    return q.window(runs.list_runs(ctx, job_id, q.offset + q.limit + 1))


ACTIVE = ("pending", "queued", "running")


@endpoint(
    "/runs",
    "runs in the given statuses, with their job's name, oldest first (`runs running`'s rows)",
    Param("status", f"a run status; repeat for several (default {', '.join(ACTIVE)})", repeat=True),
    paged=True,
    returns="list",
)
def _runs(ctx: ReadContext, q: Query) -> Any:
    return q.window(views.active_runs(ctx.views(), tuple(q.texts("status")) or ACTIVE))


@endpoint("/runs/running", "runs in progress (`runs running`)", returns="list")
def _running(ctx: ReadContext, q: Query) -> Any:
    return runs.running_runs(ctx)


@endpoint(
    "/runs/stale",
    "runs past their timeout, or silent past a threshold (`runs stale`)",
    Param("threshold", "seconds of silence (default 90)", "integer"),
    etag=None,
    returns="list",
)
def _stale(ctx: ReadContext, q: Query) -> Any:
    return runs.stale_runs(ctx, q.number("threshold", runs.STALE_THRESHOLD_S))


@endpoint("/runs/{id}", "a run's record (`runs get`)")
def _run(ctx: ReadContext, q: Query) -> Any:
    return runs.get_run(ctx, ctx.resolve_id(q.path("id"), "run"))


@endpoint(
    "/runs/{id}/output",
    "a shell run's stdout or stderr (`runs output`)",
    Param("kind", "stdout (default) or stderr"),
)
def _output(ctx: ReadContext, q: Query) -> Any:
    kind = (q.text("kind") or "stdout").lower()
    if kind not in ("stdout", "stderr"):
        raise BadRequest(f"kind must be stdout or stderr, got: {kind}")
    return runs.run_output(ctx, ctx.resolve_id(q.path("id"), "run"), kind)


@endpoint(
    "/approvals",
    "pending approvals, oldest first (`approvals list`)",
    Param("job", "only this job's (id or unique prefix)"),
    returns="list",
)
def _approvals(ctx: ReadContext, q: Query) -> Any:
    job = q.text("job")
    return views.pending_approvals(ctx.views(), ctx.resolve_id(job) if job else None)


@endpoint(
    "/deliveries",
    "deliveries, oldest first (`deliveries list`)",
    Param("run", "of this run (id or unique prefix)"),
    Param("status", "pending, delivered or failed"),
    paged=True,
    returns="list",
)
def _deliveries(ctx: ReadContext, q: Query) -> Any:
    return q.window(deliveries.list_deliveries(ctx, q.text("run"), q.text("status")))


@endpoint("/aliases", "delivery aliases (`alias list`)", returns="list")
def _aliases(ctx: ReadContext, q: Query) -> Any:
    return deliveries.list_aliases(ctx)


@endpoint(
    "/dispatches",
    "sub-agent dispatches, each label's newest (`dispatch list`, the anchor's shape)",
    Param("status", "running, done, error or interrupted"),
    Param("limit", "at most this many labels (20)", "integer"),
)
def _dispatches(ctx: ReadContext, q: Query) -> Any:
    return dispatch_status.list_labels(ctx, q.text("status"), q.number("limit", 20, 1, MAX_LIMIT))


@endpoint("/dispatches/{label}", "a label's newest dispatch (its `dispatch list` entry)")
def _dispatch(ctx: ReadContext, q: Query) -> Any:
    row = dispatch_labels.label_row(ctx, q.path("label"))
    if row is None:
        raise NotFound(f'No session found for label "{q.path("label")}"')
    return dispatch_labels.LedgerEntry.of(row)


@endpoint(
    "/dispatch-queue",
    "the jobs' dispatch queue (manual, chain, retry, replay), newest first, with job names",
    paged=True,
    returns="list",
)
def _dispatch_queue(ctx: ReadContext, q: Query) -> Any:
    return q.window(views.newest_dispatches(ctx.views(), q.offset + q.limit + 1))


@endpoint(
    "/messages",
    "an agent's inbox (unread, inbox order) or outbox (`msg inbox`, `msg outbox`)",
    Param("agent", "the agent's id (required)"),
    Param("box", "inbox (default) or outbox"),
    Param("limit", "at most this many (20)", "integer"),
    returns="list",
)
def _messages(ctx: ReadContext, q: Query) -> Any:
    agent, box = q.text("agent"), q.text("box") or "inbox"
    if agent is None or box not in ("inbox", "outbox"):
        raise BadRequest("agent=<id> is required, box is inbox or outbox")
    limit = q.number("limit", 20, 1, MAX_LIMIT)
    return (messages.inbox if box == "inbox" else messages.outbox)(ctx, agent, limit)


@endpoint("/messages/{id}", "a message")
def _message(ctx: ReadContext, q: Query) -> Any:
    found = messages.get_message(ctx, ctx.resolve_id(q.path("id"), "message"))
    if found is None:
        raise NotFound(f"Message not found: {q.path('id')}")
    return found


@endpoint("/messages/{id}/thread", "a message's thread (`msg thread`)", returns="list")
def _thread(ctx: ReadContext, q: Query) -> Any:
    return messages.thread(ctx, ctx.resolve_id(q.path("id"), "message"))


@endpoint("/agents", "the agents registry (`agents list`)", returns="list")
def _agents(ctx: ReadContext, q: Query) -> Any:
    return agents.list_agents(ctx)


@endpoint("/agents/{id}", "an agent (`agents get`)")
def _agent(ctx: ReadContext, q: Query) -> Any:
    found = agents.get_agent(ctx, q.path("id"))
    if found is None:
        raise NotFound(f"Agent not found: {q.path('id')}")
    return found


@endpoint("/tasks", "active task groups (`tasks list`)", returns="list")
def _tasks(ctx: ReadContext, q: Query) -> Any:
    return tasks.active_groups(ctx)


@endpoint(
    "/tasks/history",
    "ended task groups, newest first (`tasks history`)",
    Param("limit", "at most this many (10)", "integer"),
    returns="list",
)
def _task_history(ctx: ReadContext, q: Query) -> Any:
    return tasks.ended_groups(ctx, q.number("limit", 10, 1, MAX_LIMIT))


@endpoint("/tasks/{id}", "a task group's status (`tasks status`)", etag=None)
def _task(ctx: ReadContext, q: Query) -> Any:
    return tasks.group_status(ctx, ctx.resolve_id(q.path("id"), "group"))


EVENT_PARAMS = (
    Param("type", "an event type (Run.Finished), an aggregate's (Run), a pattern", repeat=True),
    Param("actor", "who (reactor, a person; a pattern)", repeat=True),
    Param("origin", "from where (cli, api, a daemon; a pattern)", repeat=True),
    Param("aggregate", "a job, run, dispatch, … id or prefix", repeat=True),
    Param("correlation", "one invocation's correlation id or prefix", repeat=True),
    Param("since", "at or after: ISO 8601 (UTC without an offset) or 2h (ago)"),
    Param("until", "at or before (as since)"),
)


@endpoint(
    "/events",
    "the log's events that pass the filters (`events tail`): after=P pages forward from a"
    " position; without it the newest, and the next page is older (before=P)",
    Param("after", "events after this position, oldest first", "integer"),
    Param("before", "the newest events before this position", "integer"),
    *EVENT_PARAMS,
    etag="log",
    paged=True,
    returns="list",
)
def _events(ctx: ReadContext, q: Query) -> Any:
    try:
        after, before = (
            position_of(q.request.query, "after"),
            position_of(q.request.query, "before"),
        )
    except ValueError as error:
        raise BadRequest(str(error)) from None
    chosen = event_filter(q.request.query, ctx.now)
    if after is not None:
        records, _ = events_after(ctx, after, chosen, q.limit + 1)
        more = len(records) > q.limit
        records = records[: q.limit]
        return Page(records, str(records[-1]["position"]) if more else None, "after")
    records = events_before(ctx, before, chosen, q.limit + 1)
    more = len(records) > q.limit
    records = records[-q.limit :] if records else records
    return Page(records, str(records[0]["position"]) if more else None, "before")


@endpoint("/history/{id}", "one id's whole history (`events show`)", etag="log", returns="list")
def _history(ctx: ReadContext, q: Query) -> Any:
    return events.history(ctx, ctx.resolve_id(q.path("id"), "any"))


@endpoint("/projections", "the read models' positions and lag (`projections status`)", etag=None)
def _projections(ctx: ReadContext, q: Query) -> Any:
    return projections.projection_status(ctx)


# Answering


def _etag(ctx: ReadContext, kind: str | None, query: Query) -> str | None:
    """What the answer follows from: the read models' positions (ids are resolved through
    them too), and for events the log's head; nothing when the answer moves with the time
    (`since`/`until` may be a duration ago)."""
    if kind is None or "since" in query.request.query or "until" in query.request.query:
        return None
    low, total = ctx.positions()
    if kind == "log":
        return f'"l{ctx.log.max_position()}-{low}-{total}"'
    return f'"m{low}-{total}"'


def _reader(found: Endpoint) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        try:
            query = Query(request, found.paged)
        except BadRequest as error:
            return error_response(400, str(error))
        wanted = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}

        def answer(ctx: ReadContext) -> tuple[Encoded | None, str | None]:
            # In the worker thread: the query, and the encoding, stay off the event loop.
            tag = _etag(ctx, found.etag, query)
            if tag is not None and (tag in wanted or f"W/{tag}" in wanted):
                return None, tag

            def make() -> Encoded:
                return _encoded(request, found.answer(ctx, query))

            if tag is None:
                return make(), tag
            return state.cache.answer((request.path_qs, tag), make), tag

        try:
            encoded, tag = await state.reads.read(answer)
        except Exception as error:  # noqa: BLE001 - one line, never a traceback
            return _failure(error)
        headers = {"Cache-Control": "no-cache"}
        if tag is not None:
            headers["ETag"] = tag
        if encoded is None:
            return web.Response(status=304, headers=headers)
        headers.update(encoded.headers)
        return web.Response(body=encoded.body, headers=headers, content_type="application/json")

    return handle


def _encoded(request: web.Request, body: Any) -> Encoded:
    """An answer as bytes (msgspec, as `--json` encodes it), a page's links in its headers."""
    headers = {}
    if isinstance(body, Page):
        if body.cursor is not None:
            headers["Link"] = f'<{_next_url(request, body)}>; rel="next"'
            headers["X-Next-Cursor"] = body.cursor
        body = body.items
    return Encoded(msgspec.json.encode(body), headers)


def _next_url(request: web.Request, page: Page) -> str:
    kept = [(k, v) for k, v in request.query.items() if k not in ("cursor", "after", "before")]
    assert page.cursor is not None
    return f"{request.path}?{urlencode([*kept, (page.cursor_name, page.cursor)])}"


def _failure(error: Exception, refused: int = 400) -> web.Response:
    if isinstance(error, BadRequest | DomainError):
        return error_response(400, str(error))
    if isinstance(error, CommandError):
        message = str(error)
        missing = isinstance(error, NotFound) or "not found" in message.lower()
        return error_response(404 if missing else refused, message)
    log.error("http: %s: %s", type(error).__name__, error)
    return error_response(500, f"Internal error ({type(error).__name__}): {error}")


# Writes: the approval decisions of `jobs approve` / `jobs reject`


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    state = request.app[STATE]
    fields: dict[str, Any] = {}
    if request.content_type == "application/json" and request.body_exists:
        try:
            loaded = await request.json(loads=parse_json_text)
        except NotUnicodeText as error:
            return error_response(400, f"the body {error}")
        except ValueError:
            return error_response(400, "the body is not JSON")
        fields = loaded if isinstance(loaded, dict) else {}
    elif request.body_exists:  # (read already by the CSRF guard for a form: cached)
        fields = dict(await read_form(request))
    reason = fields.get("reason")
    reason = reason.strip() or None if isinstance(reason, str) else None
    job = request.match_info["id"]

    def decide(ctx: Context) -> dict[str, Any]:
        return approvals.decide_approval(ctx, ctx.resolve_id(job), approve, reason)

    try:
        result = await state.reads.write(decide)
    except Exception as error:  # noqa: BLE001 - one line, never a traceback
        return _failure(error, refused=409)
    target = fields.get("next")
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//"):
        raise web.HTTPSeeOther(target)  # a form's post goes back to its page
    return json_response(result)


async def _approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, True)


async def _reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, False)


WRITES = (
    ("/jobs/{id}/approve", "approve the job's newest pending approval (`jobs approve`)", _approve),
    ("/jobs/{id}/reject", "reject it, with an optional reason (`jobs reject`)", _reject),
)


async def _index(request: web.Request) -> web.StreamResponse:
    paths = sorted({API_ROOT + e.path for e in ENDPOINTS} | {f"{API_ROOT}/events/stream"})
    return json_response(
        {"api": "v1", "openapi": f"{API_ROOT}/openapi.json", "metrics": "/metrics", "paths": paths}
    )


def add_routes(app: web.Application) -> None:
    from .openapi import openapi

    app.router.add_get(API_ROOT, _index)
    app.router.add_get(f"{API_ROOT}/openapi.json", openapi)
    # Fixed paths before parameterized ones (`/jobs/tree` before `/jobs/{id}`).
    for found in sorted(ENDPOINTS, key=lambda e: "{" in e.path):
        app.router.add_get(API_ROOT + found.path, _reader(found))
    for path, _, handler in WRITES:
        app.router.add_post(API_ROOT + path, handler)
