"""Next fire times of plain cron expressions (five fields, or six), without croniter.

Importing croniter costs a command ~15 ms (it brings dateutil and, through it, tempfile,
bz2, lzma and ctypes), more than validating and saving a job, and its answers cost the
daemon ~0.2 ms a run. Most expressions are plain: numbers, `*`, ranges, lists and steps in
five fields, or six with the seconds first (croniter's `second_at_beginning`), months and
weekdays by number or by name (`jan`, `mon-fri`), and the nicknames (`@daily`). `next_fire`
evaluates those and answers None for anything else — `L`, `W`, `#`, `?`, `H`, `@reboot`,
seven fields, a value out of range, a step on a single number, a range that wraps
(`fri-mon`, `sat-sun`), a local time that a clock change skips or repeats — which
`domain/schedule.py` then asks croniter, whose answer (and error text) stays the rule; a
property test holds the two to the same answers.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left
from datetime import UTC, datetime, timedelta

_ITEM = re.compile(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute hour day month weekday
_SECOND_BOUNDS = (0, 59)
_NICKNAMES = {
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
"""What croniter reads each nickname as (the whole expression, in any case)."""
_WORD = re.compile(r"[A-Za-z]+")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: str(number) for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WEEKDAYS = {name: str(number) for number, name in enumerate(_WEEKDAY_NAMES)}
_SEARCH_DAYS = 366 * 4 + 1
"""A plain expression that fires at all fires within four years (29 February)."""


def next_fire(expression: str, local_now: datetime) -> datetime | None:
    """The first second (five fields: minute) strictly after `local_now` (aware, in the
    job's zone) that the expression matches, or None when it is not plain or the answer is
    not clear-cut."""
    fields = _parse(expression)
    if fields is None:
        return None
    seconds, minutes, hours, days, months, weekdays, any_day, any_weekday = fields
    now = local_now.replace(microsecond=0)
    tick = timedelta(seconds=1)
    if seconds is None:  # five fields: whole minutes
        now, seconds, tick = now.replace(second=0), [0], timedelta(minutes=1)
    if not _plain_moment(now):
        return None
    start = now.replace(tzinfo=None) + tick
    day = start.replace(hour=0, minute=0, second=0)
    last = day + timedelta(days=_SEARCH_DAYS)
    while day < last:
        if day.month not in months:
            day = _next_month(day)
            continue
        if _day_matches(day, days, weekdays, any_day=any_day, any_weekday=any_weekday):
            moment = _first_time(day, start, hours, minutes, seconds)
            if moment is not None:
                fire = moment.replace(tzinfo=local_now.tzinfo)
                return fire if _plain_moment(fire) else None
        day += timedelta(days=1)
    return None  # never, or not within the search: croniter says which


def _next_month(day: datetime) -> datetime:
    """The first day of the month after `day`'s."""
    if day.month == 12:
        return day.replace(year=day.year + 1, month=1, day=1)
    return day.replace(month=day.month + 1, day=1)


def _first_time(
    day: datetime, start: datetime, hours: list[int], minutes: list[int], seconds: list[int]
) -> datetime | None:
    """The first time of the lists on `day` (a midnight) at or after `start`, if any."""
    if day > start:
        return day.replace(hour=hours[0], minute=minutes[0], second=seconds[0])
    for hour in hours[bisect_left(hours, start.hour) :]:
        if hour > start.hour:
            return day.replace(hour=hour, minute=minutes[0], second=seconds[0])
        for minute in minutes[bisect_left(minutes, start.minute) :]:
            if minute > start.minute:
                return day.replace(hour=hour, minute=minute, second=seconds[0])
            index = bisect_left(seconds, start.second)
            if index < len(seconds):
                return day.replace(hour=hour, minute=minute, second=seconds[index])
    return None


@functools.lru_cache(maxsize=1024)
def _parse(
    expression: str,
) -> tuple[list[int] | None, list[int], list[int], set[int], set[int], set[int], bool, bool] | None:
    """The expression's fields, seconds first (None: five fields), or None when it is not
    plain; read, not changed: the answer is shared. Parsed once per expression: a burst of
    cron jobs asks for the same few."""
    if not expression.isascii():
        return None
    parts = _NICKNAMES.get(expression.lower(), expression).split()
    seconds: list[int] | None = None
    if len(parts) == 6:
        second_values = _field(parts.pop(0), *_SECOND_BOUNDS)
        if second_values is None:
            return None
        seconds = sorted(second_values)
    if len(parts) != 5:
        return None
    for index, names in ((3, _MONTHS), (4, _WEEKDAYS)):
        numbered = _numbered(parts[index], names)
        if numbered is None:
            return None
        parts[index] = numbered
    sets: list[set[int]] = []
    for text, (low, high) in zip(parts, _BOUNDS, strict=True):
        values = _field(text, low, high)
        if values is None:
            return None
        sets.append(values)
    day_text, weekday_text = parts[2], parts[4]
    for text in (day_text, weekday_text):  # `*` alone, or no `*` at all: no doubt which is free
        if "*" in text and text != "*":
            return None
    weekdays = {0 if value == 7 else value for value in sets[4]}
    any_day, any_weekday = day_text == "*", weekday_text == "*"
    if (sets[2] == set(range(1, 32)) and not any_day) or (
        weekdays == set(range(7)) and not any_weekday
    ):
        return None  # every day written out: croniter takes some such fields for `*`
    minutes, hours = sorted(sets[0]), sorted(sets[1])
    return (seconds, minutes, hours, sets[2], sets[3], weekdays, any_day, any_weekday)


def _numbered(text: str, names: dict[str, str]) -> str | None:
    """The field with its names (`jan`, `MON`) as numbers, as croniter reads them; None for
    a word that is not one."""
    if any(word.lower() not in names for word in _WORD.findall(text)):
        return None
    return _WORD.sub(lambda word: names[word.group().lower()], text)


def _field(text: str, low: int, high: int) -> set[int] | None:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            return None
        star, first, last, step = match.groups()
        if star == "*":
            start, end = low, (6 if high == 7 else high)
        else:
            start = int(first)
            end = int(last) if last is not None else start
            if (last is None and step is not None) or (last is not None and end <= start):
                return None  # `5/10`, `3-3`: croniter reads them its own way
        every = int(step) if step is not None else 1
        if not (low <= start <= end <= high) or every < 1:
            return None
        values.update(range(start, end + 1, every))
    return values


def _day_matches(
    day: datetime, days: set[int], weekdays: set[int], *, any_day: bool, any_weekday: bool
) -> bool:
    """Day of month and day of week: both must match when either is `*`; when both are
    restricted, either will do (classic cron)."""
    in_month = day.day in days
    in_week = (day.weekday() + 1) % 7 in weekdays  # cron: Sunday is 0
    if any_day or any_weekday:
        return in_month and in_week
    return in_month or in_week


def _plain_moment(moment: datetime) -> bool:
    """Whether a local time occurs exactly once in its zone: not skipped by a clock change
    (it survives the trip to UTC and back) and not repeated by one (both folds agree)."""
    zone = moment.tzinfo
    if zone is None:
        return False
    back = moment.astimezone(UTC).astimezone(zone)  # (to the same zone is no conversion)
    if back.replace(tzinfo=None) != moment.replace(tzinfo=None):
        return False
    return moment.replace(fold=0).utcoffset() == moment.replace(fold=1).utcoffset()
