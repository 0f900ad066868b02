"""Read models built from the event log, one module per read model.

NAMES lists every projection, so read-only commands can check freshness without
importing the event-store machinery.
"""

NAMES = (
    "jobs",
    "runs",
    "dispatches",
    "deliveries",
    "approvals",
    "labels",
    "messages",
    "agents",
    "tasks",
)
