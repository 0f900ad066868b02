"""Projection wiring: every handler names a real event class."""

from __future__ import annotations

from eventsourcing.utils import resolve_topic

from ocsched.projections.projection import topic_of
from ocsched.projections.runner import all_projections


def test_every_handler_key_names_an_event_class_of_the_domain():
    for projection in all_projections():
        for topic in projection.topics:
            event_class = resolve_topic(topic)
            assert topic_of(object.__new__(event_class)) == topic, topic


def test_loading_the_projections_imports_no_aggregate():
    import subprocess
    import sys

    code = (
        "import sys; from ocsched.projections.runner import all_projections; all_projections();"
        "print(sorted(m for m in sys.modules if m.startswith('ocsched.domain.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    for aggregate in ("job", "run", "dispatch", "delivery", "approval", "label"):
        assert f"'ocsched.domain.{aggregate}'" not in loaded.stdout
