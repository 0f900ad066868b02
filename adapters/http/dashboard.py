"""The HTML dashboard (issue 15): what is scheduled, what runs, what failed and why, what
waits for a decision. Server-rendered pages over the CLI's service functions, a little
script (`static/dashboard.js`) and a stylesheet; nothing is fetched from elsewhere.

* `/` jobs (next run, last status) and the runs in progress; `/jobs/{id}` a job with its
  runs' timeline; `/runs/{id}` a run's output, its causal chain (`runs explain`'s
  `explain`) and deliveries; `/approvals` the pending approvals with Approve / Reject;
  `/dispatches` the sub-agent dispatches and the jobs' dispatch queue; `/events` the log
  with `events tail`'s filters; `/id/{id}` goes to the page of whatever an id names.
* A page is built in a worker thread (`reads.read`), layout included, from one
  `ReadContext`. Its `<body>` carries the read models' position and the log's head; the
  script follows `/api/v1/events/stream` from that head and, at each event, fetches the
  page again and swaps its `<main>` (and the navigation), again until the read models have
  reached the event: a change shows within a second without a reload.
* Writes are the API's: the buttons are forms posting to `/api/v1/jobs/{id}/approve` or
  `/reject` with the CSRF field (`Access.csrf_token`) and `next` (back to the page), so they
  work without the script too; the script sends them with the `X-Requested-By` header and
  shows a refusal in the page. They show only to a reader who sent the token (the `/login`
  cookie); the event records the server's actor, origin `api`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import MultiDict

from ocsched.commands import deliveries, dispatch_status, explain, jobs, runs
from ocsched.commands.output import CommandError
from ocsched.domain.errors import DomainError
from ocsched.projections import views

from .app import API_ROOT, STATE
from .events import event_filter, events_before, position_of
from .reads import ReadContext
from .templates import (
    STATIC,
    Column,
    Markup,
    Viewer,
    badge,
    escape,
    fields,
    html,
    join,
    link,
    moment,
    page,
    path,
    pre,
    section,
    short,
    table,
    with_id_links,
)

STATIC_FILES = Path(__file__).parent / "static"
JOBS_PAGE = 200
RUNS_SHOWN = 50
EVENTS_PAGE = 100
LABELS_SHOWN = 100
QUEUE_SHOWN = 100
OUTPUT_SHOWN = 256 * 1024
"""Characters of a run's stdout or stderr shown (`runs output` prints it all)."""
EVENT_FILTERS = ("type", "actor", "origin", "aggregate", "correlation", "since", "until")
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none';"
    " base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Build = Callable[[ReadContext, Viewer, web.Request], tuple[str, str, Markup]]
"""A page's content: (title, navigation entry, body)."""


# The jobs


def jobs_page(ctx: ReadContext, viewer: Viewer, request: web.Request) -> tuple[str, str, Markup]:
    db = ctx.views()
    after_name, after_id = request.query.get("after_name"), request.query.get("after_id")
    after = (after_name, after_id) if after_name is not None and after_id else None
    rows = jobs.list_jobs(ctx, after=after, limit=JOBS_PAGE + 1)
    more = len(rows) > JOBS_PAGE
    rows = rows[:JOBS_PAGE]
    active = views.active_runs(db, ("pending", "queued", "running"))
    waiting = len(views.pending_approvals(db))
    parts: list[object] = []
    if waiting:
        parts.append(
            html(
                '<p class="notice">$link</p>',
                link=link("/approvals", f"{waiting} approval{'s' if waiting != 1 else ''} waiting"),
            )
        )
    parts.append(section("Running now", _active_table(active)))
    listing = table(
        [
            Column("Name", "main"),
            "Target",
            "Schedule",
            "On",
            "Next run",
            "Last run",
            "Last status",
            Column("Errors", "num"),
        ],
        (_job_row(row) for row in rows),
        "No jobs yet: ocsched jobs add '{…}'",
    )
    if more:
        last = rows[-1]
        listing = join(
            [listing, link(path("", after_name=last["name"], after_id=last["id"]), "Next page →")]
        )
    elif after is not None:
        listing = join([listing, link("/", "← First page")])
    parts.append(section("Jobs", listing))
    return "Jobs", "jobs", join(parts)


