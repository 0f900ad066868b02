"""The rules of the `dispatch` sub-agent CLI (spec §31), as pure functions, one module per
seam. Nothing here reads the clock, the disk, git or the gateway: "now" and everything
observed outside come in as arguments; `commands/dispatch*.py` and the reactor do the I/O.

* `task_message`: §31.4, the message that starts a session, `ORIGIN_CHAT_ID:`
* `git_sha`: §31.7's git-SHA gate (does a task push; what a SHA looks like)
* `done_guards`: §31.7, the guards of `done` in order, with the anchor's messages
* `completion`: §31.8, the completion payload v2 and what a checklist states
* `noise`, `summarize`, `technical`, `humanize`: §31.9, completion-text normalization
* `delivery_text`: §31.9, what a finished dispatch delivers, in resolution order
* `overload`: §31.11, overload (529) detection and the recovery safety net
* `hook_payloads`: §31.12, lifecycle hook bodies and fields
* `auto_resolution`: §31.5 / §31.6, thresholds, spawn failures, "session done"
* `brand`: §31.1, the configured brand and the `[<brand>] <message>` line
* `values`: values read the way the anchor (JavaScript) reads them
"""
