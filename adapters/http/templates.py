"""The dashboard's HTML: escaping, a few building blocks, and the page around them.

Nothing reaches a page unescaped: `escape` turns any value into `Markup` (HTML) with
`html.escape`, and every builder here escapes what it is given unless it is already
`Markup`. `html(template, **values)` is `string.Template` with each value escaped, so a
template's own text is the only markup that is written by hand. Links are built from this
server's paths with each piece quoted (`path`), never from a value as given. The page has
no inline script or style (the Content-Security-Policy forbids them): behaviour and looks
are in `static/dashboard.js` and `static/dashboard.css`.
"""

from __future__ import annotations

import html as html_module
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from string import Template
from urllib.parse import quote, urlencode

STATIC = "/static"
VERSION = "1"
"""Part of the static files' URLs: changing the files changes it, so a browser fetches them
again instead of using what it cached."""


class Markup(str):
    """Text that is HTML already (built here from escaped parts): inserted as it is."""

    __slots__ = ()


def escape(value: object) -> Markup:
    if isinstance(value, Markup):
        return value
    if value is None:
        return Markup("")
    return Markup(html_module.escape(str(value), quote=True))


def html(template: str, **values: object) -> Markup:
    """`template` with `$name`s replaced by the values, each escaped (unless `Markup`)."""
    return Markup(Template(template).substitute({k: escape(v) for k, v in values.items()}))


def join(parts: Iterable[object], separator: str = "") -> Markup:
    return Markup(escape(separator).join(escape(part) for part in parts))


def path(*pieces: str, **query: str | int | None) -> str:
    """A path of this server: `path("runs", run_id)` is `/runs/<run_id, quoted>`; query
    values that are None or empty are left out."""
    text = "/" + "/".join(quote(piece, safe="") for piece in pieces)
    kept = [(name, str(value)) for name, value in query.items() if value not in (None, "")]
    return text + ("?" + urlencode(kept) if kept else "")


def link(href: str, text: object, **attributes: str) -> Markup:
    """`<a>`; attributes by keyword: `class_` is class, `aria_current` is aria-current."""
    extra = "".join(
        f' {name.rstrip("_").replace("_", "-")}="{escape(v)}"' for name, v in attributes.items()
    )
    return Markup(f'<a href="{escape(href)}"{extra}>{escape(text)}</a>')


def moment(ts: str | None, empty: str = "-") -> Markup:
    """A stored time (UTC, `2026-12-05 08:38:28`) as a `<time>` the script shows in the
    reader's zone, with how long ago or ahead; `empty` when there is none."""
    if not ts:
        return escape(empty)
    machine = ts.replace(" ", "T")
    if not re.search(r"(Z|[+-]\d\d:?\d\d)$", machine):
        machine += "Z"
    return html('<time datetime="$machine">$ts UTC</time>', machine=machine, ts=ts)


STATUS_KINDS = {
    "ok": "good",
    "success": "good",
    "done": "good",
    "delivered": "good",
    "approved": "good",
    "error": "bad",
    "failed": "bad",
    "timeout": "bad",
    "crashed": "bad",
    "rejected": "bad",
    "interrupted": "bad",
    "running": "busy",
    "pending": "wait",
    "queued": "wait",
    "claimed": "busy",
    "awaiting_approval": "wait",
    "held": "wait",
}


def badge(status: str | None) -> Markup:
    """A status as a coloured label (its kind: good, bad, busy, wait or plain)."""
    if not status:
        return escape("-")
    kind = STATUS_KINDS.get(status, "plain")
    return html('<span class="badge $kind">$status</span>', kind=kind, status=status)


UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def with_id_links(text: str) -> Markup:
    """`text` escaped, each id in it a link to its page (`/id/<id>` finds which)."""
    parts: list[object] = []
    start = 0
    for found in UUID.finditer(text):
        parts += [text[start : found.start()], link(path("id", found.group()), found.group())]
        start = found.end()
    parts.append(text[start:])
    return join(parts)


def short(value: str | None) -> str:
    """An id as tables show it: 8 characters."""
    return value[:8] if value else "-"


@dataclass(frozen=True)
class Column:
    title: str
    kind: str = ""
    """A class for the cells: `num` (right-aligned), `wide` (may wrap), `main` (the row's
    name, first on a phone)."""


