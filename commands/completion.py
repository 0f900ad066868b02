"""`ocsched completion bash|zsh|fish`: a completion script generated from the parser tree
by shtab, so it always knows every command, subcommand and option."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .argv import command
from .context import Context
from .output import print_json

if TYPE_CHECKING:
    import argparse

SHELLS = ("bash", "zsh", "fish")
INSTALL = {
    "bash": "ocsched completion bash > ~/.local/share/bash-completion/completions/ocsched",
    "zsh": "ocsched completion zsh > ~/.zfunc/_ocsched  # with fpath+=~/.zfunc before compinit",
    "fish": "ocsched completion fish > ~/.config/fish/completions/ocsched.fish",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "completion",
        cli_completion,
        help="print a shell completion script (bash, zsh or fish)",
        usage="bash|zsh|fish",
        examples=list(INSTALL.values()),
    )
    parser.add_argument("shell", choices=SHELLS, metavar="bash|zsh|fish")


def completion_script(shell: str, prog: str = "ocsched") -> str:
    import shtab

    from .cli import build_parser

    return shtab.complete(build_parser(prog), shell=shell)


def cli_completion(ctx: Context, args: argparse.Namespace) -> None:
    script = completion_script(args.shell, args.prog)
    if ctx.json:
        print_json({"shell": args.shell, "script": script})
    else:
        print(script, end="" if script.endswith("\n") else "\n")
