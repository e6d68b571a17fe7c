"""How far reduced precision moves every method's maps from fp32's, on the shipped model's held-out scenes.

Every registered method explains N held-out single-object scenes (target: the scene's object) once in fp32 and
once in each reduced precision, i.e. with the bundle's ``precision`` set: autocast around every forward pass,
the weights kept in fp32. The same weights and images both times. Per method and precision:

* **max |diff|**: the largest ``|map - fp32 map|`` of any pixel of any image, relative to that image's largest
  ``|fp32 map|`` (min-max maps have range 1; ``tests/test_benchmark_scripts.py`` bounds this and the next two);
* **mean |diff|**: the mean over pixels and images of the same relative difference;
* **min r**: the lowest per-image Pearson correlation between the two maps, and **r < 0.99**: how many images
  fall below 0.99;
* **same peak**: images whose highest pixel lies inside the object either way, when it does in fp32 (the
  pointing game's hit, the decision a localisation metric takes from a map).

    python benchmarks/bench_precision.py [--devices cpu,cuda] [--precisions bf16,fp16] [--images 8]
        [--out benchmarks/results_precision.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform

import open_clip
import torch

from _tables import publish
from _timing import devices, precisions as parse_precisions

from captum_clip import METHODS, ZeroShotClassifier, build_method, load_clip
from captum_clip.shipped import generate_scene, single_object_classnames, to_tensor
from captum_clip.shipped.zero_shot import HELD_OUT_SEED_START, ZERO_SHOT_TEMPLATES


def scenes(bundle, n: int):
    """``(images, targets, object masks)`` of n held-out single-object scenes at the model's input size."""
    size = bundle.input_size[0]
    drawn = [generate_scene(HELD_OUT_SEED_START + i, image_size=size, n_objects=1) for i in range(n)]
    images = to_tensor([s.image for s in drawn], *bundle.image_mean_std)
    masks = torch.stack([torch.as_tensor(s.masks[0]) for s in drawn]).bool()
    return images, [s.objects[0] for s in drawn], masks


def compare(maps: torch.Tensor, reference: torch.Tensor, masks: torch.Tensor) -> dict:
    """The four measures of the docstring for ``(N, 1, H, W)`` maps against the fp32 ones."""
    maps, reference = maps.flatten(1).double(), reference.flatten(1).double()
    scale = reference.abs().amax(1, keepdim=True).clamp_min(1e-12)
    difference = (maps - reference).abs() / scale
    centred = [m - m.mean(1, keepdim=True) for m in (maps, reference)]
    r = (centred[0] * centred[1]).sum(1) / (centred[0].norm(dim=1) * centred[1].norm(dim=1)).clamp_min(1e-12)
    inside = masks.flatten(1)
    hit = [inside.gather(1, m.argmax(1, keepdim=True))[:, 0] for m in (maps, reference)]
    return {"max": float(difference.max()), "mean": float(difference.mean()), "r": float(r.min()),
            "low": int((r < 0.99).sum()), "peak": f"{int((hit[0] & hit[1]).sum())}/{int(hit[1].sum())}"}


def run(device: torch.device, precisions, n: int) -> list:
    fp32 = load_clip("shapes", device=device)
    images, objects, masks = scenes(fp32, n)
    images = images.to(device)
    classifiers = {precision: ZeroShotClassifier(dataclasses.replace(fp32, precision=precision),
                                                 single_object_classnames(), templates=list(ZERO_SHOT_TEMPLATES))
                   for precision in ("fp32", *precisions)}
    target = [classifiers["fp32"].class_index(o) for o in objects]
    rows = []
    for name in sorted(METHODS):
        maps = {}
        for precision, classifier in classifiers.items():
            maps[precision] = build_method(name, classifier).attribute(images, target=target).cpu()
            if not torch.isfinite(maps[precision]).all():
                raise FloatingPointError(f"{name} gave a non-finite map under {precision}")
        rows += [(name, precision, compare(maps[precision], maps["fp32"], masks)) for precision in precisions]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--precisions", default="bf16", help="comma-separated reduced precisions: bf16, fp16")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    args = parser.parse_args()
    precisions = parse_precisions(args.precisions)
    lines = [f"torch {torch.__version__}, open_clip {open_clip.__version__}, "
             f"{platform.processor() or platform.machine()}; the shipped model, {args.images} held-out single-object "
             "scenes, each method's defaults, target: the scene's object", ""]
    for device, label in devices(args.devices):
        lines += [f"### {label}", "", "| method | precision | max \\|diff\\| | mean \\|diff\\| | min r | r < 0.99 | "
                  "same peak |", "|---|---|---:|---:|---:|---:|---:|"]
        rows = run(device, precisions, args.images)
        lines += [f"| {name} | {precision} | {m['max']:.4f} | {m['mean']:.5f} | {m['r']:.4f} | "
                  f"{m['low']}/{args.images} | {m['peak']} |" for name, precision, m in rows]
        lines.append("")
    publish("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
