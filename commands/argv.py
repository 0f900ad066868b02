"""Reading the command line: the argparse pieces every command's parser is built from
(`Parser`, `command`, `group`), the errors they raise, and the dispatch CLI's looser reading
of flags (`Argv`, spec §31.1)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Literal, NoReturn

# argparse passes each of its own strings (~80 for the jobs parsers) through gettext, which
# imports locale and looks for message catalogues on disk (~2 ms of every command). Python
# ships none for argparse's strings, and the CLI's messages are the anchor's English ones
# (spec §5.2) whatever the locale: its strings are taken as they are.
argparse._ = lambda message: message  # type: ignore[attr-defined]
argparse.ngettext = lambda singular, plural, n: singular if n == 1 else plural  # type: ignore[attr-defined]

GLOBAL_HELP = "global options (anywhere on the line)"


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Description and examples keep their lines; usage starts with `Usage:` as the
    anchor's does."""

    def add_usage(self, usage, actions, groups, prefix=None) -> None:
        super().add_usage(usage, actions, groups, "Usage: " if prefix is None else prefix)


class ArgumentsError(Exception):
    """Wrong arguments to a known command (argparse's message), raised by `parser`."""

    def __init__(self, parser: Parser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class UnknownCommand(Exception):
    """A command or subcommand word `parser` does not know."""

    def __init__(self, parser: Parser, word: str, choices: Sequence[str]) -> None:
        super().__init__(word)
        self.parser = parser
        self.word = word
        self.choices = list(choices)


class Subcommands(argparse._SubParsersAction):
    """Records the chosen parser on the namespace (`_parser`, the deepest one wins), so a
    group called without a subcommand can print its own help and an argument error can
    name the usage of the command it belongs to."""

    error_status = 1
    words: Sequence[str] | None = None
    """The line's words from this level on (the CLI sets the root's, `group` passes them
    down): only the command they name is built in full, the others are placeholders.
    None: every command is built (help, completion)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        namespace._parser = self._name_parser_map[values[0]]
        super().__call__(parser, namespace, values, option_string)

    def add_parser(self, name: str, **kwargs: Any) -> Parser:
        kwargs.setdefault("error_status", self.error_status)  # a group's commands inherit it
        parser: Parser = super().add_parser(name, **kwargs)
        return parser

    def wants(self, name: str, aliases: Sequence[str] = ()) -> bool:
        """Whether the command `name` (or one of its `aliases`) is to be built in full."""
        return self.words is None or bool(self.words) and self.words[0] in (name, *aliases)

    def placeholder(self, name: str, help: str | None, aliases: Sequence[str] = ()) -> None:
        """A command this line does not run: its name (a choice, for "did you mean") and
        its help line, without a parser (~50 µs each, some forty on every line)."""
        if help is not None:
            self._choices_actions.append(self._ChoicesPseudoAction(name, list(aliases), help))
        stand_in = Placeholder(f"{self._prog_prefix} {name}")
        for word in (name, *aliases):
            self._name_parser_map[word] = stand_in


class NotBuilt(Exception):
    """argparse chose a placeholder after all (an option's value was taken for a command
    word): the CLI builds that command's parsers and parses the line again."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Placeholder:
    """In a parser's choices, the stand-in for a command that is not built
    (`Subcommands.placeholder`)."""

    _actions: Sequence[argparse.Action] = ()

    def __init__(self, prog: str) -> None:
        self.prog = prog

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> NoReturn:
        raise NotBuilt(self.prog.partition(" ")[2])


class Parser(argparse.ArgumentParser):
    """Every parser of the CLI: no abbreviated options, `Formatter`, the global options in
    its help, and errors raised (`ArgumentsError`, `UnknownCommand`) instead of printed:
    the CLI turns them into its one-line errors. `error_status`: the exit status of an
    argument error (1, the anchor's; the dispatch CLI's is 2, spec §31.1), inherited by the
    parser's subcommands."""

    def __init__(self, *args: Any, error_status: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.error_status = error_status
        self.register("action", "parsers", Subcommands)
        if kwargs.get("add_help", True):
            # Taken off the line before parsing (commands/cli.py); listed for help and
            # completion.
            options = self.add_argument_group(GLOBAL_HELP)
            options.add_argument("--json", action="store_true", help="print JSON")
            options.add_argument(
                "--actor", metavar="NAME", help="who is acting, in the events (OCSCHED_ACTOR)"
            )

    _adding = False

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        self._adding = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._adding = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse checks each new argument's metavar with a new formatter, which asks the
        # terminal for its width, importing shutil (~2 ms): none is printed then.
        if self._adding:
            return Formatter(self.prog, width=80)  # (any formatter will do for that check)
        return super()._get_formatter()

    def add_subparsers(self, **kwargs: Any) -> Any:
        action = super().add_subparsers(**kwargs)
        if isinstance(action, Subcommands):
            action.error_status = self.error_status
        return action

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(self, message)

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # Python before 3.12 drops `--` given as an option's own value (`--keep=--`) and
        # hands the command an empty list: it is the text `--`, for the command to judge.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            return self._get_value(action, "--")
        return super()._get_values(action, arg_strings)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in (action.choices or ()):
            raise UnknownCommand(self, value, list(action.choices or ()))
        super()._check_value(action, value)

    @property
    def path(self) -> str:
        """The command words without the program name: `jobs add`."""
        return self.prog.partition(" ")[2]

    def usage_line(self) -> str:
        """The usage as one line, without the program name, as the anchor prints it:
        `Usage: jobs add <json> [--dry-run] …`."""
        text = " ".join(self.format_usage().split())
        root = self.prog.partition(" ")[0]
        return text.replace(f"Usage: {root} ", "Usage: ", 1)


Handler = Callable[[Any, argparse.Namespace], None]


def examples_text(examples: Sequence[str]) -> str | None:
    if not examples:
        return None
    return "Examples:\n" + "\n".join(f"  {line}" for line in examples)


def command(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Handler | str | None,
    *,
    help: str,
    usage: str | None = None,
    description: str | None = None,
    examples: Sequence[str] = (),
    aliases: Sequence[str] = (),
) -> Parser:
    """A command (or subcommand) `name` under `commands` run by `handler(ctx, args)`;
    `usage` (the anchor's, after the command words) is what an argument error shows.
    `handler` "module:function" (a module of `ocsched.commands`) is imported only when
    this command runs, keeping its imports off its sibling commands' path; None: the
    caller sets what runs (the CLI's built-ins)."""
    parser: Parser = commands.add_parser(
        name,
        help=help,
        aliases=list(aliases),
        usage=f"%(prog)s {usage}".rstrip() if usage is not None else None,
        description=description or _sentence(help),
        epilog=examples_text(examples),
    )
    if isinstance(handler, str):
        handler = _imported_when_run(handler)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def lazy_command(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Handler | str,
    *,
    arguments: Callable[[Parser], object],
    help: str,
    aliases: Sequence[str] = (),
    **details: Any,
) -> None:
    """`command(commands, name, handler, help=…, **details)` with its arguments added by
    `arguments(parser)`, built only when the line runs it (or for help and completion);
    else a placeholder: its name and help line (`Subcommands.placeholder`)."""
    if isinstance(commands, Subcommands) and not commands.wants(name, aliases):
        commands.placeholder(name, help, aliases)
    else:
        arguments(command(commands, name, handler, help=help, aliases=aliases, **details))


def _imported_when_run(target: str) -> Handler:
    module_name, _, function_name = target.partition(":")

    def run(ctx: Any, args: argparse.Namespace) -> None:
        getattr(command_module(module_name), function_name)(ctx, args)

    return run


def command_module(name: str) -> Any:
    """`ocsched.commands.<name>`, imported through the import statement's path (not
    importlib.import_module), so `python -X importtime` lists it with its time."""
    return __import__(f"ocsched.commands.{name}", fromlist=["register"])


def group(
    commands: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None = None,
    examples: Sequence[str] = (),
    error_status: int | None = None,
) -> argparse._SubParsersAction:
    """A command with subcommands; returns the action to add them to. Called without a
    subcommand it prints its help (exit 0, as the anchor's usage text). `error_status`
    (default: the parent's) is the exit status of its commands' argument errors."""
    extra: dict[str, Any] = {} if error_status is None else {"error_status": error_status}
    parser: Parser = commands.add_parser(
        name,
        **extra,
        help=help,
        usage="%(prog)s <subcommand> [args]",
        description=description or _sentence(help),
        epilog=examples_text(examples),
    )
    subcommands = parser.add_subparsers(
        title="subcommands", metavar="<subcommand>", prog=parser.prog
    )
    if isinstance(commands, Subcommands) and commands.words is not None:
        subcommands.words = commands.words[1:] if commands.wants(name) else ()
    return subcommands


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class Argv:
    """The dispatch CLI's reading of its flags (spec §31.1), kept until it moves to
    `Parser`."""

    def __init__(self, args: list[str], usage: str) -> None:
        self.args = list(args)
        self.usage = usage

    def loose_option(self, name: str) -> str | Literal[True] | None:
        """The dispatch CLI's reading (spec §31.1): `--name value` or `--name=value`;
        `--name` followed by nothing or by another `--` token is True; the last occurrence
        wins; None when absent. Never a usage error: the command decides."""
        found: str | Literal[True] | None = None
        index = 0
        while index < len(self.args):
            arg = self.args[index]
            if arg.startswith(name + "="):
                found = arg[len(name) + 1 :]
                del self.args[index]
            elif arg == name:
                following = self.args[index + 1 : index + 2]
                found = following[0] if following and not following[0].startswith("--") else True
                del self.args[index : index + 1 + (found is not True)]
            else:
                index += 1
        return found


MAX_WHOLE_NUMBER = 1_000_000_000
"""The largest count, limit or number of seconds a command takes (a billion: no store
holds more rows, and 31 years is past any threshold); a larger one is refused rather than
overflowing SQLite's 64-bit integers or Python's dates."""


def whole_number(text: str, lowest: int = 1, highest: int = MAX_WHOLE_NUMBER) -> int | None:
    """`text` as a whole number in [lowest, highest], written with ASCII digits only (int()
    would also take "٣", "1_000" and " 7 "); None when it is not one."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(highest)):
        return None
    number = int(text)
    return number if lowest <= number <= highest else None


def nearest(word: str, choices: list[str]) -> str | None:
    """The choice closest to a misspelled `word`, quoted, if one is close enough."""
    import difflib

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"'{found[0]}'" if found else None


def unknown_option(word: str, known: list[str]) -> str:
    """The one line for an option no parser knows (`--name` or `--name=value`)."""
    name = word.partition("=")[0]
    guess = nearest(name, known)
    return f"Unknown option: {name}" + (f"; did you mean {guess}?" if guess else "")
