"""argparse value types shared by every captum-clip subcommand."""

from __future__ import annotations

import argparse


def _int_at_least(minimum: int, kind: str):
    """An argparse type: an integer of at least ``minimum``, refused by argparse with a message otherwise."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer ({minimum} or more), got {number}")
        return number

    parse.__name__ = f"{kind.replace('-', '_')}_int"  # argparse names the type in its messages
    return parse


#: An integer of at least 1 (counts, sizes, steps).
positive_int = _int_at_least(1, "positive")
#: An integer of at least 0 (a count that may be none).
non_negative_int = _int_at_least(0, "non-negative")


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` (auto: CUDA where present) and ``--precision`` of a command that runs a model."""
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA where present, else CPU; default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help="autocast precision of the forward passes (weights stay fp32)")


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
