"""How a benchmark script publishes its markdown: printed, and written with the command that made it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional


def publish(table: str, out: Optional[str]) -> None:
    """Print ``table``; with ``out``, also write it there followed by the command line that reproduces it."""
    print(table)
    if out:
        command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
        Path(out).write_text(f"{table}\nCommand:\n\n    {command}\n")
