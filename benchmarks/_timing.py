"""Wall-clock timing shared by the benchmark scripts (CUDA work is synchronised before each reading)."""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Callable, Iterator, List, Tuple

import torch

from captum_clip.core.precision import check_precision


def devices(spec: str) -> Iterator[Tuple[torch.device, str]]:
    """``(device, label)`` for each name of a comma-separated ``spec`` ("cpu,cuda"), skipping CUDA when absent."""
    for name in spec.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            continue
        device = torch.device(name)
        yield device, torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def precisions(spec: str) -> List[str]:
    """The precisions of a comma-separated ``spec`` ("fp32,bf16"), all checked before anything runs (a typo
    should not surface after the first precision's tables have taken minutes)."""
    return [check_precision(name) for name in spec.split(",")]


def device_precisions(devices_spec: str, precisions_spec: str) -> Iterator[Tuple[torch.device, str, str]]:
    """``(device, label, precision)`` for every device of :func:`devices` and precision of :func:`precisions`."""
    for (device, label), precision in itertools.product(devices(devices_spec), precisions(precisions_spec)):
        yield device, label, precision


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(function: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``function()`` takes, queued GPU work included."""
    sync(device)
    start = time.perf_counter()
    function()
    sync(device)
    return time.perf_counter() - start


def median_clock(function: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls after one warm-up call."""
    clock(function, device)
    return statistics.median(clock(function, device) for _ in range(repeats))


def paired(function: Callable[[], object], reference: Callable[[], object], repeats: int,
           device: torch.device) -> Tuple[float, float]:
    """Median seconds of ``function`` and median of its ratio to ``reference`` timed right beside it.

    Pairing each run with a reference run keeps the ratio honest when other work
    shares the machine and the absolute speed drifts.
    """
    seconds, ratios = [], []
    for _ in range(repeats):
        base = clock(reference, device)
        took = clock(function, device)
        seconds.append(took)
        ratios.append(took / base)
    return statistics.median(seconds), statistics.median(ratios)
