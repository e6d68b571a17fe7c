"""The ``captum-clip`` command line: ``explain``, ``benchmark``, ``mutual`` and the ConVis commands."""

from .main import main

__all__ = ["main"]
