"""When jobs fire (spec §4): cron in the job's zone, one-shot at-jobs, `--at` / `--in`.

Every function is pure: "now" is an argument. Stored times are the anchor's TS text,
UTC with second precision (`YYYY-MM-DD HH:MM:SS`), so they sort as strings.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from types import ModuleType

from . import simple_cron
from .errors import ValidationError
from .job_spec import AT_JOB_SENTINEL_CRON

_DURATION = r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([smhd])\s*$"
"""(Compiled by `re` on first use, for `--in` only: ~0.4 ms at import otherwise.)"""
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def to_ts(moment: datetime) -> str:
    """A moment as TS text: UTC, seconds, no zone."""
    return moment.astimezone(UTC).isoformat(sep=" ", timespec="seconds")[:19]


def from_ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def parse_datetime(text: str) -> datetime:
    """An ISO date or datetime; one without an offset is taken as UTC (not host-local)."""
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValidationError(f'Invalid datetime: "{text}"') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_duration(text: str) -> timedelta:
    """`30s`, `15m`, `1.5h`, `1d` (spec §4.3)."""
    match = re.match(_DURATION, text, re.IGNORECASE)
    if not match:
        raise ValidationError(f'Invalid --in duration: "{text}". Use e.g. 15m, 2h, 30s, 1d')
    amount, unit = match.groups()
    try:
        return timedelta(seconds=float(amount) * _UNIT_SECONDS[unit.lower()])
    except OverflowError:  # past timedelta's 999,999,999 days
        raise ValidationError(f'Invalid --in duration: "{text}" is too long') from None


def zone(name: str) -> tzinfo:
    """The IANA zone `name`. "UTC", the default, is datetime's: no zoneinfo import, no
    file read (~2 ms of every `jobs add`), the same instants."""
    if name == "UTC":
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValidationError(f'schedule_tz "{name}" is not a valid IANA timezone') from None


def check_cron(expression: str, tz: str) -> None:
    """Raise ValidationError when the expression or the zone cannot be evaluated, or the
    expression can never fire (like `0 0 30 2 *`)."""
    if next_cron_fire(expression, tz, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValidationError(f'Invalid cron expression "{expression}": it never fires')


_LAST_FIRES: dict[tuple[str, str], tuple[datetime, datetime]] = {}
"""Per expression and zone, the last answer: (`now` asked, the fire found). Nothing
matches between the two, so the same fire answers any `now` from the one asked up to the
fire: every job of a burst that shares an expression asks for its next fire from the same
slot, and again from the end of its run, both within that span."""
_LAST_FIRES_KEPT = 4096


def next_cron_fire(expression: str, tz: str, now: datetime) -> datetime | None:
    """The first instant strictly after `now` that matches, evaluated in zone `tz`.

    None for an expression that never fires (the at-job sentinel `0 0 31 2 *`).
    """
    if now.tzinfo is None:  # (not comparable with the answers kept, which are aware)
        return _next_cron_fire(expression, tz, now)
    key = (expression, tz)
    last = _LAST_FIRES.get(key)
    if last is not None and last[0] <= now < last[1]:
        return last[1]
    fire = _next_cron_fire(expression, tz, now)
    if fire is not None:
        if len(_LAST_FIRES) >= _LAST_FIRES_KEPT:
            _LAST_FIRES.clear()
        _LAST_FIRES[key] = (now, fire)
    return fire


def _next_cron_fire(expression: str, tz: str, now: datetime) -> datetime | None:
    if expression.strip().lower() == "@reboot":
        raise ValidationError(f'Invalid cron expression "{expression}": @reboot is not supported')
    local_now = now.astimezone(zone(tz))
    plain = simple_cron.next_fire(expression, local_now)  # croniter's answer, sooner
    if plain is not None:
        return plain.astimezone(UTC)
    cron = _croniter()
    try:
        fire = cron.croniter(expression, local_now, second_at_beginning=True).get_next(datetime)
    except cron.CroniterBadDateError:
        return None
    except (cron.CroniterError, ValueError, KeyError) as error:
        raise ValidationError(f'Invalid cron expression "{expression}": {error}') from None
    return fire.astimezone(UTC).replace(microsecond=0)


_CRONITER_IMPORT = threading.Lock()


@cache
def _croniter() -> ModuleType:
    """croniter's module, imported on first use. At import it asks `platform.architecture()`
    whether the interpreter is 32-bit, which runs `file -b` on it (a process, ~10 ms of
    every command that validates a cron); its first test, the pointer size, already
    answers, so the question is answered from that alone while the module loads."""
    import importlib
    import platform
    import struct

    with _CRONITER_IMPORT:
        architecture = platform.architecture
        platform.architecture = lambda *_, **__: (f"{struct.calcsize('P') * 8}bit", "")
        try:
            return importlib.import_module("croniter.croniter")
        finally:
            platform.architecture = architecture


def next_run_at(job: dict, now: datetime, *, run_now: bool = False) -> str | None:
    """Spec §4.5: when a job next fires from the clock, as TS text (None: never)."""
    if job.get("parent_id"):
        return None
    if run_now:
        return to_ts(now - timedelta(seconds=1))
    if job.get("schedule_kind") == "at":
        return job.get("schedule_at")
    cron = job.get("schedule_cron")
    if not cron or cron == AT_JOB_SENTINEL_CRON:
        return None
    fire = next_cron_fire(cron, job.get("schedule_tz") or "UTC", now)
    return to_ts(fire) if fire else None
