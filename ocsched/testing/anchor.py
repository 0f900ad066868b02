"""openclaw-scheduler itself (the anchor), for tests and benchmarks that need databases
it wrote: where it is, its CLI, and its dispatcher for a while.

`OCSCHED_ANCHOR_DIR` names its source folder (the package: `bin/openclaw-scheduler.js`,
`dispatcher.js`, its `node_modules`), default `/work/anchor/src` when present;
`OCSCHED_ANCHOR_NODE` a Node.js of version 22 or later, default the `node` installed beside
that folder (`../node/node_modules/.bin/node`), else the one on PATH. The gateway it is
given is a closed port on 127.0.0.1: it never reaches anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_DIR = "/work/anchor/src"
CLOSED_GATEWAY = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Anchor:
    source: Path
    node: str

    def env(self, database: Path, **extra: str) -> dict[str, str]:
        home = database.parent / "anchor-home"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "SCHEDULER_DB": str(database),
            "OPENCLAW_GATEWAY_URL": CLOSED_GATEWAY,
            "OPENCLAW_GATEWAY_TOKEN": "test",
            "TZ": "UTC",
            **extra,
        }

    def cli(
        self, database: Path, *args: str, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """`openclaw-scheduler <args>` on `database` (more variables in `env`); with
        `check`, fails with its output if it failed."""
        command = [self.node, str(self.source / "bin" / "openclaw-scheduler.js"), *args]
        done = subprocess.run(
            command, env=self.env(database, **env), capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"openclaw-scheduler {' '.join(args)}: {done.stderr or done.stdout}"
            )
        return done

    def json(self, database: Path, *args: str) -> Any:
        return json.loads(self.cli(database, "--json", *args).stdout)

    def dispatch_for(
        self,
        database: Path,
        seconds: float,
        until: Callable[[], bool] | None = None,
        **settings: str,
    ) -> str:
        """Its dispatcher on `database` (a 1 s tick) for `seconds`, or until `until()` says
        so (asked every 0.2 s, at most `seconds`), then SIGTERM, which it answers by
        checkpointing and closing the database; its log."""
        log = database.parent / "anchor-dispatcher.log"
        env = self.env(database, SCHEDULER_TICK_MS="1000", **settings)
        with open(log, "w") as out:
            process = subprocess.Popen(
                [self.node, str(self.source / "dispatcher.js")],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not (until and until()):
                    time.sleep(0.2)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        return log.read_text()


def locate() -> Anchor | str:
    """The anchor, or why it cannot be used (a reason to skip with)."""
    source = Path(os.environ.get("OCSCHED_ANCHOR_DIR") or DEFAULT_DIR)
    if not (source / "bin" / "openclaw-scheduler.js").is_file():
        return f"openclaw-scheduler not found at {source} (set OCSCHED_ANCHOR_DIR)"
    if not (source / "node_modules" / "better-sqlite3").is_dir():
        return f"openclaw-scheduler at {source} is not installed (no node_modules/better-sqlite3)"
    beside = source.parent / "node" / "node_modules" / ".bin" / "node"
    node = os.environ.get("OCSCHED_ANCHOR_NODE") or (
        str(beside) if beside.exists() else shutil.which("node")
    )
    if not node:
        return "no Node.js for openclaw-scheduler (set OCSCHED_ANCHOR_NODE)"
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError as error:
        return f"cannot run {node}: {error}"
    if not version.startswith("v") or int(version[1:].split(".")[0]) < 22:
        return f"openclaw-scheduler needs Node.js 22 or later; {node} is {version or 'unknown'}"
    return Anchor(source, node)
