"""domain/simple_cron.py answers as croniter does, or not at all (then croniter answers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from croniter.croniter import CroniterBadDateError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocsched.domain import schedule
from ocsched.domain.schedule import next_cron_fire
from ocsched.domain.simple_cron import next_fire

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",  # a 30-minute clock change
    "Asia/Kolkata",
    "Pacific/Chatham",
]
BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
NAMES = {(1, 12): dict(enumerate(MONTHS, 1)), (0, 7): dict(enumerate(WEEKDAYS))}


@st.composite
def items(draw, low: int, high: int) -> str:
    kind = draw(st.sampled_from(["star", "number", "range", "star-step", "range-step", "odd"]))
    a = draw(st.integers(low, high))
    b = draw(st.integers(a, high))
    step = draw(st.integers(1, max(1, high - low)))
    names = NAMES.get((low, high), {})

    def value(number: int) -> str:  # a month or weekday by name, sometimes (as croniter reads)
        name = names.get(number)
        if name is None or not draw(st.booleans()):
            return str(number)
        return draw(st.sampled_from([name, name.upper(), name.title()]))

    a_text, b_text = value(a), value(b)
    return {
        "star": "*",
        "number": a_text,
        "range": f"{a_text}-{b_text}",
        "star-step": f"*/{step}",
        "range-step": f"{a_text}-{b_text}/{step}",
        "odd": draw(
            st.sampled_from(
                ["L", "5/10", "mon/2", "monday", "?", f"{b}-{a}", "sat-sun", "1W", "*/0", "99"]
            )
        ),
    }[kind]


@st.composite
def expressions(draw) -> str:
    """Five fields, or six with the seconds first."""
    fields = []
    bounds = [(0, 59), *BOUNDS] if draw(st.booleans()) else BOUNDS
    for low, high in bounds:
        parts = draw(st.lists(items(low, high), min_size=1, max_size=3))
        fields.append(",".join(parts))
    return " ".join(fields)


MOMENTS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31))


def by_croniter(expression: str, local_now: datetime) -> datetime | None:
    try:
        fire = croniter(expression, local_now, second_at_beginning=True).get_next(datetime)
    except CroniterBadDateError:
        return None
    return fire.astimezone(UTC)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions(), zone=st.sampled_from(ZONES), moment=MOMENTS)
def test_a_plain_expression_fires_when_croniter_says(expression, zone, moment):
    local_now = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    ours = next_fire(expression, local_now)
    if ours is not None:
        assert ours.astimezone(UTC) == by_croniter(expression, local_now), (expression, zone)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize(
    "expression",
    [
        "*/5 * * * *",
        "0 3 * * *",
        "30 2 * * *",
        "0 1 * * *",
        "0 0 1,15 * 1-5",
        "*/20 */5 * * * *",
        "15 30 2 * * *",
        "59 59 1 * * *",
        "30 2 * mar,oct sun",  # the hour a clock change skips or repeats, on its Sundays
        "0 30 2 * * SUN",
        "@daily",  # midnight: some zones change their clocks then
        "@hourly",
    ],
)
def test_around_every_clock_change_of_2030_it_agrees_or_leaves_it_to_croniter(zone, expression):
    tz = ZoneInfo(zone)
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    offsets = set()
    while moment < datetime(2031, 1, 1, tzinfo=UTC):
        offset = moment.astimezone(tz).utcoffset()
        if offsets and offset not in offsets:  # a change: look at the hours around it
            for minutes in range(-180, 181, 7):
                local_now = (moment + timedelta(minutes=minutes)).astimezone(tz)
                ours = next_fire(expression, local_now)
                if ours is not None:
                    assert ours.astimezone(UTC) == by_croniter(expression, local_now)
        offsets = {offset}
        moment += timedelta(hours=1)


def test_months_and_weekdays_may_be_named():
    now = datetime(2030, 3, 4, 10, 7, 30, tzinfo=UTC)  # a Monday
    assert next_fire("0 9 * * mon-fri", now) == datetime(2030, 3, 5, 9, tzinfo=UTC)
    assert next_fire("0 9 * JAN,Jul SUN", now) == datetime(2030, 7, 7, 9, tzinfo=UTC)
    for wrapping in ("0 9 * * sat-sun", "0 9 * dec-jan *", "0 9 * * monday"):
        assert next_fire(wrapping, now) is None  # croniter's to answer


@pytest.mark.parametrize(
    "nickname",
    ["@midnight", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@DAILY"],
)
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "Australia/Lord_Howe"])
def test_a_nickname_fires_when_croniter_says(nickname, zone):
    local_now = datetime(2030, 3, 4, 10, 7, 30, tzinfo=UTC).astimezone(ZoneInfo(zone))
    ours = next_fire(nickname, local_now)
    assert ours is not None
    assert ours.astimezone(UTC) == by_croniter(nickname, local_now)


def test_plain_expressions_are_answered_without_croniter():
    now = datetime(2030, 3, 4, 10, 7, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert next_fire("*/5 * * * *", now) == now.replace(minute=10, second=0)
    assert next_fire("0 3 * * *", now) == now.replace(day=5, hour=3, minute=0, second=0)
    monday = now.replace(day=11, hour=9, minute=0, second=0)  # the 1st/15th, or a Monday
    assert next_fire("0 9 1,15 * 1", now) == monday


def test_six_fields_have_the_seconds_first():
    now = datetime(2030, 3, 4, 23, 59, 58, 500_000, tzinfo=ZoneInfo("Europe/Berlin"))
    second = now.replace(microsecond=0)
    assert next_fire("* * * * * *", now) == second.replace(second=59)
    assert next_fire("*/15 * * * * *", now) == second.replace(day=5, hour=0, minute=0, second=0)
    assert next_fire("58 59 23 * * *", now) == second.replace(day=5)
    assert next_fire("5 0 12 * * *", now) == second.replace(day=5, hour=12, minute=0, second=5)


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 L * *",
        "5/10 * * * *",
        "0 0 * * fri#2",
        "@reboot",
        " @daily",
        "0 0 0 * * * 2030",
        "L 0 0 * * *",
        "0 0 31 2 *",
        "61 * * * *",
    ],
)
def test_anything_else_is_left_to_croniter(expression):
    assert next_fire(expression, datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_a_never_firing_expression_still_never_fires():
    assert next_cron_fire("0 0 30 2 *", "UTC", datetime(2030, 1, 1, tzinfo=UTC)) is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expression=st.sampled_from(["0 9 * * *", "*/7 * * * * *", "30 2 * * sun", "0 0 L * *"]),
    zone=st.sampled_from(ZONES),
    start=MOMENTS,
    steps=st.lists(st.integers(-90_000, 90_000), min_size=1, max_size=12),
)
def test_a_remembered_next_fire_is_the_one_asked_afresh(expression, zone, start, steps):
    """The next fire found for a moment answers later moments up to it (a burst's jobs that
    share an expression): moments asked in any order get what a fresh search gives."""
    moment = start.replace(tzinfo=UTC)
    for seconds in steps:
        moment += timedelta(seconds=seconds, microseconds=seconds % 1000)
        asked = next_cron_fire(expression, zone, moment)
        schedule._LAST_FIRES.clear()
        assert asked == next_cron_fire(expression, zone, moment), (expression, zone, moment)
