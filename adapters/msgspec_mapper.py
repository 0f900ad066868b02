"""Events to stored bytes and back with msgspec, keeping their types.

The stock mapper goes through stdlib json and a dict; this one encodes each event's
fields with msgspec and decodes them through a typed decoder made once per event class,
so datetimes, nested Structs (EventMeta, JobSpec) and text ids come back as they went in.

`decoder(topic)` is for reading the log in bulk (projections): each event is decoded
straight from its bytes into a record of its fields (`_record_decoder`), not into the
library's domain event, and its timestamp is left as the stored text.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

import msgspec
from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

_ENCODER = msgspec.json.Encoder()
_IDENTITY_FIELDS = ("originator_id", "originator_version")

EventDecoder = Callable[[Any, int, bytes], Any]
"""(originator id, originator version, stored state) -> the event, or its record."""


def _state_fields(event_class: type) -> list[tuple]:
    """The stored fields of an event class, as fields of a Struct. A default carries over,
    so an event stored before the field was added still decodes (adding a field with a
    default is how an event's schema grows)."""
    hints = typing.get_type_hints(event_class)
    fields: list[tuple] = []
    for field in dataclasses.fields(event_class):
        if field.name in _IDENTITY_FIELDS:
            continue
        hint = hints.get(field.name, Any)
        if field.default is not dataclasses.MISSING:
            fields.append((field.name, hint, field.default))
        elif field.default_factory is not dataclasses.MISSING:
            fields.append((field.name, hint, msgspec.field(default_factory=field.default_factory)))
        else:
            fields.append((field.name, hint))
    return fields


class MsgspecMapper(Mapper):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        event_class = type(domain_event)
        if issubclass(event_class, CanSnapshotAggregate):
            return super().to_stored_event(domain_event)
        fields = dict(vars(domain_event))
        for name in _IDENTITY_FIELDS:
            del fields[name]
        state = _ENCODER.encode(fields)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(event_class),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        topic = stored_event.topic
        decode = self._with_transcoding(topic, _decoders(topic, _event_decoder))
        return decode(
            stored_event.originator_id, stored_event.originator_version, stored_event.state
        )

    def decoder(self, topic: str) -> EventDecoder:
        """The events of one topic as records (`_record_decoder`), its lookups done once
        (reading the log in bulk calls this once per topic, not per event)."""
        return self._with_transcoding(topic, _decoders(topic, _record_decoder))

    def _with_transcoding(self, topic: str, plain: EventDecoder | None) -> EventDecoder:
        """`plain` (None for a snapshot: the stock mapper's way) after deciphering and
        decompressing, when the log is set up for them."""
        if plain is None:

            def snapshot(originator_id: Any, version: int, state: bytes) -> Any:
                stored = StoredEvent(originator_id, version, topic, state)
                return Mapper.to_domain_event(self, stored)

            return snapshot
        if not (self.cipher or self.compressor):
            return plain
        decode = plain

        def transcoded(originator_id: Any, version: int, state: bytes) -> Any:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            return decode(originator_id, version, state)

        return transcoded


_DECODERS: dict[tuple[str, Callable], EventDecoder | None] = {}


def _decoders(topic: str, make: Callable[[type], EventDecoder]) -> EventDecoder | None:
    """`make(event class)` for the topic, made once; None for snapshots."""
    try:
        return _DECODERS[topic, make]
    except KeyError:
        pass
    event_class = resolve_topic(topic)
    made = None if issubclass(event_class, CanSnapshotAggregate) else make(event_class)
    _DECODERS[topic, make] = made
    return made


def _event_decoder(event_class: type) -> EventDecoder:
    """Stored state (plain bytes) to the domain event."""
    state_type = msgspec.defstruct(f"{event_class.__name__}State", _state_fields(event_class))
    decode_state = msgspec.json.Decoder(state_type).decode
    asdict = msgspec.structs.asdict
    new = object.__new__
    set_attribute = object.__setattr__

    def decode(originator_id: Any, version: int, state: bytes) -> Any:
        fields = asdict(decode_state(state))
        fields["originator_id"] = originator_id
        fields["originator_version"] = version
        domain_event: Any = new(event_class)
        set_attribute(domain_event, "__dict__", fields)
        return domain_event

    return decode


def _record_decoder(event_class: type) -> EventDecoder:
    """Stored state (plain bytes) to a record: a Struct with the event's fields and its
    originator id and version, whose `timestamp` is the stored RFC 3339 text (projections
    write times as text; parsing and formatting a datetime was a third of a rebuild).
    Records are never part of a reference cycle, so the collector does not track them."""
    fields = [
        ("timestamp", str) if field[0] == "timestamp" else field
        for field in _state_fields(event_class)
    ]
    fields += [("originator_id", Any, None), ("originator_version", int, 0)]
    record_type = msgspec.defstruct(f"{event_class.__name__}Record", fields, kw_only=True, gc=False)
    decode_record = msgspec.json.Decoder(record_type).decode

    def decode(originator_id: Any, version: int, state: bytes) -> Any:
        record: Any = decode_record(state)
        record.originator_id = originator_id
        record.originator_version = version
        return record

    return decode
