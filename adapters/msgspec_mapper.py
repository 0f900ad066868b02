"""Events to stored bytes and back with msgspec, keeping their types.

The stock mapper goes through stdlib json and a dict; this one encodes each event's
fields with msgspec and decodes them through a typed decoder made once per event class,
so datetimes, nested Structs (EventMeta, JobSpec) and text ids come back as they went in.
`decoder(topic)` is the same decoding made once per topic, for reading the log in bulk.
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
_DECODERS: dict[type, msgspec.json.Decoder] = {}
_IDENTITY_FIELDS = ("originator_id", "originator_version")

EventDecoder = Callable[[Any, int, bytes], Any]
"""(originator id, originator version, stored state) -> the domain event."""


def _decoder_for(event_class: type) -> msgspec.json.Decoder:
    decoder = _DECODERS.get(event_class)
    if decoder is None:
        hints = typing.get_type_hints(event_class)
        fields = [
            _state_field(field, hints.get(field.name, Any))
            for field in dataclasses.fields(event_class)
            if field.name not in _IDENTITY_FIELDS
        ]
        state_type = msgspec.defstruct(f"{event_class.__name__}State", fields)
        decoder = _DECODERS[event_class] = msgspec.json.Decoder(state_type)
    return decoder


def _state_field(field: dataclasses.Field, hint: Any) -> tuple:
    """A field of the decoder's Struct. A default carries over, so an event stored before
    the field was added still decodes (adding a field with a default is how an event's
    schema grows)."""
    if field.default is not dataclasses.MISSING:
        return (field.name, hint, field.default)
    if field.default_factory is not dataclasses.MISSING:
        return (field.name, hint, msgspec.field(default_factory=field.default_factory))
    return (field.name, hint)


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
        decode = self.decoder(stored_event.topic)
        return decode(
            stored_event.originator_id, stored_event.originator_version, stored_event.state
        )

    def decoder(self, topic: str) -> EventDecoder:
        """`to_domain_event` for the events of one topic, its lookups done once (reading the
        log in bulk calls this once per topic, not per event)."""
        plain = _event_decoder(topic)
        if plain is None:  # a snapshot: the stock mapper's way

            def snapshot(originator_id: Any, version: int, state: bytes) -> Any:
                stored = StoredEvent(originator_id, version, topic, state)
                return Mapper.to_domain_event(self, stored)

            return snapshot
        if not (self.cipher or self.compressor):
            return plain

        def transcoded(originator_id: Any, version: int, state: bytes) -> Any:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            return plain(originator_id, version, state)

        return transcoded


_EVENT_DECODERS: dict[str, EventDecoder | None] = {}


def _event_decoder(topic: str) -> EventDecoder | None:
    """Stored state (plain bytes) of one topic to the domain event; None for snapshots."""
    try:
        return _EVENT_DECODERS[topic]
    except KeyError:
        pass
    event_class = resolve_topic(topic)
    if issubclass(event_class, CanSnapshotAggregate):
        _EVENT_DECODERS[topic] = None
        return None
    decode_state = _decoder_for(event_class).decode
    asdict = msgspec.structs.asdict
    new = object.__new__
    set_attribute = object.__setattr__

    def decode(originator_id: Any, version: int, state: bytes) -> Any:
        fields = asdict(decode_state(state))
        fields["originator_id"] = originator_id
        fields["originator_version"] = version
        domain_event = new(event_class)
        set_attribute(domain_event, "__dict__", fields)
        return domain_event

    _EVENT_DECODERS[topic] = decode
    return decode
