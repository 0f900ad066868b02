"""`ocsched serve` as a real process on 127.0.0.1: every endpoint answers what the CLI's
`--json` prints, pages, ETags, the token and the CSRF guard, the live stream, `/metrics`
against the read models, and `daemon --serve`. Nothing talks to any address but 127.0.0.1
(the non-loopback bind listens on 0.0.0.0 and is reached through 127.0.0.1)."""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import OCSCHED, Scheduler, shell_job, wait_until
from .test_as_of import Day
from .test_postgres import database_url, on_host  # noqa: F401 - a fixture


class Served:
    """`ocsched --json serve --port 0 …` until `stop()`; `url` once it listens."""

    def __init__(self, scheduler: Scheduler, *args: str, env: dict | None = None) -> None:
        self.log_path = scheduler.home.parent / f"serve-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*OCSCHED, "--json", "serve", "--port", "0", *args],
            env={**scheduler.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        lines = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.append(line)
            if line.rstrip() == "}":
                break
        assert lines, f"serve printed nothing: {self.log_path.read_text()}"
        self.notice = json.loads("".join(lines))
        self.url = self.notice["url"].replace("0.0.0.0", "127.0.0.1")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=15)
        finally:
            self._log.close()


@pytest.fixture
def serve(scheduler):
    """Start servers with `serve(*args)`; all are stopped when the test ends."""
    started: list[Served] = []

    def start(*args: str, env: dict | None = None) -> Served:
        served = Served(scheduler, *args, env=env)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def call(
    url: str,
    method: str = "GET",
    headers: dict | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            status, found, data = answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        status, found, data = error.code, dict(error.headers), error.read()
    is_json = found.get("Content-Type", "").startswith("application/json")
    return status, found, json.loads(data) if is_json else data


def get(served: Served, path: str, **headers: str) -> Any:
    status, _, body = call(served.url + path, headers=headers)
    assert status == 200, (path, status, body)
    return body


def seeded_day(scheduler: Scheduler) -> dict[str, str]:
    """A parent job whose run chained to a child that waits for an approval, a message, an
    agent, a task group and an alias."""
    day = Day(scheduler)
    from ocsched.commands.jobs import add_job

    day.at("08:00")
    parent = add_job(day.ctx, shell_job(name="parent", schedule_cron="0 9 * * *"))
    chained = {"parent_id": parent["id"], "trigger_on": "success", "approval_required": True}
    child = add_job(day.ctx, shell_job(name="child", schedule_cron=None) | chained)
    day.at("09:00")
    run = day.fire_slot(parent["id"])
    day.at("09:05")
    day.finish(run, "ok", "all good")
    day.at("09:06")
    assert day.fire_pending(child["id"]) is None  # held for an approval
    day.ctx.close()
    scheduler.ok("alias", "add", "ops", "telegram", "-100123", "the ops chat")
    scheduler.ok("agents", "register", "ops", "Ops Bot")
    sent = scheduler.ok("--json", "msg", "send", "ops", "main", "hello there").json
    group = scheduler.ok(
        "--json", "tasks", "create", '{"name":"release","expectedAgents":["writer"]}'
    ).json
    return {
        "parent": parent["id"],
        "child": child["id"],
        "run": run.id,
        "message": sent["message"]["id"],
        "group": group["group"]["id"],
    }


def cli(scheduler: Scheduler, *args: str) -> Any:
    return scheduler.ok("--json", *args).json


def test_every_endpoint_answers_what_the_cli_prints(scheduler, serve):
    ids = seeded_day(scheduler)
    served = serve()
    job, run = ids["parent"], ids["run"]
    same = {
        "/jobs?limit=1000": ("jobs", "list"),
        "/jobs?type=standard": ("jobs", "list", "--type", "standard"),
        "/jobs/tree": ("jobs", "tree"),
        f"/jobs/{job[:8]}": ("jobs", "get", job),
        f"/jobs/{job}/runs?limit=20": ("runs", "list", job),
        f"/runs/{run[:8]}": ("runs", "get", run),
        f"/runs/{run}/output": ("runs", "output", run),
        f"/runs/{run}/output?kind=stderr": ("runs", "output", run, "stderr"),
        "/runs/running": ("runs", "running"),
        "/runs/stale": ("runs", "stale"),
        "/approvals": ("approvals", "list"),
        "/deliveries": ("deliveries", "list"),
        "/aliases": ("alias", "list"),
        "/dispatches": ("dispatch", "list"),
        "/messages?agent=main": ("msg", "inbox", "main"),
        "/messages?agent=ops&box=outbox": ("msg", "outbox", "ops"),
        f"/messages/{ids['message']}/thread": ("msg", "thread", ids["message"]),
        "/agents": ("agents", "list"),
        "/agents/ops": ("agents", "get", "ops"),
        "/tasks": ("tasks", "list"),
        "/tasks/history": ("tasks", "history"),
        "/events?limit=20": ("events", "tail"),
        f"/history/{job}": ("events", "show", job),
        "/projections": ("projections", "status"),
    }
    for path, command in same.items():
        assert get(served, "/api/v1" + path) == cli(scheduler, *command), path
    status = get(served, "/api/v1/status")
    assert status == cli(scheduler, "status")
    task = get(served, f"/api/v1/tasks/{ids['group']}")
    expected = cli(scheduler, "tasks", "status", ids["group"])
    assert {k: v for k, v in task.items() if k not in ("elapsed", "remaining_timeout")} == {
        k: v for k, v in expected.items() if k not in ("elapsed", "remaining_timeout")
    }
    message = get(served, f"/api/v1/messages/{ids['message']}")
    assert message["body"] == "hello there" and message["to_agent"] == "main"
    runs = get(served, "/api/v1/runs?status=ok")
    assert [r["id"] for r in runs] == [run] and runs[0]["job_name"] == "parent"
    assert get(served, "/api/v1/runs") == cli(scheduler, "runs", "running")
    (held,) = get(served, "/api/v1/dispatch-queue")
    assert (held["job_id"], held["dispatch_kind"], held["status"]) == (
        ids["child"],
        "chain",
        "awaiting_approval",
    )
    assert held["job_name"] == "child"
    index = get(served, "/api/v1")
    # every route the server has is described, and was asked above
    document = get(served, "/api/v1/openapi.json")
    from openapi_spec_validator import validate

    validate(document)  # a valid OpenAPI 3.1 document
    described = set(document["paths"])
    assert (
        set(index["paths"])
        | {
            "/api/v1/jobs/{id}/approve",
            "/api/v1/jobs/{id}/reject",
        }
        == described
    )
    asked = {"/api/v1" + p.split("?")[0] for p in same} | {
        "/api/v1/status",
        f"/api/v1/tasks/{ids['group']}",
        f"/api/v1/messages/{ids['message']}",
        "/api/v1/runs",
        "/api/v1/dispatch-queue",
    }
    templates = {re.sub(r"{\w+}", "[^/]+", p): p for p in described}
    covered = {t for pattern, t in templates.items() for a in asked if re.fullmatch(pattern, a)}
    gets = {p for p, ops in document["paths"].items() if "get" in ops}
    assert gets - covered == {"/api/v1/events/stream", "/api/v1/dispatches/{label}"}
    for path, expected_status in (
        ("/api/v1/jobs/nope-nope", 404),
        ("/api/v1/nothing-here", 404),  # no such route: the envelope too, not aiohttp's text
        ("/api/v1/jobs/nope-nope/approve", 405),  # a decision is a POST
        ("/api/v1/runs/zzzzzzzz", 404),
        ("/api/v1/dispatches/nobody", 404),
        ("/api/v1/jobs?limit=0", 400),
        ("/api/v1/jobs?limit=x", 400),
        ("/api/v1/jobs?cursor=%%%", 400),
        ("/api/v1/messages", 400),
        ("/api/v1/runs/" + run + "/output?kind=other", 400),
        ("/api/v1/events?since=yesterday", 400),
        ("/api/v1/events?after=-1", 400),
        ("/api/v1/events?after=%C2%B2", 400),  # a superscript two is a digit, not a number
        ("/api/v1/jobs?limit=" + "9" * 5000, 400),
        ("/api/v1/jobs?cursor=eyJrIjogW1sxXSwgMl19", 400),  # {"k": [[1], 2]}
        ("/api/v1/deliveries?cursor=eyJvIjogMWUrMzB9", 400),  # {"o": 1e+30}
        ("/api/v1/deliveries?cursor=eyJvIjogMTAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMH0", 400),
    ):
        status, _, body = call(served.url + path)
        assert (status, body["ok"]) == (expected_status, False), path
        assert "\n" not in body["error"]


def test_json_nested_too_deeply_is_a_400(scheduler, serve):
    job = scheduler.add(shell_job())["id"]
    served = serve()
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    status, _, body = call(f"{served.url}/api/v1/jobs?cursor={deep}")
    assert (status, body["ok"]) == (400, False)
    headers = {"Authorization": f"Bearer {served.notice['token']}"}
    headers["Content-Type"] = "application/json"
    approve = f"{served.url}/api/v1/jobs/{job}/approve"
    status, _, body = call(approve, "POST", headers=headers, body=b"[" * 100_000)
    assert (status, body) == (400, {"ok": False, "error": "the body is not JSON"})


def test_lists_page_with_a_cursor_and_events_by_position(scheduler, serve):
    for index in range(25):
        scheduler.add(shell_job(name=f"job {index % 7} {index:02d}"))
    served = serve()
    names, url, pages = [], served.url + "/api/v1/jobs?limit=10", 0
    while url:
        status, headers, body = call(url)
        assert status == 200 and len(body) <= 10
        names += [job["name"] for job in body]
        pages += 1
        link = headers.get("Link")
        url = served.url + re.match(r"<([^>]+)>", link).group(1) if link else ""
    assert pages == 3
    assert names == [job["name"] for job in cli(scheduler, "jobs", "list")]

    forward, after = [], 0
    while True:
        status, headers, body = call(f"{served.url}/api/v1/events?after={after}&limit=7")
        forward += [event["position"] for event in body]
        if "Link" not in headers:
            break
        after = int(headers["X-Next-Cursor"])
    assert forward == list(range(1, 26))
    newest = get(served, "/api/v1/events?limit=7")
    assert [event["position"] for event in newest] == list(range(19, 26))
    status, headers, older = call(f"{served.url}/api/v1/events?before=19&limit=7")
    assert [event["position"] for event in older] == list(range(12, 19))
    assert "before=12" in headers["Link"]
    picked = get(served, "/api/v1/events?limit=100&aggregate=" + newest[-1]["aggregate_id"])
    assert [event["position"] for event in picked] == [25]


def test_an_unchanged_answer_is_a_304_until_the_cli_changes_something(scheduler, serve):
    scheduler.add(shell_job(name="one"))
    served = serve()
    status, headers, _ = call(served.url + "/api/v1/jobs")
    tag = headers["ETag"]
    status, again, body = call(served.url + "/api/v1/jobs", headers={"If-None-Match": tag})
    assert (status, body, again["ETag"]) == (304, b"", tag)
    scheduler.add(shell_job(name="two"))
    status, headers, body = call(served.url + "/api/v1/jobs", headers={"If-None-Match": tag})
    assert status == 200 and headers["ETag"] != tag and len(body) == 2
    assert "ETag" not in call(served.url + "/api/v1/status")[1]  # depends on the time too
    assert "ETag" not in call(served.url + "/api/v1/events?since=2h")[1]  # (2 h before now)
    assert call(served.url + "/api/v1/events")[1]["ETag"].startswith('"l')


def test_a_non_loopback_bind_answers_401_to_every_request_without_the_token(scheduler, serve):
    scheduler.add(shell_job(name="one"))
    served = serve("--host", "0.0.0.0")
    token = served.notice["token"]  # made now, and shown this once
    token_file = Path(served.notice["token_file"])
    assert token_file.read_text().strip() == token
    assert token_file.stat().st_mode & 0o777 == 0o600
    for path in ("/api/v1/jobs", "/metrics", "/api/v1/events/stream", "/api/v1/openapi.json", "/"):
        status, headers, _ = call(served.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert call(served.url + path, headers={"Authorization": "Bearer wrong"})[0] == 401
    bearer = {"Authorization": f"Bearer {token}"}
    status, _, body = call(served.url + "/api/v1/jobs", headers=bearer)
    assert status == 200 and body[0]["name"] == "one"
    assert "Access-Control-Allow-Origin" not in call(served.url + "/api/v1/jobs")[1]
    served.stop()
    again = serve("--host", "0.0.0.0")
    assert "token" not in again.notice and again.notice["token_file"] == str(token_file)
    with_env = serve("--host", "0.0.0.0", env={"OCSCHED_API_TOKEN": "s3cret"})
    assert with_env.notice["token_file"] is None
    status, _, _ = call(with_env.url + "/api/v1/jobs", headers={"Authorization": "Bearer s3cret"})
    assert status == 200
    closed = serve("--require-token")  # loopback, reads closed too
    assert closed.notice["open_reads"] is False
    assert call(closed.url + "/api/v1/jobs")[0] == 401
    assert call(closed.url + "/api/v1/jobs", headers=bearer)[0] == 200
    status, _, form = call(closed.url + "/login?next=/api/v1/jobs")  # no token: the form
    assert status == 200 and b'<form method="post" action="/login">' in form
    assert b'value="/api/v1/jobs"' in form
    assert call(closed.url + "/login?token=wrong")[0] == 401


def test_loopback_reads_are_open_and_a_decision_needs_the_token_and_the_csrf_guard(
    scheduler, serve
):
    ids = seeded_day(scheduler)
    served = serve()
    token = served.notice["token"]
    approve = f"{served.url}/api/v1/jobs/{ids['child'][:8]}/approve"
    assert call(approve, "POST")[0] == 401
    assert call(served.url + "/api/v1/jobs", headers={"Host": "evil.example:80"})[0] == 403
    # a browser: the cookie /login sets, then a form post needs the CSRF field or header
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(f"{served.url}/login?token={token}&next=/api/v1/status") as answer:
        assert answer.status == 200 and json.loads(answer.read())["jobs_total"] == 2
    form = b"reason=later"
    request = urllib.request.Request(approve, data=form, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request)
    assert refused.value.code == 403
    request = urllib.request.Request(
        approve, data=form, method="POST", headers={"Origin": "http://evil.example"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        opener.open(request)
    assert refused.value.code == 403
    assert cli(scheduler, "approvals", "list")[0]["job_id"] == ids["child"]
    # a reason no UTF-8 store can hold (a lone surrogate's escape): refused, nothing decided
    reject = approve.replace("/approve", "/reject")
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    status, _, body = call(reject, "POST", headers=bearer, body=rb'{"reason": "\ud800"}')
    assert (status, body["ok"]) == (400, False) and "lone surrogate" in body["error"]
    assert cli(scheduler, "approvals", "list")[0]["job_id"] == ids["child"]
    request = urllib.request.Request(
        approve, data=b"", method="POST", headers={"X-Requested-By": "test"}
    )
    with opener.open(request) as answer:
        decided = json.loads(answer.read())
    assert decided["ok"] is True and decided["status"] == "approved"
    assert decided["job_id"] == ids["child"]
    assert cli(scheduler, "approvals", "list") == []
    history = cli(scheduler, "events", "show", decided["approval_id"])
    (approved,) = [e for e in history if e["type"] == "Approval.Approved"]
    assert (approved["actor"], approved["origin"]) == ("tester", "api")
    # with the token itself (no cookie): no CSRF header needed; nothing left to decide: 409
    status, _, body = call(reject, "POST", headers=bearer, body=b'{"reason": "too late"}')
    assert (status, body["ok"]) == (409, False)
    assert body["error"].startswith("No pending approval for job")


def test_the_stream_receives_a_change_made_by_the_cli_within_a_second(scheduler, serve):
    scheduler.add(shell_job(name="before"))
    served = serve()
    connection = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
    try:
        connection.request("GET", "/api/v1/events/stream?type=Job.Created")
        answer = connection.getresponse()
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/event-stream"
        assert connection.sock is not None
        connection.sock.settimeout(5)
        assert answer.readline() == b"retry: 1000\n"
        answer.readline()
        added = scheduler.add(shell_job(name="after"))
        done = time.monotonic()
        lines = [answer.readline() for _ in range(3)]
        waited = time.monotonic() - done
        assert lines[0].startswith(b"id: ") and lines[2] == b"\n"
        record = json.loads(lines[1].removeprefix(b"data: "))
        assert (record["type"], record["aggregate_id"]) == ("Job.Created", added["id"])
        assert int(lines[0][4:]) == record["position"]
        assert waited < 1.0, waited
        assert record == cli(scheduler, "events", "show", added["id"])[0] | {
            "position": record["position"]
        }
    finally:
        connection.close()
    # resuming from a position sends what came after it
    connection = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
    try:
        connection.request("GET", "/api/v1/events/stream", headers={"Last-Event-ID": "0"})
        answer = connection.getresponse()
        assert connection.sock is not None
        connection.sock.settimeout(5)
        answer.readline(), answer.readline()
        assert answer.readline() == b"id: 1\n"
    finally:
        connection.close()


def test_metrics_parse_and_match_the_read_models(scheduler, serve):
    from prometheus_client.parser import text_string_to_metric_families

    ids = seeded_day(scheduler)
    served = serve()
    status, headers, body = call(served.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}

    def value(name: str, **labels: str) -> float:
        return next(
            s.value
            for f in families.values()
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    runs = cli(scheduler, "runs", "list", ids["parent"])
    assert value("ocsched_runs", job_id=ids["parent"], status="ok") == len(runs) == 1
    assert value("ocsched_run_duration_seconds_count") == 1
    assert value("ocsched_run_start_lag_seconds_count") == 1
    assert value("ocsched_run_start_lag_seconds_bucket", le="0.5") == 1  # started at its slot
    assert value("ocsched_active_runs", status="running") == len(cli(scheduler, "runs", "running"))
    status_now = cli(scheduler, "status")
    assert value("ocsched_pending_approvals") == len(cli(scheduler, "approvals", "list")) == 1
    assert value("ocsched_approval_blocked_dispatches") == 1
    assert value("ocsched_pending_dispatches") == status_now["budgets"]["pending_dispatches"]
    assert value("ocsched_jobs", enabled="1") == status_now["jobs_enabled"] == 2
    assert value("ocsched_delivery_failures") == 0
    assert value("ocsched_gateway_call_errors", call="agent") == 0
    head = cli(scheduler, "events", "tail", "-n", "1")[0]["position"]
    assert value("ocsched_events_appended_total") == head
    for projection in cli(scheduler, "projections", "status"):
        assert value("ocsched_projection_lag_events", projection=projection["name"]) == 0


def test_the_daemon_serves_the_api_beside_its_work(scheduler, daemons):
    job = scheduler.add(shell_job(name="soon", schedule_cron="* * * * *"))
    daemon = daemons.start("--serve", "127.0.0.1:0")
    url = wait_until(lambda: re.search(r"'url': '([^']+)'", daemon.log), what="serving")[1]
    scheduler.ok("jobs", "run", job["id"])
    runs = wait_until(
        lambda: (
            (r := call(f"{url}/api/v1/jobs/{job['id']}/runs")[2]) and r[0]["status"] == "ok" and r
        ),
        what="the run, through the API",
    )
    assert runs == cli(scheduler, "runs", "list", job["id"])
    status, _, body = call(url + "/metrics")
    assert status == 200 and b'ocsched_runs{job_id="' + job["id"].encode() in body


def test_bad_arguments_are_one_line(scheduler):
    for args, message in (
        (("serve", "--port", "x"), "--port must be a port number"),
        (("serve", "--port", "70000"), "--port must be a port number"),
        (("daemon", "--serve", "127.0.0.1:x"), "--port must be a port number"),
    ):
        result = scheduler.run(*args)
        assert result.returncode == 1 and result.stderr.startswith(message), result.stderr
        assert result.stderr.count("\n") == 1


def test_an_address_in_use_is_one_line(scheduler, serve):
    served = serve()
    port = served.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [*OCSCHED, "serve", "--port", port],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Cannot listen on 127.0.0.1:{port}:"), result.stderr
    assert "Traceback" not in result.stderr
    daemon = subprocess.run(
        [*OCSCHED, "daemon", "--serve", f"127.0.0.1:{port}"],
        env=scheduler.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert daemon.returncode == 1 and "Traceback" not in daemon.stderr
    assert daemon.stderr.splitlines()[-1].startswith(f"Cannot listen on 127.0.0.1:{port}:")


@pytest.mark.postgres
def test_a_server_on_another_host_of_a_postgresql_log_follows_it(tmp_path, database_url):  # noqa: F811
    here, there = on_host(tmp_path, "here", database_url), on_host(tmp_path, "there", database_url)
    served = Served(there)
    try:
        stream = http.client.HTTPConnection("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
        stream.request("GET", "/api/v1/events/stream")
        answer = stream.getresponse()
        assert stream.sock is not None
        stream.sock.settimeout(5)
        answer.readline(), answer.readline()
        added = here.add(shell_job(name="from elsewhere"))
        assert answer.readline().startswith(b"id: ")
        assert json.loads(answer.readline()[6:])["aggregate_id"] == added["id"]
        stream.close()
        listed = wait_until(lambda: get(served, "/api/v1/jobs"), 5, "the job, on the other host")
        assert [job["id"] for job in listed] == [added["id"]]
    finally:
        served.stop()


def test_answers_missed_together_are_made_once_and_the_cache_keeps_to_its_budget():
    import threading

    from ocsched.adapters.http.cache import AnswerCache, Encoded

    cache, made, gate = AnswerCache(budget=4000), [], threading.Event()

    def make() -> Encoded:
        made.append(1)
        gate.wait(5)
        return Encoded(b"x" * 900)

    answers: list[Encoded] = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.answer(("/a", "m1"), make)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: made, 5, "the first maker")
    time.sleep(0.1)  # the others are waiting for it by now
    gate.set()
    for thread in threads:
        thread.join(5)
    assert len(made) == 1 and len(answers) == 8 and {a.body for a in answers} == {b"x" * 900}
    for tag in range(2, 7):  # 900 bytes each: the oldest go once past 4,000
        cache.answer(("/a", f"m{tag}"), lambda: Encoded(b"y" * 900))
    assert cache.get(("/a", "m1")) is None and cache.get(("/a", "m6")) is not None
    assert cache.answer(("/big", "m1"), lambda: Encoded(b"z" * 2000)).body  # too big to keep
    assert cache.get(("/big", "m1")) is None
