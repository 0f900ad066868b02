"""The dashboard in headless Chromium: `ocsched serve` and a daemon as real processes on
127.0.0.1, Debian's `chromium` driven by Playwright (its own browser builds are never
downloaded: `executable_path=/usr/bin/chromium`). A person logs in, watches a run finish on
the jobs page without reloading, opens the run, approves the chained child from the
approvals page with the button and sees the child run appear on the parent run's page.
Screenshots of the main pages go to the test's temporary folder (and, when
`DASHBOARD_SCREENSHOTS` names a folder, there too: docs/screenshots was made so).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocsched.adapters.http.dashboard import JOBS_PAGE

from .conftest import OCSCHED, Scheduler, shell_job, wait_until

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "dashboard-test-token"
ACTOR = "alice"


def _playwright():
    return pytest.importorskip(
        "playwright.sync_api",
        reason="playwright is not installed (pip install -e '.[test]')",
    )


@contextlib.contextmanager
def serving(scheduler: Scheduler, *args: str) -> Iterator[str]:
    """`ocsched serve --port 0 ARGS` with a known token and actor; its URL (reached through
    127.0.0.1 whatever it binds). Stopped after."""
    log_path = scheduler.home.parent / f"serve-{time.monotonic_ns()}.log"
    scheduler.home.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*OCSCHED, "--json", "serve", "--port", "0", *args],
            env={**scheduler.env, "OCSCHED_API_TOKEN": TOKEN, "OCSCHED_ACTOR": ACTOR},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if line.rstrip() == "}":
                    break
            assert lines, f"serve printed nothing: {log_path.read_text()}"
            yield json.loads("".join(lines))["url"].replace("0.0.0.0", "127.0.0.1")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@pytest.fixture
def served(scheduler: Scheduler) -> Iterator[str]:
    with serving(scheduler) as url:
        yield url


@pytest.fixture
def browser():
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is missing: apt-get install -y chromium")
    sync_api = _playwright()
    with sync_api.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            launched.close()


class Pages:
    """Screenshots of the pages, named, into the test's folder (and DASHBOARD_SCREENSHOTS)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.copy_to = os.environ.get("DASHBOARD_SCREENSHOTS")

    def shoot(self, page, name: str, full_page: bool = True) -> None:
        page.wait_for_timeout(150)  # the script's local times
        target = self.folder / f"{name}.png"
        page.screenshot(path=str(target), full_page=full_page)
        if self.copy_to:
            shutil.copy(target, Path(self.copy_to) / target.name)


def held_child(parent_id: str, **fields: object) -> dict:
    """A shell job chained on its parent's success whose runs wait for an approval."""
    chained = {"schedule_cron": None, "parent_id": parent_id, "trigger_on": "success"}
    return shell_job(**{"name": "child", **chained, "approval_required": True, **fields})


def _job_row(page, name: str):
    return page.locator("tr", has=page.get_by_role("link", name=name, exact=True))


