"""The daemon's decisions, one pure function per situation (see ARCHITECTURE.md).

Each reaction takes rows, facts (`Facts`, read-only lookups) and `now`, and returns a
`Plan`: the aggregates whose new events must be saved together, the effects to perform
once they are saved, and the lines to log. No reaction reads a clock, writes anything or
starts anything; the daemon's handlers do that, in the order load → decide → save → act.

| module | situation |
|---|---|
| `plan.py` | `Plan`, the effects, the reactor's event metadata |
| `facts.py` | `Facts`, what a reaction may look up |
| `firing.py` | a due clock slot or dispatch; admission (overlap, pools, queue) |
| `outcome.py` | a run's outcome (retries, job changes, chains, end, delivery); crashes |
| `approvals.py` | holding a chain dispatch for a person; approval expiry |
| `deliveries.py` | a delivery's record from a target and a text; a failed send |
| `pruning.py` | spec §26 job pruning |
| `following.py` | sub-agent dispatches: notices, results, verification, endings, retries |
| `trust.py` | admission through the v0.2 gates: each decision on the run, a refusal |
| `watchdog.py` | a watchdog check's outcome: its verdict, alert, disarming |
"""
