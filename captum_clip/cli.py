"""Command line: ``captum-clip explain IMAGE --text ... --method ... --out out.png``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from PIL import Image

from .classifier import ZeroShotClassifier
from .loading import load_clip
from .methods import DISPLAY_NAMES, METHODS, build_method, maps_for_targets
from .viz import save_overlay, to_display_images


def _method_names(values: List[str]) -> List[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise SystemExit(f"captum-clip: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    return list(dict.fromkeys(names))


def _open_image(path: str) -> Image.Image:
    try:
        return Image.open(path).convert("RGB")
    except (OSError, ValueError) as error:
        raise SystemExit(f"captum-clip: cannot read image {path}: {error}")


def render(bundle, classifier: ZeroShotClassifier, image: torch.Tensor, queries: List[str], methods: List[str],
           out: str, title: str) -> Path:
    """Maps of every query with every method for one image ``(1, 3, H, W)``, written as an overlay figure."""
    maps = {DISPLAY_NAMES[name]: maps_for_targets(build_method(name, classifier), image, queries).cpu()
            for name in methods}
    with torch.no_grad():
        probabilities = classifier(image).softmax(-1)[0].cpu()
    labels = [f"{query}\n(p={probabilities[classifier.class_index(query)]:.2f})"
              if classifier.class_index(query) is not None else query for query in queries]
    mean, std = bundle.image_mean_std
    path = save_overlay(out, to_display_images(image, mean, std)[0], maps, labels, title=title)
    print(f"wrote {path}")
    return path


def explain(args: argparse.Namespace) -> Path:
    """Explain one image for every query with every method and write the overlay figure."""
    if not args.text:
        raise SystemExit("captum-clip: give at least one query with --text.")
    methods = _method_names(args.method or ["surgery"])
    bundle = load_clip(args.model, pretrained=args.pretrained, device=args.device)
    image = bundle.preprocess(_open_image(args.image)).unsqueeze(0).to(bundle.device)
    classifier = ZeroShotClassifier(bundle, args.text)
    return render(bundle, classifier, image, args.text, methods, args.out, f"{Path(args.image).name} - {bundle.name}")


def demo(args: argparse.Namespace) -> Path:
    """Explain a generated scene of two objects with the shipped scene model (no download needed)."""
    from .datasets import generate_scene, single_object_classnames, to_tensor

    methods = _method_names(args.method or ["surgery", "clip", "gradcam", "ig"])
    bundle = load_clip("shapes", device=args.device)
    scene = generate_scene(args.seed, image_size=bundle.model.visual.image_size[0], n_objects=2)
    image = to_tensor(scene.image[None]).to(bundle.device)
    # The whole colour x shape vocabulary is the label set, as in CLIP Surgery's multi-label mode.
    classifier = ZeroShotClassifier(bundle, single_object_classnames())
    return render(bundle, classifier, image, scene.objects, methods, args.out,
                  f"scene {args.seed}: {scene.caption} - shipped 'shapes' model")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captum-clip", description="Explain CLIP models with Captum-native methods.")
    commands = parser.add_subparsers(dest="command", required=True)

    explain_parser = commands.add_parser("explain", help="saliency maps of text queries on an image, as a figure")
    explain_parser.add_argument("image", help="image file (any format PIL reads)")
    explain_parser.add_argument("--text", action="append", default=[], help="a query; repeat for several")
    explain_parser.add_argument("--method", action="append", default=[],
                                help=f"one of {', '.join(METHODS)}; repeat or comma-separate (default: surgery)")
    explain_parser.add_argument("--model", default="shapes", help="open_clip model name or config JSON")
    explain_parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag or checkpoint file")
    explain_parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cpu)")
    explain_parser.add_argument("--out", default="explanation.png", help="output figure (.png, .pdf, .svg)")
    explain_parser.set_defaults(run=explain)

    demo_parser = commands.add_parser("demo", help="explain a generated scene with the shipped model, offline")
    demo_parser.add_argument("--seed", type=int, default=7, help="scene seed")
    demo_parser.add_argument("--method", action="append", default=[],
                             help="methods to compare (default: surgery, clip, gradcam, ig)")
    demo_parser.add_argument("--device", default=None)
    demo_parser.add_argument("--out", default="demo.png")
    demo_parser.set_defaults(run=demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