def table(columns: Sequence[Column | str], rows: Iterable[Sequence[object]], empty: str) -> Markup:
    """A table whose cells carry their column's title (`data-label`), which a phone's
    stylesheet shows beside each value when the rows become cards."""
    heads = [c if isinstance(c, Column) else Column(c) for c in columns]
    body = [
        join(
            html(
                '<td data-label="$label" class="$kind"><span>$value</span></td>',
                label=c.title,
                kind=c.kind,
                value=v,
            )
            for c, v in zip(heads, row, strict=True)
        )
        for row in rows
    ]
    if not body:
        return html('<p class="empty">$empty</p>', empty=empty)
    head = join(html('<th class="$kind">$title</th>', kind=c.kind, title=c.title) for c in heads)
    rows_html = join(html("<tr>$cells</tr>", cells=cells) for cells in body)
    return html(
        '<table class="rows"><thead><tr>$head</tr></thead><tbody>$rows</tbody></table>',
        head=head,
        rows=rows_html,
    )


def fields(pairs: Iterable[tuple[str, object]]) -> Markup:
    """A definition list of (name, value) pairs; a None value is left out."""
    items = (
        html("<div><dt>$name</dt><dd>$value</dd></div>", name=name, value=value)
        for name, value in pairs
        if value is not None
    )
    return html('<dl class="fields">$items</dl>', items=join(items))


def section(title: str, body: object, *, note: object = None) -> Markup:
    side = html(' <small class="note">$note</small>', note=note) if note else ""
    return html("<section><h2>$title$side</h2>$body</section>", title=title, side=side, body=body)


def pre(text: str | None, empty: str = "(empty)") -> Markup:
    if not text:
        return html('<p class="empty">$empty</p>', empty=empty)
    return html('<pre class="output">$text</pre>', text=text)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the page's path (forms come back to it), whether the request
    carried the token (then write buttons show) and the CSRF field's value for forms."""

    here: str
    authenticated: bool
    csrf_token: str

    def login_link(self, text: str = "Log in to decide") -> Markup:
        return link(path("login", next=self.here), text, class_="button")


NAV = (
    ("jobs", "/", "Jobs"),
    ("approvals", "/approvals", "Approvals"),
    ("dispatches", "/dispatches", "Dispatches"),
    ("events", "/events", "Events"),
)


def page(
    title: str,
    body: Markup,
    *,
    current: str,
    viewer: Viewer,
    pending_approvals: int,
    position: int,
    head: int,
) -> str:
    """The whole document: header, navigation (the approvals waiting counted), `body`.
    `position` (what the read models reflect) and `head` (the log's last event) let the
    script follow the live stream from where this page was read."""
    items = []
    for name, href, text in NAV:
        count = (
            html(' <span class="count">$n</span>', n=pending_approvals)
            if name == "approvals" and pending_approvals
            else ""
        )
        here = ' aria-current="page"' if name == current else ""
        items.append(
            html(
                '<a href="$href"$here>$text$count</a>',
                href=href,
                here=Markup(here),
                text=text,
                count=count,
            )
        )
    account = (
        html('<span class="who">signed in</span>')
        if viewer.authenticated
        else link(path("login", next=viewer.here), "Log in")
    )
    return html(
        PAGE,
        title=title,
        static=STATIC,
        version=VERSION,
        nav=join(items),
        account=account,
        body=body,
        position=position,
        head=head,
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>$title · ocsched</title>
<link rel="stylesheet" href="$static/dashboard.css?v=$version">
<link rel="icon" href="$static/icon.svg?v=$version" type="image/svg+xml">
<script src="$static/dashboard.js?v=$version" defer></script>
</head>
<body data-position="$position" data-head="$head">
<header class="top">
<a class="brand" href="/">ocsched</a>
<nav>$nav</nav>
<span class="live" id="live" title="live updates">●</span>
<span class="account">$account</span>
</header>
<p class="flash" id="flash" role="status" aria-live="polite"></p>
<main id="main">
<h1>$title</h1>
$body
</main>
<footer><a href="/api/v1">JSON API</a> · <a href="/metrics">metrics</a></footer>
</body>
</html>
"""