def test_a_person_approves_a_chained_run_and_watches_it_happen(
    scheduler, served, daemons, browser, tmp_path
):
    sync_api = _playwright()
    expect = sync_api.expect
    parent = scheduler.add(
        shell_job(name="nightly-backup", payload_message='echo "<b>backed up</b> & done"')
    )
    child = scheduler.add(
        held_child(parent["id"], name="publish <report>", payload_message="echo published")
    )
    flaky = scheduler.add(shell_job(name="flaky-check", schedule_cron="*/5 * * * *"))
    daemons.start()
    shots = Pages(tmp_path / "screenshots")
    context = browser.new_context(viewport={"width": 1100, "height": 760})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: message.type == "error" and problems.append(message.text),
    )

    # Reads are open on loopback; deciding needs the token: log in through the form.
    page.goto(f"{served}/approvals")
    expect(page.get_by_role("link", name="Log in", exact=True)).to_be_visible()
    page.goto(f"{served}/login?next=/")
    page.fill("input[name=token]", TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator(".account")).to_have_text("signed in")
    expect(page.locator("#live.on")).to_be_attached()  # following the event stream
    row = _job_row(page, "nightly-backup")
    expect(row.locator(".badge")).to_have_count(0)  # never ran
    # A user text is shown as text, never as markup.
    expect(_job_row(page, "publish <report>")).to_be_visible()

    # A change made by the CLI shows without a reload, within a second or so.
    started = time.monotonic()
    scheduler.ok("jobs", "disable", flaky["id"])
    expect(_job_row(page, "flaky-check").locator("td[data-label=On]")).to_have_text(
        "no", timeout=5000
    )
    shown_after = time.monotonic() - started
    assert shown_after < 2.5, f"the jobs page showed the change after {shown_after:.2f} s"

    scheduler.ok("jobs", "run", parent["id"])
    expect(row.locator(".badge")).to_have_text("ok", timeout=15000)
    expect(page.locator("nav .count")).to_have_text("1", timeout=5000)  # one waiting
    shots.shoot(page, "jobs")

    # The job, its runs' timeline, and its run.
    row.get_by_role("link", name="nightly-backup").click()
    expect(page.locator("h1")).to_have_text("nightly-backup")
    expect(page.locator(".timeline rect.bar.ok")).to_have_count(1)
    expect(page.locator(".strip a.tick.ok")).to_have_count(1)
    shots.shoot(page, "job")
    page.locator("td[data-label=Run] a").first.click()
    expect(page.locator("h1")).to_contain_text("of nightly-backup")
    expect(page.locator("pre.output").first).to_have_text("<b>backed up</b> & done")
    chain = page.locator("ol.chain").first
    expect(chain).to_contain_text("asked for by tester (jobs run)")
    expect(chain).to_contain_text("finished ok")
    expect(chain).to_contain_text(
        f"of job publish <report> ({child['id'][:8]}..): awaiting_approval"
    )
    expect(page.locator("section", has_text="Deliveries")).to_contain_text("No deliveries.")
    run_url = page.url
    shots.shoot(page, "run")

    # A second tab keeps the parent run open while the first one approves.
    watching = context.new_page()
    watching.goto(run_url)
    expect(watching.locator("#live.on")).to_be_attached()

    page.get_by_role("link", name="Approvals").click()
    pending = _job_row(page, "publish <report>")
    expect(pending).to_have_count(1)
    shots.shoot(page, "approvals")
    pending.get_by_role("button", name="Approve").click()
    expect(page.locator("#flash")).to_have_text("publish <report>: approved")
    expect(page.get_by_text("No approvals are waiting.")).to_be_visible(timeout=5000)
    expect(page.locator("nav .count")).to_have_count(0)

    # The released child runs; the parent's page, never reloaded, shows its run.
    led_to = watching.locator("ol.chain li", has_text="led to:")
    expect(led_to).to_contain_text(re_run_ok(), timeout=15000)
    child_run = led_to.get_by_role("link").last
    child_run.click()
    expect(watching.locator("h1")).to_contain_text("of publish <report>")
    expect(watching.locator("dl.fields .badge")).to_have_text("ok")
    chain = watching.locator("ol.chain").first
    expect(chain).to_contain_text(f"approved by {ACTOR}")
    expect(chain).to_contain_text(f"{ACTOR} via api")
    expect(watching.locator("pre.output").first).to_have_text("published")
    shots.shoot(watching, "child-run")

    # The log, filtered: the decision is an event of the authenticated actor.
    page.get_by_role("link", name="Events").click()
    page.fill("input[name=type]", "Approval")
    page.get_by_role("button", name="Filter").click()
    approved = page.locator("tr", has_text="Approval.Approved")
    expect(approved).to_have_count(1)
    expect(approved.locator("td[data-label=Who]")).to_have_text(f"{ACTOR} via api")
    expect(page.locator("tr", has_text="Approval.Requested")).to_have_count(1)
    expect(page.locator("tbody tr")).to_have_count(2)
    shots.shoot(page, "events")
    page.get_by_role("link", name="Dispatches").click()
    expect(page.locator("section", has_text="dispatch queue")).to_contain_text("chain")
    shots.shoot(page, "dispatches")

    # On a phone: the same pages, rows as cards.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    small = phone.new_page()
    small.goto(f"{served}/")
    expect(small.locator("td.main", has_text="nightly-backup")).to_be_visible()
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    shots.shoot(small, "phone-jobs")
    small.goto(run_url)
    assert small.evaluate("document.documentElement.scrollWidth") <= 390
    shots.shoot(small, "phone-run")
    phone.close()
    context.close()
    assert problems == []
    taken = sorted(p.name for p in (tmp_path / "screenshots").iterdir())
    assert "approvals.png" in taken and "run.png" in taken and "jobs.png" in taken


def re_run_ok():
    return re.compile(r"run [0-9a-f-]{36} \(ok\)")


