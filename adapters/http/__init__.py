"""`ocsched serve`: the read API, the live event stream and the metrics over HTTP (aiohttp).

A driving adapter, like the command line: its routes call the same service functions the
CLI's commands call (`commands/jobs.py`, `runs.py`, …), so a JSON answer has the shape of
the command's `--json` output. Modules:

* `app.py`: the `web.Application` (`build_app`), its shared `ServerState`, the route hooks
  (`ROUTE_MODULES`: each module's `add_routes(app)`), and `run_server`.
* `access.py`: the token, who may read and write, the CSRF guard, `/login`.
* `reads.py`: service functions called in worker threads, one `Context` per thread.
* `api.py`: `/api/v1/…`, the JSON read API and the approval decisions; `openapi.py`
  describes it from the same table.
* `stream.py`: the log watch (the reactor's wake-up) and `/api/v1/events/stream` (SSE).
* `metrics.py`: `/metrics`, computed from the read models at each scrape.
* `dashboard.py`: reserved for the HTML dashboard's routes.
"""
