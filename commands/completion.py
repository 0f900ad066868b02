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

    parser = build_parser(prog)
    _quiet(parser)
    return shtab.complete(parser, shell=shell)


UNSAFE = str.maketrans({'"': "'", "`": "'", "$": "", "\\": "/"})


def _quiet(parser: argparse.ArgumentParser) -> None:
    """Help texts and metavars without the characters a shell would still read inside
    shtab's double quotes (`"`, a backquote, `$`, a backslash), in this tree built for
    the script alone: a help text must not break, or run something in, the user's shell."""
    import argparse

    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = action.help.translate(UNSAFE)
        if isinstance(action.metavar, str):
            action.metavar = action.metavar.translate(UNSAFE).strip("'")
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if isinstance(choice.help, str):
                    choice.help = choice.help.translate(UNSAFE)
            for sub in set(action.choices.values()):
                _quiet(sub)


def cli_completion(ctx: Context, args: argparse.Namespace) -> None:
    script = completion_script(args.shell, args.prog)
    if ctx.json:
        print_json({"shell": args.shell, "script": script})
    else:
        print(script, end="" if script.endswith("\n") else "\n")