def fetch(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def test_user_text_is_escaped_and_only_this_servers_scripts_may_run(scheduler, served):
    scheduler.add(shell_job(name="<script>alert(1)</script>", payload_message="echo '\"><img>'"))
    status, body, headers = fetch(f"{served}/")
    assert status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert" not in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    job = re.search(r'href="/jobs/([0-9a-f-]{36})"', body)
    assert job is not None
    status, body, _ = fetch(f"{served}/jobs/{job.group(1)[:8]}")
    assert status == 200
    assert "echo &#x27;&quot;&gt;&lt;img&gt;&#x27;" in body


def test_an_unknown_run_is_a_404_page(scheduler, served):
    status, body, _ = fetch(f"{served}/runs/00000000-0000-0000-0000-000000000000")
    assert status == 404
    assert "Run not found" in body and "<nav>" in body


def test_a_bad_event_filter_is_shown_above_the_form(scheduler, served):
    status, body, _ = fetch(f"{served}/events?since=yesterday&actor=%3Cb%3E")
    assert status == 200
    assert '<p class="error">since needs an ISO 8601 time' in body
    assert 'name="actor" value="&lt;b&gt;"' in body


def test_the_jobs_page_pages_by_name(scheduler, served):
    for number in range(JOBS_PAGE + 3):
        scheduler.add(shell_job(name=f"job-{number:03d}"))
    status, first, _ = fetch(f"{served}/")
    assert status == 200
    assert first.count('<td data-label="Name"') == JOBS_PAGE
    following = re.search(r'href="(/\?after_name=[^"]+)">Next page', first)
    assert following is not None
    status, second, _ = fetch(served + html.unescape(following.group(1)))
    names = re.findall(r'<td data-label="Name" class="main"><span><a [^>]*>([^<]+)</a>', second)
    assert names == ["job-200", "job-201", "job-202"]


def held_for_approval(scheduler: Scheduler) -> dict:
    """A parent job's run ended ok and chained to a child held for an approval (recorded
    in process, as the daemon would)."""
    from ocsched.commands.jobs import add_job

    from .test_as_of import Day

    day = Day(scheduler)
    day.at("08:00")
    parent = add_job(day.ctx, shell_job(name="parent", schedule_cron="0 9 * * *"))
    child = add_job(day.ctx, held_child(parent["id"]))
    day.at("09:00")
    run = day.fire_slot(parent["id"])
    day.finish(run, "ok", "all good")
    day.at("09:01")
    assert day.fire_pending(child["id"]) is None  # held
    day.ctx.close()
    return child


def test_a_decision_without_the_script_posts_the_form_and_comes_back(scheduler, served):
    held_for_approval(scheduler)
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    browser.open(f"{served}/login?token={TOKEN}&next=/", timeout=15).read()

    def form_shown() -> str | None:
        page = browser.open(f"{served}/approvals", timeout=15).read().decode()
        return page if 'data-write="rejected"' in page else None

    page = wait_until(form_shown, what="the approval's buttons")
    form = re.search(
        r'action="(/api/v1/jobs/[^"]+/reject)" data-write="rejected">(.*?)</form>', page
    )
    assert form is not None
    fields = dict(re.findall(r'name="(csrf_token|next)" value="([^"]*)"', form.group(2)))
    assert fields["next"] == "/approvals"
    body = urllib.parse.urlencode({**fields, "reason": "not <today>"}).encode()
    with browser.open(served + html.unescape(form.group(1)), data=body, timeout=15) as answer:
        assert answer.geturl() == f"{served}/approvals"  # the 303 back to the page
        assert "No approvals are waiting." in answer.read().decode()
    status, events, _ = fetch(f"{served}/api/v1/events?type=Approval.Rejected")
    assert status == 200
    [rejected] = json.loads(events)
    assert (rejected["actor"], rejected["origin"]) == (ACTOR, "api")
    assert rejected["fields"]["reason"] == "not <today>"


def test_off_loopback_a_page_asks_a_browser_to_log_in_first(scheduler):
    with serving(scheduler, "--host", "0.0.0.0") as url:
        status, body, _ = fetch(f"{url}/jobs/x?y=1")  # urllib accepts anything: JSON
        assert status == 401 and json.loads(body)["ok"] is False
        request = urllib.request.Request(f"{url}/events?type=Run", headers={"Accept": "text/html"})
        with urllib.request.urlopen(request, timeout=15) as answer:  # follows the 303
            went = urllib.parse.urlsplit(answer.geturl())
            assert went.path == "/login"
            assert urllib.parse.parse_qs(went.query) == {"next": ["/events?type=Run"]}
            assert 'name="token"' in answer.read().decode()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        form = urllib.parse.urlencode({"token": TOKEN, "next": "/events?type=Run"}).encode()
        with browser.open(f"{url}/login", data=form, timeout=15) as answer:
            assert answer.geturl() == f"{url}/events?type=Run"
            assert "<h1>Events</h1>" in answer.read().decode()


def test_templates_escape_every_value_and_quote_every_path_piece():
    from ocsched.adapters.http.templates import Markup, html, link, path, with_id_links

    run = "0c9f2e41-1b2c-4d5e-8f90-a1b2c3d4e5f6"
    assert html("<p>$x</p>", x="<b>&'\"") == "<p>&lt;b&gt;&amp;&#x27;&quot;</p>"
    assert html("<p>$x</p>", x=Markup("<b>built</b>")) == "<p><b>built</b></p>"
    assert path("jobs", "a/b?c", after="x y", empty="") == "/jobs/a%2Fb%3Fc?after=x+y"
    assert link(path("runs", run), "<t>", aria_current="page") == (
        f'<a href="/runs/{run}" aria-current="page">&lt;t&gt;</a>'
    )
    assert with_id_links(f"run {run} <ok>") == (f'run <a href="/id/{run}">{run}</a> &lt;ok&gt;')
