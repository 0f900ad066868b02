"""What the watchdog's registration prefix adds to a run's shell: CPU of `bash -c true`
against the same command as the daemon starts it (`adapters/supervisor.Supervisor.argv`:
the parent check, the `+<pgid>` write to the registration pipe, stdin back to /dev/null).

    .venv/bin/python scripts/bench/shell_prefix.py [--spawns 3000] [--shell bash]

Method: this process starts a real watchdog (`Supervisor`), then spawns the two commands
alternately, one at a time, each in a new session with `posix_spawn`, and reads each
shell's own CPU time (user + system) from `wait4`'s resource usage. Alternating spawn by
spawn puts both sides in the same moments of a machine whose speed drifts; means and
medians of `--spawns` shells each are printed, and the difference. A 500-run burst's
spawn floor runs `bash -c true` (`reactor_burst.py`), so the difference times 500 is what
the prefix adds to a burst's CPU beside the floor.
"""

from __future__ import annotations

import argparse
import os
import statistics

from ocsched.adapters.supervisor import Supervisor


def shell_cpu_ms(argv: list[str], stdin: int, devnull: int) -> float:
    """One shell's own CPU time in ms, started as the daemon starts a run's shell."""
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, devnull, 1)]
    actions.append((os.POSIX_SPAWN_DUP2, devnull, 2))
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=actions, setsid=True)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv!r} exited with {os.waitstatus_to_exitcode(status)}")
    return (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spawns", type=int, default=3000, help="shells of each kind")
    parser.add_argument("--shell", default="bash")
    options = parser.parse_args()
    supervisor = Supervisor()
    devnull = os.open(os.devnull, os.O_RDWR)
    sides = {
        f"{options.shell} -c true": ([options.shell, "-c", "true"], devnull),
        "with the registration prefix": (
            supervisor.argv(options.shell, "true"),
            supervisor.stdin,
        ),
    }
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    try:
        for _ in range(options.spawns):
            for name, (argv, stdin) in sides.items():
                cpu[name].append(shell_cpu_ms(argv, stdin, devnull))
    finally:
        supervisor.close()
        os.close(devnull)
    means = {name: statistics.mean(values) for name, values in cpu.items()}
    for name, values in cpu.items():
        print(
            f"{name:32s} mean {means[name]:.3f} ms  median {statistics.median(values):.3f} ms"
            f"  ({len(values)} shells)"
        )
    plain, prefixed = means.values()
    print(f"the prefix adds {prefixed - plain:.3f} ms a shell ({prefixed / plain - 1:+.1%})")


if __name__ == "__main__":
    main()
