"""``captum-clip report OUT_DIR``: the HTML comparison page of an ``evaluate`` or ``benchmark`` output folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from .argtypes import non_negative_int

#: Images whose maps ``--report`` keeps when ``--examples`` is not given.
REPORT_EXAMPLES = 8


def add_report_arguments(parser: argparse.ArgumentParser, unit: str = "images") -> None:
    """``--report`` and ``--examples N`` of a command that writes results (evaluate, benchmark)."""
    parser.add_argument("--report", action="store_true",
                        help=f"also write OUT_DIR/report.html (captum-clip report), with the maps of --examples {unit}")
    parser.add_argument("--examples", type=non_negative_int, default=None,
                        help=f"keep every method's maps of the first N {unit} in OUT_DIR/examples/ for the report "
                             f"(default {REPORT_EXAMPLES} with --report, else 0)")


def examples_to_keep(args: argparse.Namespace) -> int:
    """How many images' maps the run keeps: ``--examples``, else :data:`REPORT_EXAMPLES` with ``--report``."""
    return args.examples if args.examples is not None else (REPORT_EXAMPLES if args.report else 0)


def write_and_say(out_dir) -> Path:
    """Write ``OUT_DIR/report.html`` and print its path (shared by ``report``, ``evaluate --report`` and
    ``benchmark --report``).

    Raises:
        SystemExit: a folder without results, or with files it cannot read.
    """
    from ..evaluation.html_report import write_report

    try:
        path = write_report(out_dir)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"captum-clip: report: {error}") from None
    print(f"wrote {path}")
    return path


def report(args: argparse.Namespace) -> Path:
    return write_and_say(args.out_dir)


def add_report_command(commands) -> None:
    parser = commands.add_parser("report", help="one self-contained HTML page (table, chart, maps, command) from "
                                                "the folder of captum-clip evaluate or benchmark")
    parser.add_argument("out_dir", help="the --out-dir of the run")
    parser.set_defaults(run=report)
