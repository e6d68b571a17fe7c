"""argparse value types shared by every captum-clip subcommand."""

from __future__ import annotations

import argparse


def positive_int(value: str) -> int:
    """An integer of at least 1 (counts, sizes, steps), refused by argparse with a message otherwise."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer (1 or more), got {number}")
    return number


def non_negative_int(value: str) -> int:
    """An integer of at least 0 (a count that may be none)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer (0 or more), got {number}")
    return number


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in ``--help``: appended as "(default: X)" unless the help text already says what
    the default is (an option whose default is None or off describes it in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # ``is`` and not ``in``: a default of 0 is a value to show, though 0 == False.
        if ("default" in text or not action.option_strings or action.default is None or action.default is False
                or action.default == [] or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def command_parser(**kwargs) -> argparse.ArgumentParser:
    """The parser class of every subcommand (``add_subparsers(parser_class=...)``): defaults shown in help."""
    kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
    return argparse.ArgumentParser(**kwargs)
