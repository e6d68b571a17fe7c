"""Throughput of ``captum-clip evaluate``: one protocol on generated scenes with four methods, images per second.

The issue's target is minutes, not hours, for 1,000 scenes with 4 methods on a GPU. On a CPU the same script
runs fewer scenes. Each method's time covers its maps and the protocol's scoring, measured in one run.

    python benchmarks/bench_evaluate.py [--n 1000] [--devices cpu,cuda] [--batch-size 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from _timing import devices

from captum_clip import load_clip
from captum_clip.evaluation.datasets import read_dataset
from captum_clip.evaluation.harness import EvaluationConfig, run_evaluation

METHODS = ["surgery", "clip", "gradcam", "ig:n_steps=16"]


def run(device: torch.device, n: int, batch_size: int, protocol: str, precision: str) -> dict:
    bundle = load_clip("shapes")
    dataset = read_dataset("shapes", n=n)
    config = EvaluationConfig(protocol, "shapes", None, "shapes", None, METHODS, batch_size=batch_size,
                              precision=precision, sanity=False)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        results = run_evaluation(config, dataset, bundle, out, device=str(device), progress=False)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--protocol", default="pointing")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    processor = platform.processor() or platform.machine()
    command = (f"python benchmarks/bench_evaluate.py --n {args.n} --devices {args.devices} --batch-size "
               f"{args.batch_size} --precision {args.precision}")
    lines = [f"# `captum-clip evaluate {args.protocol}`: {args.n} generated scenes, 4 methods", "",
             f"`{command}` (torch {torch.__version__}, {processor}, {torch.get_num_threads()} threads). Shipped "
             "64-px scene model; random-weights rows off. images/s per method = scenes / that method's seconds "
             "(maps and scoring).", "",
             "| device | method | images/s | seconds |", "|---|---|---:|---:|"]
    for device, label in devices(args.devices):
        measured = run(device, args.n, args.batch_size, args.protocol, args.precision)
        timing = measured["results"]["timing"]
        for method in METHODS:
            lines.append(f"| {label} | {method} | {timing['images_per_second'][method]:.1f} | "
                         f"{timing['seconds'][method]:.1f} |")
        lines.append(f"| {label} | whole run (4 methods, loading and scoring) | "
                     f"{args.n / measured['seconds']:.1f} | {measured['seconds']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
