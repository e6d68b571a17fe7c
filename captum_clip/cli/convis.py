"""``captum-clip`` subcommands for ConVis: the paper's two experiments and the concept browser.

* ``convis-wsol``: localisation. Offline on generated scenes with the shipped model (default), or on an image folder
  with a boxes file and a concept (``--images DIR --boxes FILE --concept bird.n.01``).
* ``convis-ood``: OOD detection. Offline on single-object scenes (default), or on an ImageNet-style folder
  (``--images ROOT --id bird.n.01 --ood hunting_dog.n.01``).
* ``convis-top``: the concepts an image shows most, by map mass.

Heavy imports (nltk, the model) happen when a command runs, so ``captum-clip --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .argtypes import add_device_arguments, positive_int

__all__ = ["add_convis_commands"]


def _fail(message: str) -> SystemExit:
    return SystemExit(f"captum-clip: {message}")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="shapes", help="open_clip model name or config JSON (default: shapes, the shipped scene model)")
    parser.add_argument("--pretrained", default=None,
                        help="open_clip pretrained tag or checkpoint file (default: none; the shipped model needs none)")
    add_device_arguments(parser)
    parser.add_argument("--text-source", choices=("definition", "lemmas"), default=None,
                        help="synset texts: glosses (the paper) or lemma names; default: lemmas on the shipped "
                             "scene model, definitions otherwise")
    parser.add_argument("--words", default=None,
                        help="word-list file for the vocabulary (one noun per line, e.g. the paper's "
                             "physical_objects.txt); default: the built-in vocabulary")


def _add_convis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stride", type=positive_int, default=16, help="window stride in pixels of the 224 frame (16)")
    parser.add_argument("--pad-fill", choices=("noise", "black", "gray"), default="noise",
                        help="canvas padding around the image (the reference: seeded uniform noise)")
    parser.add_argument("--aggregation", choices=("max_then_mean", "mean_then_max"), default="max_then_mean",
                        help="how a concept's window ranks become a map, as in the paper")
    parser.add_argument("--resize", choices=("tensor", "pil"), default="tensor",
                        help="window preprocessing: batched tensor resize (fast) or the model's PIL transform")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="windows per forward pass (default: about 1,536 tokens on a CPU, e.g. 7 windows of a "
                             "ViT-B/16; 256 on a GPU)")


def _load(args: argparse.Namespace):
    """(bundle, vocabulary, text source, scene mode?) from the common arguments."""
    from ..core.loading import load_clip
    from ..shipped.presets import SCENE_TEXT_SOURCE, scene_vocabulary
    from ..convis.vocabulary import ConceptVocabulary, default_vocabulary, read_word_list

    try:
        bundle = load_clip(args.model, pretrained=args.pretrained, device=args.device,
                           precision=args.precision)
    except (FileNotFoundError, ValueError) as error:
        raise _fail(str(error))
    scene_model = args.model == "shapes"
    scenes = getattr(args, "images", None) is None
    if args.words:
        vocabulary = ConceptVocabulary.from_words(read_word_list(args.words))
        if scenes:
            vocabulary = vocabulary.extended(list(_scene_synsets()))
    else:
        vocabulary = scene_vocabulary() if scenes or scene_model else default_vocabulary()
    text_source = args.text_source or (SCENE_TEXT_SOURCE if scene_model else "definition")
    return bundle, vocabulary, text_source, scene_model


def _scene_synsets():
    from ..shipped.presets import COLOR_SYNSETS, SHAPE_SYNSETS

    return [*SHAPE_SYNSETS.values(), *COLOR_SYNSETS.values()]


def _method(args: argparse.Namespace, bundle, vocabulary, text_source: str, progress: bool = False):
    from ..convis.attribution import ConVisAttribution
    from ..convis.windows import WindowConfig

    try:
        windows = WindowConfig(stride=args.stride, pad_fill=args.pad_fill)
        return ConVisAttribution(bundle, vocabulary, text_source=text_source, windows=windows,
                                 aggregation=args.aggregation, resize=args.resize, batch_size=args.batch_size,
                                 progress=progress)
    except ValueError as error:
        raise _fail(str(error))


def _describe(bundle, text_source: str, vocabulary) -> str:
    note = " (the shipped scene model never saw glosses)" if text_source == "lemmas" and bundle.name == "shapes" else ""
    return f"model {bundle.name}, synset texts: {text_source}{note}, |T| = {len(vocabulary)}"


def _write_json(path: str | None, payload: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2))
        print(f"wrote {path}")


# --------------------------------------------------------------------------------------------- convis-wsol
def run_wsol(args: argparse.Namespace) -> dict:
    """Localisation: MaxBoxAcc (and, on scenes, the pointing rate with its chance level)."""
    from ..evaluation.convis_experiments import folder_localisation, scene_localisation

    bundle, vocabulary, text_source, _ = _load(args)
    method = _method(args, bundle, vocabulary, text_source)
    try:
        if args.images is None:
            result = scene_localisation(method, args.scenes, seed=args.seed, n_objects=args.objects)
            source = (f"{args.scenes} generated scenes (seeds {args.seed}..{args.seed + args.scenes - 1}, "
                      f"{args.objects or '1-3'} objects), each object queried by its shape's synset")
        else:
            if not args.boxes or not args.concept:
                raise _fail("--images needs --boxes FILE and --concept SYNSET")
            result = folder_localisation(method, args.images, args.boxes, args.concept, limit=args.limit)
            source = f"{result.n_images} images of {args.images}, concept {args.concept}"
    except ValueError as error:
        raise _fail(str(error))
    acc, base = result.box_accuracy, result.baseline_box_accuracy
    errors = result.standard_errors()
    print(f"\nConVis localisation: {source}; {_describe(bundle, text_source, vocabulary)}; "
          f"stride {args.stride}, {args.pad_fill} padding, {args.aggregation}\n")
    print("| quantity | value (± standard error over maps) |\n|---|---|")
    print(f"| maps scored | {result.n_queries} |")
    print(f"| MaxBoxAcc (IoU > 0.5) | {acc.max_box_acc:.3f} ± {errors['max_box_acc']:.3f} "
          f"(threshold {acc.best_threshold:.2f}) |")
    print(f"| MaxBoxAcc, centre-prior map | {base.max_box_acc:.3f} (threshold {base.best_threshold:.2f}) |")
    payload = {"source": source, "model": bundle.name, "text_source": text_source, "stride": args.stride,
               "pad_fill": args.pad_fill,
               "aggregation": args.aggregation, "n_queries": result.n_queries,
               "max_box_acc": acc.max_box_acc, "best_threshold": acc.best_threshold,
               "centre_prior_max_box_acc": base.max_box_acc, "standard_errors": errors}
    if result.pointing_rate is not None:
        print(f"| map maximum on the queried object | {result.pointing_rate:.3f} ± {errors['pointing_rate']:.3f} |")
        print(f"| chance (a random pixel on it: mean object area) | {result.pointing_chance:.3f} |")
        print(f"| map maximum on any object | {result.pointing_any_object:.3f} |")
        print("\n| shape synset | queries | maximum on the object |\n|---|---|---|")
        for concept, (count, rate) in sorted(result.per_concept.items()):
            print(f"| {concept} | {count} | {rate:.3f} |")
        payload.update(pointing_rate=result.pointing_rate, pointing_chance=result.pointing_chance,
                       pointing_any_object=result.pointing_any_object,
                       per_concept={k: {"queries": n, "rate": r} for k, (n, r) in result.per_concept.items()})
    if args.figure:
        from ..evaluation.convis_figures import save_localisation_figure

        count = min(args.figure_queries, result.n_queries)
        path = save_localisation_figure(
            args.figure, result.images[:count], result.maps[:count], result.concepts[:count],
            result.boxes[:count], acc.best_threshold,
            suptitle=f"ConVis on {bundle.name} ({text_source} texts): MaxBoxAcc {acc.max_box_acc:.2f}",
        )
        print(f"wrote {path}")
    _write_json(args.out, payload)
    return payload


# ---------------------------------------------------------------------------------------------- convis-ood
def run_ood(args: argparse.Namespace) -> dict:
    """OOD detection: AUROC of the three WordNet scores and the max-logit baselines."""
    from ..evaluation.convis_experiments import folder_ood, scene_ood
    from ..evaluation.convis_ood import OOD_TEXT_SCORES

    bundle, vocabulary, text_source, _ = _load(args)
    try:
        if args.images is None:
            pairs = [(args.id, args.ood)] if args.id and args.ood else None
            results = scene_ood(bundle, vocabulary, n_test=args.scenes, n_train=args.train_scenes,
                                **({"pairs": pairs} if pairs else {}))
            source = f"{args.scenes} single-object test scenes (held-out seeds), {args.train_scenes} training scenes"
        else:
            if not args.id or not args.ood:
                raise _fail("--images needs --id SYNSET and --ood SYNSET")
            results = [folder_ood(bundle, args.images, args.id, args.ood, vocabulary, train_root=args.train,
                                  limit=args.limit)]
            source = f"class folders of {args.images}"
    except ValueError as error:
        raise _fail(str(error))
    print(f"\nConVis OOD detection (AUROC, OOD = positive): {source}; model {bundle.name}, |T| = {len(vocabulary)}."
          " The three WordNet scores use their own texts (glosses or lemmas), whatever --text-source says.\n")
    columns = list(OOD_TEXT_SCORES) + [k for k in ("mls_linear_probe", "mls_zero_shot") if k in results[0].auroc]
    print("| ID synset | OOD synset | ID / OOD images | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for r in results:
        print(f"| {r.id_synset} | {r.ood_synset} | {r.n_id} / {r.n_ood} | "
              + " | ".join(f"{r.auroc[c]:.3f}" for c in columns) + " |")
    payload = {"source": source, "model": bundle.name,
               "results": [{"id": r.id_synset, "ood": r.ood_synset, "n_id": r.n_id, "n_ood": r.n_ood,
                            "auroc": r.auroc, "n_texts": r.n_texts, "id_classes": r.id_classes,
                            "ood_classes": r.ood_classes} for r in results]}
    _write_json(args.out, payload)
    return payload


# ---------------------------------------------------------------------------------------------- convis-top
def run_top(args: argparse.Namespace) -> list:
    """The concepts an image shows most, sorted by map mass."""
    from PIL import Image

    bundle, vocabulary, text_source, _ = _load(args)
    method = _method(args, bundle, vocabulary, text_source, progress=True)
    try:
        with Image.open(args.image) as image:
            x = bundle.preprocess(image.convert("RGB")).unsqueeze(0)
        rows = method.top_concepts(x, k=args.k, under=args.under, closure=not args.specific)[0]
    except (OSError, ValueError) as error:
        raise _fail(str(error))
    print(f"\nConcepts in {args.image} by map mass; {_describe(bundle, text_source, vocabulary)}\n")
    print("| concept | mass | best rank |\n|---|---|---|")
    for row in rows:
        print(f"| {row.concept} | {row.mass:.3f} | {row.best_rank:.1f} |")
    return rows


def add_convis_commands(commands) -> None:
    """Register ``convis-wsol``, ``convis-ood`` and ``convis-top`` on the CLI's subparsers."""
    from ..shipped.zero_shot import HELD_OUT_SEED_START

    wsol = commands.add_parser("convis-wsol", help="ConVis localisation: MaxBoxAcc (offline on generated scenes)")
    wsol.add_argument("--scenes", type=positive_int, default=50, help="generated scenes (without --images)")
    wsol.add_argument("--seed", type=int, default=HELD_OUT_SEED_START, help="first scene seed (held-out range)")
    wsol.add_argument("--objects", type=positive_int, default=None, help="objects per scene (default: 1-3 at random)")
    wsol.add_argument("--images", default=None, help="image folder (default: none, generated scenes)")
    wsol.add_argument("--boxes", default=None, help="boxes file: '<image> <x> <y> <width> <height>' per line (default: none; needed with --images)")
    wsol.add_argument("--concept", default=None, help="synset to localise in --images, e.g. bird.n.01 (default: none; needed with --images)")
    wsol.add_argument("--limit", type=positive_int, default=None, help="at most this many images (default: all)")
    wsol.add_argument("--out", default=None, help="also write the results as JSON (default: print only)")
    wsol.add_argument("--figure", default=None, help="also draw the first queries' maps and boxes (.png; default: no figure)")
    wsol.add_argument("--figure-queries", type=positive_int, default=6, help="queries in the figure")
    _add_model_arguments(wsol)
    _add_convis_arguments(wsol)
    wsol.set_defaults(run=run_wsol)

    ood = commands.add_parser("convis-ood", help="WordNet-text OOD detection: AUROC (offline on generated scenes)")
    ood.add_argument("--scenes", type=positive_int, default=600, help="single-object test scenes (without --images)")
    ood.add_argument("--train-scenes", type=positive_int, default=600, help="training scenes for the linear-probe baseline")
    ood.add_argument("--images", default=None, help="test root: one folder per class, named by wnid or synset (default: none, generated scenes)")
    ood.add_argument("--train", default=None, help="training root in the same layout, for the linear-probe baseline (default: none)")
    ood.add_argument("--id", default=None, help="ID synset, e.g. bird.n.01 (default: none; needed with --images)")
    ood.add_argument("--ood", default=None, help="OOD synset, e.g. hunting_dog.n.01 (default: none; needed with --images)")
    ood.add_argument("--limit", type=positive_int, default=None, help="at most this many images per class folder (default: all)")
    ood.add_argument("--out", default=None, help="also write the results as JSON (default: print only)")
    _add_model_arguments(ood)
    ood.set_defaults(run=run_ood)

    top = commands.add_parser("convis-top", help="the WordNet concepts an image shows most, by ConVis map mass")
    top.add_argument("image", help="image file")
    top.add_argument("--k", type=positive_int, default=15, help="how many concepts")
    top.add_argument("--under", default=None, help="only the children of this synset, one level of the tree (default: the whole vocabulary)")
    top.add_argument("--specific", action="store_true",
                     help="score each synset by its own text (no hyponym closure): the most specific matches")
    _add_model_arguments(top)
    _add_convis_arguments(top)
    top.set_defaults(run=run_top, images="")
