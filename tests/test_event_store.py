"""The event log's encoding: events round-trip with their types, and old events decode
after a field with a default was added."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.utils import get_topic

from ocsched.adapters.msgspec_mapper import MsgspecMapper
from ocsched.domain.aggregate import EventMeta
from ocsched.domain.job import new_job
from ocsched.domain.run import Run

from .conftest import shell_job

META = EventMeta(actor="tester", origin="test", correlation_id="c1")


def mapper() -> MsgspecMapper:
    return MsgspecMapper(transcoder=JSONTranscoder())


def test_an_event_round_trips_with_its_types():
    job = new_job(shell_job(), "job-1", META, datetime(2030, 1, 1, tzinfo=UTC))
    (created,) = job.collect_events()
    again = mapper().to_domain_event(mapper().to_stored_event(created))
    assert again.spec == created.spec
    assert again.meta == META
    assert again.timestamp == created.timestamp and again.timestamp.tzinfo is not None


def test_an_event_stored_before_a_field_was_added_decodes_with_its_default():
    state = {
        "timestamp": "2030-01-01T00:00:00Z",
        "meta": msgspec.to_builtins(META),
        "job_id": "job-1",
        "process_id": 7,
        "process_group": 7,
        "job_changes": {},
    }  # a Run.Started from before `session_key` existed
    stored = StoredEvent(
        originator_id="run-1",
        originator_version=2,
        topic=get_topic(Run.Started),
        state=msgspec.json.encode(state),
    )
    event = mapper().to_domain_event(stored)
    assert event.session_key is None
    assert event.process_id == 7
