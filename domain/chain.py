"""Chain structure checks (spec §15.1): the parent exists, no cycle, depth within bounds."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import ValidationError

MAX_CHAIN_DEPTH = 10

ParentOf = Callable[[str], str | None]
"""Returns the parent id of an existing job (None for a root); raises KeyError if none."""

ChildrenOf = Callable[[str], Iterable[str]]


def check_parent(
    job_id: str,
    parent_id: str,
    parent_of: ParentOf,
    children_of: ChildrenOf | None = None,
) -> None:
    """Raise ValidationError unless `job_id` may hang under `parent_id`.

    On update, pass `children_of` so the job's own descendants count towards the depth.
    """
    ancestors = _ancestors_of_new_position(job_id, parent_id, parent_of)
    depth = ancestors + (_height(job_id, children_of) if children_of else 0)
    if depth > MAX_CHAIN_DEPTH:
        if children_of:
            raise ValidationError(f"Max chain depth ({MAX_CHAIN_DEPTH}) exceeded.")
        raise ValidationError(
            f"Max chain depth ({MAX_CHAIN_DEPTH}) exceeded. Chain would be {depth} deep."
        )


def _ancestors_of_new_position(job_id: str, parent_id: str, parent_of: ParentOf) -> int:
    try:
        grandparent = parent_of(parent_id)
    except KeyError:
        raise ValidationError(f"parent job does not exist: {parent_id}") from None
    ancestors, current = 1, parent_id
    while True:
        if current == job_id:
            raise ValidationError(
                f"Cycle detected: job {job_id} -> {parent_id} would create a loop"
            )
        if grandparent is None or ancestors > MAX_CHAIN_DEPTH:
            return ancestors
        current, ancestors = grandparent, ancestors + 1
        grandparent = parent_of(current)


def _height(job_id: str, children_of: ChildrenOf) -> int:
    """Levels of descendants below a job (0 for a leaf)."""
    level, frontier = 0, [job_id]
    while level <= MAX_CHAIN_DEPTH:
        frontier = [child for parent in frontier for child in children_of(parent)]
        if not frontier:
            return level
        level += 1
    return level