def _active_table(rows: list[dict[str, Any]]) -> Markup:
    return table(
        [Column("Job", "main"), "Run", "Status", "Started", "Trigger"],
        (
            (
                link(path("jobs", r["job_id"]), r["job_name"] or short(r["job_id"])),
                _run_link(r["id"]),
                badge(r["status"]),
                moment(r["started_at"] or r["dispatched_at"]),
                r["trigger"],
            )
            for r in rows
        ),
        "Nothing is running.",
    )


def _schedule(row: dict[str, Any]) -> Markup:
    if row["parent_id"]:
        return join(
            [
                "after ",
                link(path("jobs", row["parent_id"]), short(row["parent_id"])),
                f" {row['trigger_on'] or ''}",
            ]
        )
    if row["schedule_kind"] == "at":
        return join(["at ", moment(row["schedule_at"])])
    return html("<code>$cron</code>", cron=row["schedule_cron"] or "-")


def _job_row(row: dict[str, Any]) -> tuple[object, ...]:
    return (
        link(path("jobs", row["id"]), row["name"]),
        row["session_target"],
        _schedule(row),
        "yes" if row["enabled"] else "no",
        moment(row["next_run_at"]) if row["enabled"] else "off",
        moment(row["last_run_at"]),
        badge(row["last_status"]),
        row["consecutive_errors"],
    )


def job_page(ctx: ReadContext, viewer: Viewer, request: web.Request) -> tuple[str, str, Markup]:
    db = ctx.views()
    job_id = ctx.resolve_id(request.match_info["id"], "job")
    job = jobs.get_job(ctx, job_id)
    limit = min(max(int(request.query.get("runs") or RUNS_SHOWN), 1), 1000)
    job_runs = runs.list_runs(ctx, job_id, limit)
    children = views.children(db, job_id)
    pending = views.pending_approvals(db, job_id)
    about = fields(
        [
            ("Id", html("<code>$id</code>", id=job["id"])),
            ("Enabled", "yes" if job["enabled"] else "no"),
            ("Schedule", _schedule(job)),
            ("Zone", job["schedule_tz"]),
            ("Target", job["session_target"]),
            ("Agent", job["agent_id"] if job["session_target"] != "shell" else None),
            ("Next run", moment(job["next_run_at"])),
            ("Last run", moment(job["last_run_at"])),
            ("Last status", badge(job["last_status"])),
            ("Errors in a row", job["consecutive_errors"]),
            ("Overlap", job["overlap_policy"]),
            ("Approval", "required" if job["approval_required"] else None),
            (
                "Delivery",
                " ".join(
                    filter(
                        None, [job["delivery_mode"], job["delivery_channel"], job["delivery_to"]]
                    )
                ),
            ),
            (
                "Children",
                join((link(path("jobs", c["id"]), c["name"]) for c in children), ", ") or None,
            ),
        ]
    )
    parts: list[object] = [about]
    if pending:
        parts.append(section("Waiting for approval", _approvals_table(pending, viewer)))
    parts.append(section("Payload", pre(job["payload_message"])))
    more = link(path("jobs", job_id, runs=limit * 4), "more") if len(job_runs) == limit else None
    parts.append(
        section(
            "Runs",
            join([timeline(job_runs, ctx.now), _runs_table(job_runs)]),
            note=join([f"the newest {len(job_runs)} ", more or ""]),
        )
    )
    parts.append(link(path("events", aggregate=job_id), "This job's events →"))
    return job["name"], "jobs", join(parts)


