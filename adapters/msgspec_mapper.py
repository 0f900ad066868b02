"""Events to stored bytes and back with msgspec, keeping their types.

The stock mapper goes through stdlib json and a dict; this one encodes each event's
fields with msgspec and decodes them through a typed decoder made once per event class,
so datetimes, nested Structs (EventMeta, JobSpec) and text ids come back as they went in.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import msgspec
from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type, msgspec.json.Decoder] = {}
_IDENTITY_FIELDS = ("originator_id", "originator_version")


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
        event_class = resolve_topic(stored_event.topic)
        if issubclass(event_class, CanSnapshotAggregate):
            return super().to_domain_event(stored_event)
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        fields = msgspec.structs.asdict(_decoder_for(event_class).decode(state))
        fields["originator_id"] = stored_event.originator_id
        fields["originator_version"] = stored_event.originator_version
        domain_event = object.__new__(event_class)
        object.__setattr__(domain_event, "__dict__", fields)
        return domain_event
