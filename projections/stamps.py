"""An event's time as the text a read model stores.

Events read in bulk are records whose `timestamp` is the stored RFC 3339 text (UTC with a
`Z`, as msgspec writes it): the TS text is a slice of it. A datetime (a domain event) or
any other offset goes through `to_ts`, which gives the same text the slice does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import msgspec

from ocsched.domain.schedule import to_ts


class Stamped(Protocol):
    @property
    def timestamp(self) -> str | datetime: ...


def ts(event: Stamped) -> str:
    """The event's time as TS text (`YYYY-MM-DD HH:MM:SS`, UTC)."""
    stamp = event.timestamp
    if type(stamp) is str and stamp[-1] == "Z" and stamp[10] == "T":
        return stamp[:19].replace("T", " ")
    return to_ts(moment(event))


def iso_ms(event: Stamped) -> str:
    """The event's time as ISO text with milliseconds, UTC as `Z`."""
    return moment(event).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def moment(event: Stamped) -> datetime:
    stamp = event.timestamp
    return msgspec.convert(stamp, datetime) if isinstance(stamp, str) else stamp
