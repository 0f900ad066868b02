"""Deliveries (spec §13): what a run sends to a chat, split into chunks, sent once each.

A Delivery's id is derived from its run and purpose, and each chunk carries its own
idempotency key (delivery id + index), so neither a retry of the send nor a restart of
the daemon sends a chunk whose success is recorded.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from eventsourcing.domain import event

from .aggregate import Aggregate, EventMeta
from .run import RUN_NAMESPACE

TELEGRAM_LIMIT_BYTES = 4096
TELEGRAM_CHUNK_BYTES = TELEGRAM_LIMIT_BYTES - 12
MAX_ATTEMPTS = 8
_TARGET_PREFIX = re.compile(r"^([A-Za-z0-9_-]+)[:/](.+)$", re.DOTALL)


def delivery_id(run_id: str, purpose: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"delivery/{run_id}/{purpose}"))


def retry_backoff_seconds(attempt: int) -> float:
    """Wait after failed attempt n: 2, 4, 8, … seconds, at most 5 minutes."""
    return float(min(2**attempt, 300))


def normalize_target(channel: str | None, target: str) -> tuple[str | None, str]:
    """`telegram:123` or `telegram/123` names its channel (spec §13.4)."""
    match = _TARGET_PREFIX.match(target)
    if match and (not channel or channel == match.group(1)):
        channel, target = match.group(1), match.group(2)
    for separator in ("/", ":"):
        if channel and target.startswith(f"{channel}{separator}"):
            target = target[len(channel) + 1 :]
    return channel, target


def split_message(text: str, channel: str | None) -> list[str]:
    """Telegram text over 4096 UTF-8 bytes becomes `[i/n] ` chunks of at most 4084 bytes,
    cut at a newline, else a space, past the chunk's middle, else hard (spec §13.4)."""
    if channel != "telegram" or len(text.encode()) <= TELEGRAM_LIMIT_BYTES:
        return [text]
    chunks, rest = [], text
    while rest:
        if len(rest.encode()) <= TELEGRAM_CHUNK_BYTES:
            chunks.append(rest)
            break
        head = rest.encode()[:TELEGRAM_CHUNK_BYTES].decode("utf-8", errors="ignore")
        cut = _cut_point(head)
        chunks.append(head[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [f"[{i}/{len(chunks)}] {chunk}" for i, chunk in enumerate(chunks, 1)]


def _cut_point(head: str) -> int:
    for separator in ("\n", " "):
        position = head.rfind(separator)
        if position > len(head) // 2:
            return position
    return len(head)


class Delivery(Aggregate):
    class Requested(Aggregate.Created):
        run_id: str
        job_id: str
        purpose: str
        channel: str | None
        target: str
        chunks: list[str]

    @event(Requested)
    def __init__(
        self,
        id: str,  # noqa: A002 - the library passes the aggregate id by this name
        run_id: str,
        job_id: str,
        purpose: str,
        channel: str | None,
        target: str,
        chunks: list[str],
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.channel = channel
        self.target = target
        self.chunks = chunks
        self.sent: set[int] = set()
        self.attempts: dict[int, int] = {}
        self.status = "pending"

    class ChunkSent(Aggregate.Event):
        """Chunk `index` went out on attempt `attempt`; `complete` when it was the last."""

        index: int
        attempt: int
        complete: bool

    @event(ChunkSent)
    def _record_sent(
        self, index: int, attempt: int, complete: bool, meta: EventMeta, timestamp: datetime
    ) -> None:
        self.sent.add(index)
        self.attempts[index] = attempt
        if complete:
            self.status = "delivered"

    class AttemptFailed(Aggregate.Event):
        index: int
        attempt: int
        error: str
        retry_at: str | None

    @event(AttemptFailed)
    def _record_failed(
        self,
        index: int,
        attempt: int,
        error: str,
        retry_at: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.attempts[index] = attempt
        if retry_at is None:
            self.status = "failed"

    def next_chunk(self) -> int | None:
        for index in range(len(self.chunks)):
            if index not in self.sent:
                return index
        return None

    def chunk_key(self, index: int) -> str:
        return f"{self.id}:{index}"

    def record_sent(self, index: int, meta: EventMeta, at: datetime) -> None:
        if index not in self.sent:
            attempt = self.attempts.get(index, 0) + 1
            complete = len(self.sent | {index}) == len(self.chunks)
            self._record_sent(
                index=index, attempt=attempt, complete=complete, meta=meta, timestamp=at
            )

    def record_failure(
        self, index: int, error: str, retry_at: str | None, meta: EventMeta, at: datetime
    ) -> int:
        attempt = self.attempts.get(index, 0) + 1
        if attempt >= MAX_ATTEMPTS:
            retry_at = None
        self._record_failed(
            index=index, attempt=attempt, error=error, retry_at=retry_at, meta=meta, timestamp=at
        )
        return attempt


class Alias(Aggregate):
    """A named delivery target (`alias add team telegram -100123`); `@team` resolves to it."""

    class Added(Aggregate.Created):
        name: str
        channel: str
        target: str
        description: str | None

    @event(Added)
    def __init__(
        self,
        id: str,  # noqa: A002
        name: str,
        channel: str,
        target: str,
        description: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.name = name
        self.channel, self.target, self.description = channel, target, description
        self.removed = False

    class Changed(Aggregate.Event):
        name: str
        channel: str
        target: str
        description: str | None

    @event(Changed)
    def change(
        self,
        name: str,
        channel: str,
        target: str,
        description: str | None,
        meta: EventMeta,
        timestamp: datetime,
    ) -> None:
        self.channel, self.target, self.description = channel, target, description
        self.removed = False

    class Removed(Aggregate.Event):
        name: str

    @event(Removed)
    def remove(self, name: str, meta: EventMeta, timestamp: datetime) -> None:
        self.removed = True


def alias_id(name: str) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"alias/{name}"))


def resolve_target(job: dict, alias_of) -> tuple[str | None, str] | None:
    """The job's channel and target, `@name` (or a bare name) resolved through the aliases
    (`alias_of(name)` returns a row with channel and target, or None). None: no delivery."""
    channel, target = job.get("delivery_channel"), job.get("delivery_to")
    if not target:
        return None
    found = alias_of(target.removeprefix("@"))
    if found is not None:
        return found["channel"], found["target"]
    return normalize_target(channel, target)


def delivery_text(
    job: dict,
    *,
    agent: bool,
    status: str,
    text: str,
    error: str | None,
    exception: bool = False,
    retry: tuple[int, int] | None = None,
    deliverable: bool = True,
) -> str | None:
    """What a run's outcome sends under the job's delivery mode (spec §13.2), or None.
    `retry` is (attempt, max) when a retry was scheduled; `exception` marks an agent turn
    that failed in the call itself rather than in its reply."""
    mode = job.get("delivery_mode") or "announce"
    if mode == "none":
        return None
    always = mode == "announce-always"
    name = job["name"]
    if not agent:
        if status == "ok":
            return (text or "(no output)") if always else None
        body = text or error or ""
        return f"⚠️ Shell job failed: {name}\n\n{body}" if always else body
    if exception:
        if retry:
            return f'Job "{name}" failed with exception, retry {retry[0]}/{retry[1]} scheduled'
        return f"⚠️ Job failed: {name}\n\n{error or ''}"
    if status == "ok":
        return text if always and deliverable and text.strip() else None
    retries_left = (job.get("max_retries") or 0) > 0 and retry is not None
    label = "will retry" if retries_left else "no retries configured"
    return f"⚠️ Job soft-failed ({label}): {name}\n\n{text}"
