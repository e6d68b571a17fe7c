"""Command line: ``captum-clip explain IMAGE --text ... --method ... --out out.png``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
from PIL import Image

from .argtypes import add_device_arguments, command_parser, positive_int
from .report import add_report_arguments, examples_to_keep
from ..core.classifier import ZeroShotClassifier
from ..core.loading import load_clip
from ..methods import DISPLAY_NAMES, METHODS, build_method, maps_for_targets
from ..viz import save_overlay, to_display_images


def _method_names(values: List[str]) -> List[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise SystemExit(f"captum-clip: --method is empty; name at least one of {', '.join(METHODS)}.")
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise SystemExit(f"captum-clip: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    return list(dict.fromkeys(names))


def _open_image(path: str) -> Image.Image:
    try:
        return Image.open(path).convert("RGB")
    except (OSError, ValueError) as error:
        raise SystemExit(f"captum-clip: cannot read image {path}: {error}")


def _load(args: argparse.Namespace):
    """The bundle named by ``--model`` / ``--pretrained``, with errors that say which flag to change."""
    if args.model == "shapes" and not getattr(args, "model_given", True):
        print("captum-clip: no --model given: using the shipped 'shapes' scene model (pass --model NAME "
              "--pretrained FILE for another)", file=sys.stderr)
    try:
        return load_clip(args.model, pretrained=args.pretrained, device=args.device,
                         precision=getattr(args, "precision", "fp32"))
    except (ValueError, FileNotFoundError) as error:
        hint = ""
        if args.pretrained is not None and args.model == "shapes":
            hint = (" --model defaults to the shipped 'shapes' model; pass --model with the architecture the "
                    "checkpoint was trained for (e.g. --model ViT-B-16).")
        raise SystemExit(f"captum-clip: {error}{hint}") from None


def _panel_labels(classifier: ZeroShotClassifier, image: torch.Tensor, queries: List[str], built: dict):
    """``(column titles, {display name: captions})`` of the overlay figure; the rule is in :func:`render`."""
    convis = built.get("convis")
    if convis is not None:
        from ..convis.targets import is_synset_name

        vocabulary = convis.vocabulary
        glosses = vocabulary.texts("definition")
        concepts = convis.target_concepts(list(queries))
        # "query -> concept" only where ConVis resolved the query to another synset of its vocabulary.
        described = [(query if concept == query else f"{query} → {concept}") + "\n"
                     + glosses[vocabulary.index(concept)] for query, concept in zip(queries, concepts)]
        if len(built) == 1 or all(is_synset_name(query) for query in queries):
            return described, {}
        notes = {DISPLAY_NAMES["convis"]: [text.replace("\n", ": ", 1) for text in described]}
    else:
        notes = {}
    with torch.no_grad():
        probabilities = classifier(image).softmax(-1)[0].cpu()
    titles = [f"{query}\n(p={probabilities[classifier.class_index(query)]:.2f})"
              if classifier.class_index(query) is not None else query for query in queries]
    return titles, notes


def render(bundle, classifier: ZeroShotClassifier, image: torch.Tensor, queries: List[str], methods: List[str],
           out: str, title: str, attribute_kwargs: Optional[dict] = None, shared_scale: bool = False) -> Path:
    """Maps of every query with every method for one image ``(1, 3, H, W)``, written as an overlay figure.

    Each method's display comes from its class: ``signed_maps`` (a symmetric, diverging scale) and
    ``display_outlier_perc`` (Captum's outlier clipping; 2 % for the gradient methods, none for the similarity
    maps, whose own range is the picture).

    Column titles are shared by all rows. A query that is a class of ``classifier`` is titled with its zero-shot
    probability ``(p=...)``. ConVis explains WordNet concepts, for which that softmax over prompts such as "a photo
    of dog.n.01." means nothing, so where ConVis is the only method, or every query is a synset name, the titles
    are the concepts with their WordNet glosses instead (and no probability). Otherwise (ConVis beside other
    methods on class-name queries) the titles stay the queries and the ConVis row says under each panel which
    concept it explained, with its gloss.

    Args:
        attribute_kwargs: per method name, extra ``attribute()`` options (e.g. IG's ``n_steps``).
        shared_scale: one colour range per method row (see :func:`~captum_clip.viz.overlay_figure`).

    Returns:
        The path written.
    """
    attribute_kwargs = attribute_kwargs or {}
    built = {name: build_method(name, classifier) for name in methods}
    maps = {DISPLAY_NAMES[name]: maps_for_targets(method, image, queries, **attribute_kwargs.get(name, {})).cpu()
            for name, method in built.items()}
    labels, notes = _panel_labels(classifier, image, list(queries), built)
    mean, std = bundle.image_mean_std
    path = save_overlay(out, to_display_images(image, mean, std)[0], maps, labels, title=title,
                        signed={DISPLAY_NAMES[name] for name, method in built.items() if method.signed_maps},
                        outlier_perc={DISPLAY_NAMES[name]: method.display_outlier_perc
                                      for name, method in built.items()},
                        shared_scale=shared_scale, panel_notes=notes)
    print(f"wrote {path}")
    return path


def _mutual_options(value: Optional[str], classifier: ZeroShotClassifier) -> dict:
    """``--descriptors``: None (the registry's default), "wordnet", "shapes" or a ``{class: [descriptors]}`` JSON."""
    from ..mutual import load_descriptor_bank, wordnet_descriptor_bank
    from ..shipped.presets import SCENE_BANK_U, scene_descriptor_bank

    if value is None:
        return {}
    if value == "wordnet":
        return {"descriptors": wordnet_descriptor_bank(classifier.classnames)}
    if value == "shapes":
        # u = the descriptors a class has in the scene bank (u = 50 would make all 48 "mutual").
        return {"descriptors": scene_descriptor_bank(), "u": SCENE_BANK_U}
    try:
        return {"descriptors": load_descriptor_bank(value)}
    except ValueError as error:
        raise SystemExit(f"captum-clip: {error}")


def render_mutual(bundle, classifier: ZeroShotClassifier, image: torch.Tensor, out: str, title: str,
                  descriptors: Optional[str] = None) -> Path:
    """The Mutual Knowledge concept figure of one image ``(1, 3, H, W)`` for its zero-shot prediction."""
    from ..mutual import save_concept_figure

    method = build_method("mutual", classifier, **_mutual_options(descriptors, classifier))
    explanation = method.explain(image)[0]
    mean, std = bundle.image_mean_std
    path = save_concept_figure(out, to_display_images(image, mean, std)[0], explanation,
                               title=f"{title}\npredicted {explanation.target_name!r}: MI {explanation.mi:.2f}, "
                                     f"AUC {explanation.auc:.2f}")
    print(f"wrote {path}")
    return path


def _check_convis_queries(classifier: ZeroShotClassifier, queries: List[str]) -> None:
    """ConVis queries are WordNet noun synsets ("dog.n.01"); say which one is not before any map is drawn."""
    method = build_method("convis", classifier)
    try:
        method.target_concepts(list(queries))
    except ValueError as error:
        raise SystemExit(f"captum-clip: convis: {error}")


def explain(args: argparse.Namespace) -> Path:
    """Explain one image for every query with every method and write the overlay figure.

    ``mutual`` explains the zero-shot prediction over the ``--text`` classes with its own concept figure: at
    ``--out`` when it is the only method, otherwise beside the overlay as ``<out stem>_mutual<suffix>``.
    """
    if not args.text:
        raise SystemExit("captum-clip: give at least one query with --text.")
    methods = _method_names(args.method or ["surgery"])
    bundle = _load(args)
    image = bundle.preprocess(_open_image(args.image)).unsqueeze(0).to(bundle.device)
    classifier = ZeroShotClassifier(bundle, args.text)
    if "convis" in methods:
        _check_convis_queries(classifier, args.text)
    title = f"{Path(args.image).name} - {bundle.name}"
    overlay_methods = [name for name in methods if name != "mutual"]
    path = None
    if overlay_methods:
        ig = {"ig": {"n_steps": args.ig_steps, "internal_batch_size": args.ig_batch_size}}
        path = render(bundle, classifier, image, args.text, overlay_methods, args.out, title, ig,
                      shared_scale=args.shared_scale)
    if "mutual" in methods:
        out = Path(args.out)
        if overlay_methods:
            out = out.with_name(f"{out.stem}_mutual{out.suffix}")
        path = render_mutual(bundle, classifier, image, str(out), title, args.descriptors)
    return path


def demo(args: argparse.Namespace) -> Path:
    """Explain a generated scene of two objects with the shipped scene model (no download needed)."""
    from ..shipped import generate_scene, single_object_classnames, to_tensor

    methods = _method_names(args.method or ["surgery", "clip", "gradcam", "ig"])
    bundle = load_clip("shapes", device=args.device, precision=args.precision)
    scene = generate_scene(args.seed, image_size=bundle.input_size[0], n_objects=2)
    image = to_tensor(scene.image[None]).to(bundle.device)
    # The whole colour x shape vocabulary is the label set, as in CLIP Surgery's multi-label mode.
    classifier = ZeroShotClassifier(bundle, single_object_classnames())
    return render(bundle, classifier, image, scene.objects, methods, args.out,
                  f"scene {args.seed}: {scene.caption} - shipped 'shapes' model", shared_scale=args.shared_scale)


def benchmark(args: argparse.Namespace) -> Path:
    """Methods x metrics through Quantus on held-out generated scenes; writes markdown, CSV and a bar chart."""
    from ..shipped import single_object_classnames
    from ..evaluation.benchmark import (DEFAULT_METHODS, DEFAULT_METRICS, RANDOMISATION, parse_method_spec,
                                        run_benchmark, shapes_scenes, write_reports)
    from ..evaluation.records import collected_warnings, say_warnings

    if args.dataset != "shapes":
        raise SystemExit(f"captum-clip: unknown dataset {args.dataset!r}; available: shapes.")
    methods = [m.strip() for m in ",".join(args.methods or DEFAULT_METHODS).split(",") if m.strip()]
    try:
        names = [parse_method_spec(m)[0] for m in methods]
    except ValueError as error:
        raise SystemExit(f"captum-clip: {error}") from None
    unknown = [m for m in names if m not in METHODS and m != "random"]
    if unknown:
        raise SystemExit(f"captum-clip: unknown method {unknown[0]!r}; choose from {', '.join([*METHODS, 'random'])}.")
    metrics = [m.strip() for m in ",".join(args.metrics or DEFAULT_METRICS).split(",") if m.strip()]
    if args.mprt:
        metrics += [m for m in RANDOMISATION if m not in metrics]
    bundle = _load(args)
    classifier = ZeroShotClassifier(bundle, single_object_classnames())
    data = shapes_scenes(classifier, args.n, seed=args.seed)
    try:
        with collected_warnings() as caught:
            rows = run_benchmark(classifier, data, methods, metrics, device=str(bundle.device),
                                 batch_size=args.batch_size, mprt_samples=args.mprt_samples, ig_steps=args.ig_steps,
                                 random_weights=not args.no_random_weights, examples=examples_to_keep(args),
                                 examples_dir=args.out_dir)
    except ValueError as error:
        raise SystemExit(f"captum-clip: benchmark: {error}") from None
    if not rows:
        raise SystemExit(f"captum-clip: benchmark: no method scores any of the metrics {', '.join(metrics)} (the "
                         f"concept metrics score mutual only); nothing was written.")
    mprt = f"MPRT on {min(args.mprt_samples, args.n)} scenes; " if "MPRT" in metrics else ""
    title = (f"{args.n} held-out scenes (seeds {args.seed}..{args.seed + args.n - 1}), model {bundle.name}, "
             f"query = first object; {mprt}mean ± standard error")
    paths = write_reports(rows, args.out_dir, title, warnings=caught)
    say_warnings(caught, paths["json"])
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.report:
        from .report import write_and_say

        write_and_say(args.out_dir)
    return paths["md"]


def _add_shared_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shared-scale", action="store_true",
                        help="one colour range per method over all its queries, so their maps compare "
                             "(default: off, each panel scaled alone)")


def _version() -> str:
    import open_clip

    from .. import __version__

    return f"captum-clip {__version__} (torch {torch.__version__}, open_clip {open_clip.__version__})"


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(prog="captum-clip", description="Explain CLIP models with Captum-native methods.")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True, parser_class=command_parser)

    explain_parser = commands.add_parser("explain", help="saliency maps of text queries on an image, as a figure")
    explain_parser.add_argument("image", help="image file (any format PIL reads)")
    explain_parser.add_argument("--text", action="append", default=[],
                                help="a query; repeat for several (convis: a WordNet noun synset such as dog.n.01); "
                                     "no default: at least one is needed")
    explain_parser.add_argument("--method", action="append", default=[],
                                help=f"one of {', '.join(METHODS)}; repeat or comma-separate (default: surgery)")
    explain_parser.add_argument("--model", default=None,
                                help="open_clip model name or config JSON (default: the shipped 'shapes' model)")
    explain_parser.add_argument("--pretrained", default=None, help="open_clip pretrained tag or checkpoint file (default: none; the shipped model needs none)")
    add_device_arguments(explain_parser)
    explain_parser.add_argument("--out", default="explanation.png", help="output figure (.png, .pdf, .svg)")
    explain_parser.add_argument("--descriptors", default=None,
                                help="mutual only: descriptor bank, a {class: [descriptors]} JSON file, 'shapes' "
                                     "(the scene model's bank) or 'wordnet' (generated from WordNet for the --text "
                                     "classes); default: 'shapes' for the shapes model, else 'wordnet'")
    explain_parser.add_argument("--ig-steps", type=positive_int, default=50, help="ig only: path steps")
    explain_parser.add_argument("--ig-batch-size", type=positive_int, default=16,
                                help="ig only: path points per forward-backward pass; bounds memory")
    _add_shared_scale(explain_parser)
    explain_parser.set_defaults(run=explain)

    demo_parser = commands.add_parser("demo", help="explain a generated scene with the shipped model, offline")
    demo_parser.add_argument("--seed", type=int, default=7, help="scene seed")
    demo_parser.add_argument("--method", action="append", default=[],
                             help="methods to compare (default: surgery, clip, gradcam, ig)")
    add_device_arguments(demo_parser)
    demo_parser.add_argument("--out", default="demo.png", help="output figure (.png, .pdf, .svg)")
    _add_shared_scale(demo_parser)
    demo_parser.set_defaults(run=demo)

    from ..shipped.zero_shot import HELD_OUT_SEED_START

    bench = commands.add_parser("benchmark", help="methods x Quantus metrics on scenes with ground-truth masks")
    bench.add_argument("--dataset", default="shapes", help="scene source (shapes: procedural scenes)")
    bench.add_argument("--methods", action="append", default=[],
                       help="comma-separated; constructor options as method:key=value (e.g. "
                            "surgery:redundancy=empty); default: surgery, clip, gradcam, ig, random")
    bench.add_argument("--metrics", action="append", default=[],
                       help="comma-separated metric names (default: every localisation, faithfulness and concept "
                            "metric, i.e. all but MPRT)")
    bench.add_argument("--mprt", action="store_true",
                       help="also score MPRT, the randomisation check (costly: it explains every scene again per "
                            "randomised layer; on 8 scenes with the defaults it took 7 of the 10 minutes)")
    bench.add_argument("--n", type=positive_int, default=200, help="number of held-out scenes")
    bench.add_argument("--seed", type=int, default=HELD_OUT_SEED_START, help="first scene seed")
    bench.add_argument("--model", default="shapes", help="open_clip name or config JSON; shapes is the shipped scene model")
    bench.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint file (default: none)")
    add_device_arguments(bench)
    bench.add_argument("--batch-size", type=positive_int, default=50, help="scenes per Quantus call")
    bench.add_argument("--mprt-samples", type=positive_int, default=16, help="scenes for the (costly) MPRT check")
    bench.add_argument("--ig-steps", type=positive_int, default=50, help="ig only: path steps")
    bench.add_argument("--out-dir", default="benchmark_results", help="where the tables, chart and report go")
    bench.add_argument("--no-random-weights", action="store_true",
                       help="leave out the rows of every method on the model with random vision weights")
    add_report_arguments(bench, unit="scenes")
    bench.set_defaults(run=benchmark)

    from .convis import add_convis_commands
    from .evaluate import add_evaluate_command
    from .report import add_report_command

    add_convis_commands(commands)
    add_evaluate_command(commands)
    add_report_command(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "model", "") is None:
        args.model, args.model_given = "shapes", False
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
