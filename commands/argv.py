"""Taking flags and options out of an argument list, the way the anchor CLI reads them."""

from __future__ import annotations

from typing import Literal

from .output import UsageError


class Argv:
    def __init__(self, args: list[str], usage: str) -> None:
        self.args = list(args)
        self.usage = usage

    def flag(self, name: str) -> bool:
        if name in self.args:
            self.args.remove(name)
            return True
        return False

    def option(self, name: str) -> str | None:
        """`--name value` or `--name=value`; a missing value is a usage error."""
        for index, arg in enumerate(self.args):
            if arg == name:
                if index + 1 >= len(self.args):
                    raise UsageError(f"{name} needs a value. {self.usage}")
                value = self.args[index + 1]
                del self.args[index : index + 2]
                return value
            if arg.startswith(name + "="):
                del self.args[index]
                return arg[len(name) + 1 :]
        return None

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

    def positionals(self, minimum: int, maximum: int | None = None) -> list[str]:
        """The remaining arguments; unknown options and a wrong count are usage errors."""
        for arg in self.args:
            if arg.startswith("--") and len(arg) > 2:
                raise UsageError(f"Unknown option: {arg}. {self.usage}")
        count = len(self.args)
        if count < minimum or (maximum is not None and count > maximum):
            raise UsageError(self.usage)
        return self.args


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
