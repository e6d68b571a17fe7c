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
