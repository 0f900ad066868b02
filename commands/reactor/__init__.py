"""The daemon (`ocsched daemon`): an orchestrator, its handlers, and what they share.

| module | holds |
|---|---|
| `scheduler.py` | `Reactor`: timers, wake-ups, passes, start and stop; decides nothing |
| `handlers.py` | `Handlers`: per timer kind and pass, load facts → reaction → save → act |
| `following.py` | the handlers that follow sub-agent dispatches |
| `facts.py` | `DaemonFacts`: the reactions' lookups answered from the read models |
| `writer.py` | `EventWriter`: batched saves from the event loop |
| `projector.py` | `Projector`: the read models caught up in a child process, beside the loop |
"""
