"""Seconds per image of a vanilla image-encoder forward, by the number of images per pass, measured in one run.

ConVis's windows and Mutual Knowledge's prompts are many images that a method encodes of its own, so it picks
the pass size (``VisionTower.images_per_pass``): on a CPU, about ``CPU_PASS_TOKENS`` tokens per pass. This script
is the measurement behind that choice. For each model, N random images are encoded in passes of each size in
turn within every round; a cell is the median over rounds of that size's time relative to one pass of all N
(below 1: faster than one large pass). The pass size the tower picks is marked.

    python benchmarks/bench_encoder_passes.py [--models shapes,ViT-B-32,ViT-B-16] [--images 96,64,16]
        [--rounds 5] [--threads 1,2] [--devices cpu] [--out benchmarks/results_encoder_passes.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import open_clip
import torch

from _tables import publish
from _timing import clock, devices

from captum_clip import load_clip
from captum_clip.core.towers import CPU_PASS_TOKENS, vision_tower


def pass_sizes(n_images: int, picked: int) -> list:
    """Powers of two from ``n_images // 32`` up, ``n_images`` itself and ``picked`` (at most N), ascending."""
    sizes = {n_images, picked}
    size = 1
    while size < n_images:
        sizes.add(size)
        size *= 2
    return sorted(s for s in sizes if s >= max(1, n_images // 32))


def measure(model_name: str, n_images: int, rounds: int, device: torch.device):
    bundle = load_clip(model_name, device=device)
    tower = vision_tower(bundle.model)
    height, width = tower.native_image_size
    picked = min(tower.images_per_pass((height, width), device), n_images)  # a pass cannot hold more than N
    images = torch.randn(n_images, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    sizes = pass_sizes(n_images, picked)

    def encode_in_passes(size):
        with torch.no_grad():
            for start in range(0, n_images, size):
                tower.encode(images[start:start + size])

    for size in sizes:
        encode_in_passes(size)  # warm-up
    times = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            times[size].append(clock(lambda size=size: encode_in_passes(size), device))
    relative = {size: statistics.median(t / full for t, full in zip(times[size], times[n_images])) for size in sizes}
    per_image = {size: statistics.median(times[size]) / n_images for size in sizes}
    return tower.tokens_per_image((height, width)), picked, sizes, relative, per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="shapes,ViT-B-32,ViT-B-16",
                        help="comma-separated: 'shapes', open_clip names (random weights) or config JSONs")
    parser.add_argument("--images", default="96,64,16", help="images per model (N), comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default=None, help="torch CPU threads, or a comma-separated list of counts")
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()
    models = args.models.split(",")
    counts = [int(n) for n in args.images.split(",")]
    if len(counts) != len(models):
        parser.error(f"--images gives {len(counts)} counts for {len(models)} models")
    thread_counts = [int(n) for n in args.threads.split(",")] if args.threads else [None]
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    lines = [f"torch {torch.__version__}, open_clip {open_clip.__version__}, {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs{load}; CPU_PASS_TOKENS = {CPU_PASS_TOKENS}; open_clip models with random "
             "weights, `shapes` the shipped one; random images at each model's input size", ""]
    for device, device_label in devices(args.devices):
        for threads in (thread_counts if device.type == "cpu" else [None]):
            if threads:
                torch.set_num_threads(threads)
            n = torch.get_num_threads()
            label = f"{device_label}, {n} torch thread{'s' * (n > 1)}" if device.type == "cpu" else device_label
            lines += [f"### time per image relative to one pass of all N, {label}", "",
                      "| model | tokens per image | N | images per pass: relative time (ms per image) |",
                      "|---|---:|---:|---|"]
            for model_name, n_images in zip(models, counts):
                tokens, picked, sizes, relative, per_image = measure(model_name, n_images, args.rounds, device)
                cells = ", ".join(
                    (f"**{size}: {relative[size]:.2f}** ({per_image[size] * 1e3:.1f})" if size == picked
                     else f"{size}: {relative[size]:.2f} ({per_image[size] * 1e3:.1f})") for size in sizes)
                lines.append(f"| `{model_name}` | {tokens} | {n_images} | {cells} |")
            lines += ["", f"(bold: the tower's pick for this device; medians of {args.rounds} rounds after a warm-up, "
                      "every size timed in turn within a round)", ""]
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
