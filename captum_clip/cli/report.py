"""``captum-clip report OUT_DIR``: the HTML comparison page of an ``evaluate`` or ``benchmark`` output folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def write_and_say(out_dir) -> Path:
    """Write ``OUT_DIR/report.html`` and print its path (shared by ``report``, ``evaluate --report`` and
    ``benchmark --report``).

    Raises:
        SystemExit: a folder without results.
    """
    from ..evaluation.html_report import write_report

    try:
        path = write_report(out_dir)
    except FileNotFoundError as error:
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
