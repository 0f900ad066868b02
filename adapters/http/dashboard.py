"""Reserved for the HTML dashboard (issue 15): its routes go here.

The interface (see `app.py`): `add_routes(app: web.Application) -> None` is called once,
after the API's routes; a page handler reads through `request.app[STATE].reads`
(`await reads.read(lambda ctx: list_jobs(ctx))`: the CLI's service functions in a worker
thread) and records through `reads.write(...)`; the approval buttons post a form to
`/api/v1/jobs/{job_id}/approve` or `/reject` with the fields `csrf_token`
(`app[STATE].access.csrf_token`), an optional `reason` and `next` (the page to go back to:
the answer is then a 303 to it). A browser authenticates with the cookie `/login` sets
(`/login?next=/` shows its form); on a loopback bind reads need no login. Live pages listen
to `/api/v1/events/stream` (an `EventSource`; same origin, so the cookie goes with it). A
route at `/` replaces the redirect to `/api/v1`.
"""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """No pages yet."""
