"""Projection wiring: every handler names a real event class; a page of row changes is
written as one statement per change would write it."""

from __future__ import annotations

import json
import sqlite3
from unittest.mock import patch

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import resolve_topic
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ocsched.projections import store
from ocsched.projections.projection import Projection, topic_of
from ocsched.projections.rows import Delete, KeepNewest, Update, Upsert
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


# A page's row changes are merged (later changes of a row into an earlier statement) and
# batched; the tables must end exactly as one statement per change, in order, leaves them.

KEYS = st.sampled_from(("k0", "k1", "k2"))
GROUPS = st.sampled_from(("0", "1"))
COLUMNS = {
    "a": st.one_of(st.none(), st.integers(0, 2), st.lists(st.integers(0, 1), max_size=2)),
    "status": st.sampled_from(("done", "running", None)),
    "grp": GROUPS,
    "ord": st.integers(0, 2),
}


@st.composite
def _columns(draw) -> dict:
    names = draw(st.sets(st.sampled_from(sorted(COLUMNS)), min_size=1))
    return {name: draw(COLUMNS[name]) for name in sorted(names)}


ROW_CHANGES = st.one_of(
    st.builds(lambda key, row: Upsert("t", {"id": key, **row}), KEYS, _columns()),
    st.builds(lambda key, values: Update("t", key, values), KEYS, _columns()),
    st.builds(lambda group, values: Update("t", group, values, pk="grp"), GROUPS, _columns()),
    st.builds(lambda key: Delete("t", key), KEYS),
    st.builds(lambda group: Delete("t", group, pk="grp"), GROUPS),
    st.builds(lambda group: KeepNewest("t", "grp", group, "ord", 1), GROUPS),
    st.builds(lambda key, x: Upsert("u", {"id": key, "x": x}), KEYS, st.integers(0, 3)),
    st.builds(lambda key, x: Update("u", key, {"x": x}), KEYS, st.integers(0, 3)),
)


def _create(db) -> None:
    db["t"].create({"id": str, "a": int, "status": str, "grp": str, "ord": int}, pk="id")
    db["t"].create_index(["grp"])
    db["u"].create({"id": str, "x": int}, pk="id")
    db["u"].create_index(["x"], unique=True)


def _table_rows(connection: sqlite3.Connection) -> dict[str, list]:
    return {
        name: [
            tuple(row) for row in connection.execute(f"SELECT rowid, * FROM {name} ORDER BY rowid")
        ]
        for name in ("t", "u")
    }


def _one_statement(connection: sqlite3.Connection, change) -> None:
    """What a row change means, one plain statement for it."""
    if isinstance(change, Upsert):
        names, values = list(change.row), [_bound(v) for v in change.row.values()]
        marks = ", ".join("?" * len(names))
        updates = ", ".join(f"{n} = excluded.{n}" for n in names if n != change.pk)
        connection.execute(
            f"INSERT INTO {change.table} ({', '.join(names)}) VALUES ({marks})"
            f" ON CONFLICT({change.pk}) DO UPDATE SET {updates}",
            values,
        )
    elif isinstance(change, Update):
        assignments = ", ".join(f"{n} = ?" for n in change.values)
        connection.execute(
            f"UPDATE {change.table} SET {assignments} WHERE {change.pk} = ?",
            [*map(_bound, change.values.values()), change.key],
        )
    elif isinstance(change, Delete):
        connection.execute(f"DELETE FROM {change.table} WHERE {change.pk} = ?", (change.key,))
    else:
        connection.execute(
            f"DELETE FROM {change.table} WHERE {change.group_column} = ?"
            " AND status NOT IN ('pending', 'queued', 'running') AND rowid NOT IN"
            f" (SELECT rowid FROM {change.table} WHERE {change.group_column} = ?"
            f" ORDER BY {change.order_column} DESC, rowid DESC LIMIT ?)",
            (change.group_value, change.group_value, change.keep),
        )


def _bound(value):
    return json.dumps(value) if isinstance(value, list | dict) else value


def _page(*changes) -> dict:
    """One page holding one event per change."""
    return {"events": [[c] for c in changes], "page_size": 50, "chunk": 7, "pending": 99}


DONE = {"status": "done", "grp": "0"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(st.lists(ROW_CHANGES, min_size=1, max_size=2), max_size=25),
    page_size=st.integers(1, 30),
    chunk=st.integers(1, 7),
    pending=st.integers(1, 60),
)
@example(  # deleted in between: the second upsert inserts again
    **_page(Upsert("t", {"id": "k0", "a": 1}), Delete("t", "k0"), Upsert("t", {"id": "k0", "a": 2}))
)
@example(  # retention removed k0 before the update, which then matches nothing
    **_page(
        Upsert("t", {"id": "k0", "ord": 0, **DONE}),
        Upsert("t", {"id": "k1", "ord": 1, **DONE}),
        KeepNewest("t", "grp", "0", "ord", 1),
        Update("t", "k0", {"status": "running"}),
    )
)
@example(  # an update of a group matches k0 only after k0 moved into it
    **_page(
        Upsert("t", {"id": "k0", "grp": "1"}),
        Update("t", "0", {"a": 2}, pk="grp"),
        Update("t", "k0", {"grp": "0"}),
    )
)
@example(  # a row whose key changed is another row
    **_page(
        Upsert("t", {"id": "k0", "a": 0}),
        Update("t", "k0", {"id": "k1"}),
        Update("t", "k0", {"a": 1}),
    )
)
@example(  # moved earlier, k0's update would take x=2 while k1 still holds it
    events=[
        [Upsert("u", {"id": "k0", "x": 1}), Upsert("u", {"id": "k1", "x": 2})],
        [Update("u", "k0", {"x": 5}), Update("u", "k1", {"x": 3}), Update("u", "k0", {"x": 2})],
    ],
    page_size=50,
    chunk=1,
    pending=2,
)
@example(  # an update of a missing row, then an upsert: not one statement
    **_page(Update("t", "k0", {"a": 1}), Upsert("t", {"id": "k0", "ord": 2}))
)
def test_a_page_of_merged_row_changes_equals_one_statement_per_change(
    events, page_size, chunk, pending
):
    import sqlite_utils

    expected = sqlite3.connect(":memory:", isolation_level=None)
    _create(sqlite_utils.Database(expected))
    failed = None
    try:
        with expected:
            for changes in events:
                for change in changes:
                    _one_statement(expected, change)
    except sqlite3.IntegrityError as error:  # a unique index refused a change: so must we
        failed = type(error)

    projection = Projection(
        name="rows",
        version=1,
        tables=("t", "u"),
        create_tables=_create,
        handlers={"rows:Rows.Changed": lambda changes: changes},
    )
    topic = next(iter(projection.topics))
    log = list(enumerate(events, start=1))

    def read(position: int, limit: int):
        return [(n, topic, changes) for n, changes in log[position : position + limit]]

    read_models = store.ReadModelStore(":memory:")
    read_models.ensure_tables(projection)
    with patch.multiple(store, READ_CHUNK=chunk, MAX_PENDING_CHANGES=pending):
        try:
            while read_models.apply([projection], read, page_size) == page_size:
                pass
        except IntegrityError as error:
            assert failed, error
            return
    assert not failed
    with read_models.datastore.transaction(commit=False) as cursor:
        actual = _table_rows(cursor.sqlite_cursor.connection)
    assert actual == _table_rows(expected)
    assert read_models.position("rows") == len(events)
