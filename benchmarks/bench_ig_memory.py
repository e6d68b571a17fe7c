"""Peak memory of ``captum-clip explain --method ig`` on a ViT-B-16 with several queries, on the CPU.

Each run is a fresh ``captum-clip explain`` process; its peak resident set size is the kernel's ``ru_maxrss`` of
that child. The same command with ``--method surgery`` (one forward pass) shows what loading the model and drawing
the figure cost by themselves, so the difference is what Integrated Gradients adds. IG is run with its default
path batch (``--ig-batch-size 16``, the bound on how many path points share one forward-backward pass, counted
over all the queries' inputs) and, to show what that bound buys, with ``--ig-batch-size`` equal to the steps.

ViT-B-16 has random weights here (no pretrained weights offline); memory does not depend on the weights.

    python benchmarks/bench_ig_memory.py [--model ViT-B-16] [--queries 3] [--steps 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from _tables import publish

from captum_clip.shipped import generate_scene

GIB = 1024 ** 3


def peak_of(command: list[str]) -> tuple[float, float]:
    """(peak RSS in GiB, seconds) of one child process running ``command``."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    # ru_maxrss of the children is the largest of any waited child, so each run needs its own parent: see main().
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / GIB, seconds


def measure_one(argv: list[str]) -> None:
    """Child mode: run one command and print its peak and seconds (keeps each ru_maxrss to one process)."""
    peak, seconds = peak_of(argv)
    print(f"{peak:.6f} {seconds:.3f}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure_one(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()

    queries = ["a circle", "a square", "a triangle", "a star", "a ring"][:args.queries]
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "scene.png"
        Image.fromarray(generate_scene(0, image_size=224, n_objects=2).image).save(image)
        base = [sys.executable, "-m", "captum_clip.cli", "explain", str(image), "--model", args.model,
                "--device", "cpu", "--out", str(Path(folder) / "figure.png")]
        for query in queries:
            base += ["--text", query]
        runs = [
            ("surgery (one forward pass)", ["--method", "surgery"]),
            (f"ig, {args.steps} steps, --ig-batch-size 16 (default)",
             ["--method", "ig", "--ig-steps", str(args.steps), "--ig-batch-size", "16"]),
            (f"ig, {args.steps} steps, --ig-batch-size {args.steps}", ["--method", "ig", "--ig-steps", str(args.steps),
                                                            "--ig-batch-size", str(args.steps)]),
        ]
        rows = []
        for label, extra in runs:
            output = subprocess.run([sys.executable, __file__, "--measure", *base, *extra], check=True,
                                    capture_output=True, text=True).stdout.split()
            rows.append((label, float(output[0]), float(output[1])))

    surgery_peak = rows[0][1]
    lines = [f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads; "
             f"`captum-clip explain` on one 224 px image, model {args.model} "
             f"({'the shipped weights' if args.model == 'shapes' else 'random weights'}), "
             f"{len(queries)} quer{'y' if len(queries) == 1 else 'ies'}, CPU", "",
             "| run | peak RSS (GiB) | above surgery (GiB) | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {peak:.2f} | {peak - surgery_peak:+.2f} | {seconds:.1f} |"
              for label, peak, seconds in rows]
    table = "\n".join(lines) + "\n"
    publish(table, args.out)


if __name__ == "__main__":
    main()
