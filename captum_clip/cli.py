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
from .methods import DISPLAY_NAMES, METHODS, build_method, maps_per_class
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


def explain(args: argparse.Namespace) -> Path:
    """Explain one image for every query with every method and write the overlay figure."""
    if not args.text:
        raise SystemExit("captum-clip: give at least one query with --text.")
    bundle = load_clip(args.model, pretrained=args.pretrained, device=args.device)
    image = bundle.preprocess(_open_image(args.image)).unsqueeze(0).to(bundle.device)
    classifier = ZeroShotClassifier(bundle, args.text)
    maps = {}
    for name in _method_names(args.method):
        method = build_method(name, classifier)
        maps[DISPLAY_NAMES[name]] = maps_per_class(method, image).cpu()
    mean, std = bundle.image_mean_std
    with torch.no_grad():
        probabilities = classifier(image).softmax(-1)[0].cpu()
    queries = [f"{text}\n(p={p:.2f})" for text, p in zip(args.text, probabilities.tolist())]
    path = save_overlay(args.out, to_display_images(image, mean, std)[0], maps, queries,
                        title=f"{Path(args.image).name} - {bundle.name}")
    print(f"wrote {path}")
    return path


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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "explain" and not args.method:
        args.method = ["surgery"]
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