def _runs_table(rows: list[dict[str, Any]]) -> Markup:
    return table(
        [
            Column("Run", "main"),
            "Status",
            "Started",
            "Duration",
            "Trigger",
            Column("Summary", "wide"),
        ],
        (
            (
                _run_link(r["id"]),
                badge(r["status"]),
                moment(r["started_at"] or r["dispatched_at"]),
                runs.duration(r["duration_ms"]) or "-",
                r["trigger"],
                _first_line(r["error_message"] or r["shell_stdout"] or r["summary"]),
            )
            for r in rows
        ),
        "No runs yet.",
    )


def _run_link(run_id: str | None) -> Markup:
    return link(path("runs", run_id), short(run_id)) if run_id else escape("-")


def _first_line(text: str | None, width: int = 120) -> str:
    line = next((part for part in (text or "").splitlines() if part.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


TIMELINE_WIDTH, TIMELINE_HEIGHT, LEAST_BAR = 1000, 36, 4


def timeline(rows: list[dict[str, Any]], now: datetime) -> Markup:
    """The runs on a time axis (an SVG): each from its start to its end (now while it
    runs), at least a few pixels wide, coloured by status, a link to its page; below, the
    same runs one mark each, oldest first (runs close in time overlap on the axis)."""
    spans = []
    for row in rows:
        start = _parsed(row["started_at"] or row["dispatched_at"])
        if start is None:
            continue
        end = _parsed(row["finished_at"]) or now
        spans.append((start, max(end, start), row))
    if not spans:
        return Markup("")
    first = min(start for start, _, _ in spans)
    last = max(max(end for _, end, _ in spans), first)
    total = max((last - first).total_seconds(), 1.0)
    bars, ticks = [], []
    for start, end, row in sorted(spans, key=lambda span: span[0]):
        x = (start - first).total_seconds() / total * (TIMELINE_WIDTH - LEAST_BAR)
        width = max((end - start).total_seconds() / total * TIMELINE_WIDTH, LEAST_BAR)
        tip = f"{row['status']} · {row['started_at'] or row['dispatched_at']} UTC · " + (
            runs.duration(row["duration_ms"]) or "running"
        )
        bars.append(
            html(
                '<a href="$href"><rect class="bar $status" x="$x" y="6" width="$w" height="24">'
                "<title>$tip</title></rect></a>",
                href=path("runs", row["id"]),
                status=row["status"],
                x=f"{x:.1f}",
                w=f"{width:.1f}",
                tip=tip,
            )
        )
        ticks.append(link(path("runs", row["id"]), "", class_=f"tick {row['status']}", title=tip))
    return html(
        '<figure class="timeline"><svg viewBox="0 0 $w $h" preserveAspectRatio="none"'
        ' role="img" aria-label="runs over time">$bars</svg>'
        "<figcaption><span>$first</span><span>$last</span></figcaption>"
        '<p class="strip" aria-label="runs, oldest first">$ticks</p></figure>',
        w=TIMELINE_WIDTH,
        h=TIMELINE_HEIGHT,
        bars=join(bars),
        ticks=join(ticks),
        first=moment(_stored(first)),
        last=moment(_stored(last)),
    )


def _parsed(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        parsed = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _stored(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# A run


def run_page(ctx: ReadContext, viewer: Viewer, request: web.Request) -> tuple[str, str, Markup]:
    run_id = ctx.resolve_id(request.match_info["id"], "run")
    run = runs.get_run(ctx, run_id)
    job = views.job(ctx.views(), run["job_id"])
    job_link = link(path("jobs", run["job_id"]), job["name"] if job else short(run["job_id"]))
    about = fields(
        [
            ("Id", html("<code>$id</code>", id=run["id"])),
            ("Job", job_link),
            ("Status", badge(run["status"])),
            ("Trigger", run["trigger"]),
            ("Slot", moment(run["slot"]) if run["slot"] else None),
            ("Started", moment(run["started_at"])),
            ("Finished", moment(run["finished_at"]) if run["finished_at"] else None),
            ("Duration", runs.duration(run["duration_ms"])),
            ("Exit code", run["shell_exit_code"]),
            ("Signal", run["shell_signal"]),
            ("Session", run["session_key"]),
            ("Error", run["error_message"]),
            ("Tokens", run["total_tokens"]),
        ]
    )
    parts: list[object] = [about]
    if run["summary"] and not (run["shell_stdout"] or run["shell_stderr"]):
        parts.append(section("Summary", pre(run["summary"])))
    parts.append(_output(ctx, run))
    parts.append(
        section(
            "Causal chain",
            _chain(explain.explain(ctx, run_id)),
            note="runs explain: why this run exists and what happened",
        )
    )
    parts.append(section("Deliveries", _deliveries_table(deliveries.list_deliveries(ctx, run_id))))
    parts.append(link(path("events", aggregate=run_id), "This run's events →"))
    name = job["name"] if job else short(run["job_id"])
    return f"Run {short(run_id)} of {name}", "jobs", join(parts)


def _output(ctx: ReadContext, run: dict[str, Any]) -> Markup:
    shown = []
    for kind in ("stdout", "stderr"):
        if not run[f"shell_{kind}"] and not run[f"shell_{kind}_path"]:
            continue
        try:
            content = runs.run_output(ctx, run["id"], kind)["content"]
        except CommandError as error:
            content = str(error)
        cut = len(content) > OUTPUT_SHOWN
        note = f"the first {OUTPUT_SHOWN // 1024} KiB; runs output has it all" if cut else None
        shown.append(section(kind, pre(content[:OUTPUT_SHOWN]), note=note))
    if not shown:
        return section("Output", pre(None, "No output recorded."))
    return join(shown)


def _chain(step: explain.Step) -> Markup:
    """`runs explain`'s tree below `step`, as nested lists."""
    return html('<ol class="chain">$items</ol>', items=join(_chain_item(c) for c in step.children))


def _chain_item(step: explain.Step) -> Markup:
    record = step.record
    meta = (
        html(
            '<span class="meta">$when · $actor via $origin</span>',
            when=moment(record["time"]),
            actor=record["actor"],
            origin=record["origin"],
        )
        if record
        else ""
    )
    inner = _chain(step) if step.children else ""
    return html(
        "<li><span>$text</span> $meta$inner</li>",
        text=with_id_links(step.text),
        meta=meta,
        inner=inner,
    )


def _deliveries_table(rows: list[dict[str, Any]]) -> Markup:
    return table(
        [
            Column("Delivery", "main"),
            "Purpose",
            "To",
            "Status",
            "Chunks",
            "Attempts",
            Column("Last error", "wide"),
        ],
        (
            (
                short(r["id"]),
                r["purpose"],
                ":".join(filter(None, [r["channel"], r["target"]])) or "-",
                badge(r["status"]),
                f"{r['chunks_sent'] or 0}/{r['chunks'] or 0}",
                r["attempts"],
                r["last_error"] or "",
            )
            for r in rows
        ),
        "No deliveries.",
    )


# Approvals


def approvals_page(
    ctx: ReadContext, viewer: Viewer, request: web.Request
) -> tuple[str, str, Markup]:
    pending = views.pending_approvals(ctx.views())
    note = (
        None
        if viewer.authenticated
        else join(["deciding needs the token: ", viewer.login_link("log in")])
    )
    return (
        "Approvals",
        "approvals",
        section("Pending", _approvals_table(pending, viewer), note=note),
    )


def _approvals_table(rows: list[dict[str, Any]], viewer: Viewer) -> Markup:
    # The API decides a job's newest pending approval: its row carries the buttons.
    newest = {row["job_id"]: row["id"] for row in rows}
    return table(
        [
            Column("Job", "main"),
            "Requested",
            "Dispatch",
            "From run",
            "On timeout",
            Column("Decide", "wide"),
        ],
        (
            (
                link(path("jobs", r["job_id"]), r["job_name"] or short(r["job_id"])),
                moment(r["requested_at"]),
                short(r["dispatch_id"]),
                _run_link(r["run_id"]),
                f"{r['approval_auto'] or 'reject'} after {r['approval_timeout_s']} s",
                _decision(r, viewer) if newest[r["job_id"]] == r["id"] else "after the newer one",
            )
            for r in rows
        ),
        "No approvals are waiting.",
    )


def _decision(row: dict[str, Any], viewer: Viewer) -> Markup:
    if not viewer.authenticated:
        return viewer.login_link()
    job = row["job_id"]
    common = html(
        '<input type="hidden" name="csrf_token" value="$csrf">'
        '<input type="hidden" name="next" value="$next">',
        csrf=viewer.csrf_token,
        next=viewer.here,
    )
    return html(
        '<div class="decide">'
        '<form method="post" action="$approve" data-write="approved">$common'
        '<button class="approve" type="submit">Approve</button></form>'
        '<form method="post" action="$reject" data-write="rejected">$common'
        '<input name="reason" placeholder="reason (optional)" aria-label="reason">'
        '<button class="reject" type="submit">Reject</button></form></div>',
        approve=f"{API_ROOT}{path('jobs', job, 'approve')}",
        reject=f"{API_ROOT}{path('jobs', job, 'reject')}",
        common=common,
    )


# Dispatches


def dispatches_page(
    ctx: ReadContext, viewer: Viewer, request: web.Request
) -> tuple[str, str, Markup]:
    status = request.query.get("status") or None
    labels = dispatch_status.list_labels(ctx, status, LABELS_SHOWN).labels
    choices = join(
        link(
            path("dispatches", status=choice),
            choice or "all",
            **({"aria_current": "true"} if choice == (status or "") else {}),
        )
        for choice in ("", "running", "done", "error", "interrupted")
    )
    agents = table(
        [
            Column("Label", "main"),
            "Status",
            "Agent",
            "Spawned",
            "Last ping",
            Column("Summary", "wide"),
        ],
        (
            (
                e.label,
                badge(e.status),
                e.agent or "-",
                moment(e.spawned_at),
                moment(e.last_ping),
                _first_line(e.error or e.summary),
            )
            for e in labels
        ),
        "No sub-agent dispatches" + (f" {status}." if status else "."),
    )
    queue = table(
        [Column("Job", "main"), "Kind", "Status", "Due", "From run", "Run"],
        (
            (
                link(path("jobs", r["job_id"]), r["job_name"] or short(r["job_id"])),
                r["dispatch_kind"],
                badge(r["status"]),
                moment(r["scheduled_for"]),
                _run_link(r["source_run_id"]),
                _run_link(r["run_id"]),
            )
            for r in views.newest_dispatches(ctx.views(), QUEUE_SHOWN)
        ),
        "The queue is empty.",
    )
    return (
        "Dispatches",
        "dispatches",
        join(
            [
                section(
                    "Sub-agents",
                    join([html('<p class="filters">$c</p>', c=choices), agents]),
                    note="dispatch list",
                ),
                section(
                    "Jobs' dispatch queue",
                    queue,
                    note="manual, chained, retried runs, newest first",
                ),
            ]
        ),
    )


# The event log


def events_page(ctx: ReadContext, viewer: Viewer, request: web.Request) -> tuple[str, str, Markup]:
    given = MultiDict(
        (k, v.strip()) for k, v in request.query.items() if k in EVENT_FILTERS and v.strip()
    )
    try:
        chosen = event_filter(given, ctx.now)
        before = position_of(request.query, "before")
    except (CommandError, ValueError) as error:  # shown above the form, to be corrected
        records, problem = [], html('<p class="error">$e</p>', e=" ".join(str(error).split()))
    else:
        records, problem = events_before(ctx, before, chosen, EVENTS_PAGE + 1), Markup("")
    more = len(records) > EVENTS_PAGE
    records = records[-EVENTS_PAGE:]
    inputs = join(
        html(
            '<label>$name <input name="$name" value="$value" placeholder="$hint"></label>',
            name=name,
            value=given.get(name, ""),
            hint=hint,
        )
        for name, hint in zip(
            EVENT_FILTERS,
            (
                "Run.Finished, Run, Approval.*",
                "a person, reactor",
                "cli, api",
                "an id or prefix",
                "an id or prefix",
                "2h or 2026-12-05T09:00",
                "as since",
            ),
            strict=True,
        )
    )
    form = html(
        '<form class="filters" method="get" action="/events">$inputs'
        '<button type="submit">Filter</button> $clear</form>',
        inputs=inputs,
        clear=link("/events", "clear") if given else "",
    )
    listing = table(
        [Column("#", "num"), "Time", Column("Event", "main"), "Of", "Who", Column("What", "wide")],
        (_event_row(r) for r in reversed(records)),
        "No events match." if given else "No events yet.",
    )
    older = (
        link(path("events", **dict(given), before=records[0]["position"]), "Older →")
        if more and records
        else ""
    )
    return "Events", "events", join([problem, form, listing, older])


def _event_row(record: dict[str, Any]) -> tuple[object, ...]:
    what = explain.describe_event(record)
    detail = html(
        '<details data-key="$key"><summary>$what</summary><pre>$fields</pre></details>',
        key=record["position"],
        what=what if what != record["type"] else "fields",
        fields=_pretty(record["fields"]),
    )
    return (
        record["position"],
        moment(record["time"]),
        record["type"],
        link(path("id", record["aggregate_id"]), short(record["aggregate_id"])),
        f"{record['actor']} via {record['origin']}",
        detail,
    )


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# An id's page


async def find_id(request: web.Request) -> web.StreamResponse:
    """`/id/<id>`: the page of the job or run the id names, else its events."""
    state = request.app[STATE]
    text = request.match_info["id"]

    def which(ctx: ReadContext) -> str:
        db = ctx.views()
        if views.run(db, text):
            return path("runs", text)
        if views.job(db, text):
            return path("jobs", text)
        return path("events", aggregate=text)

    raise web.HTTPSeeOther(await state.reads.read(which))


# Serving


def _answer(build: Build) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        viewer = Viewer(
            request.path_qs, request.get("authenticated") is not None, state.access.csrf_token
        )

        def render(ctx: ReadContext) -> str:
            title, current, body = build(ctx, viewer, request)
            return _whole(ctx, title, current, body, viewer)

        def refused(ctx: ReadContext, message: str) -> str:
            body = html('<p class="error">$message</p>', message=message)
            return _whole(
                ctx, "Not found" if "not found" in message.lower() else "Refused", "", body, viewer
            )

        try:
            text, status = await state.reads.read(render), 200
        except (CommandError, DomainError, ValueError) as error:
            message = " ".join(str(error).split())
            status = 404 if "not found" in message.lower() else 400
            text = await state.reads.read(lambda ctx: refused(ctx, message))
        return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)

    return handle


def _whole(ctx: ReadContext, title: str, current: str, body: Markup, viewer: Viewer) -> str:
    return page(
        title,
        body,
        current=current,
        viewer=viewer,
        pending_approvals=len(views.pending_approvals(ctx.views())),
        position=ctx.position(),
        head=ctx.log.max_position(),
    )


async def _icon(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_FILES / "icon.svg", headers={"Content-Type": "image/svg+xml"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", _answer(jobs_page))
    app.router.add_get("/jobs/{id}", _answer(job_page))
    app.router.add_get("/runs/{id}", _answer(run_page))
    app.router.add_get("/approvals", _answer(approvals_page))
    app.router.add_get("/dispatches", _answer(dispatches_page))
    app.router.add_get("/events", _answer(events_page))
    app.router.add_get("/id/{id}", find_id)
    app.router.add_get("/favicon.ico", _icon)  # asked for by pages without a link (/login)
    app.router.add_static(STATIC, STATIC_FILES)
