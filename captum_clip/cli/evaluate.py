"""``captum-clip evaluate PROTOCOL --dataset KIND --root DIR --model NAME --methods m1,m2 --out-dir OUT``.

Runs as it is under ``torchrun --standalone --nproc-per-node N --no-python captum-clip evaluate ...``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..errors import RankFailedError
from .argtypes import add_device_arguments, positive_int
from .report import add_report_arguments, examples_to_keep


def _protocol_options(args: argparse.Namespace) -> dict:
    options = {}
    for value in args.option:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise SystemExit(f"captum-clip: evaluate: --option {value!r} is not key=value.")
        options[key] = text
    if args.tolerance is not None:
        options["tolerance"] = args.tolerance
    if args.threshold is not None:
        options["threshold"] = args.threshold if args.threshold == "sweep" else float(args.threshold)
    if args.target is not None:
        options["target"] = args.target
    return options


def _dataset_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.dataset == "shapes":
        options["n"] = args.n
        if args.first_object_only:
            options["first_object_only"] = True
    return options


def evaluate(args: argparse.Namespace) -> dict:
    from ..evaluation.datasets import read_dataset
    from ..evaluation.harness import EvaluationConfig, run_evaluation
    from .main import _load

    methods = [m.strip() for value in args.methods for m in value.split(",") if m.strip()]
    if not methods:
        raise SystemExit("captum-clip: evaluate: --methods is empty; name at least one method (e.g. surgery,gradcam).")
    try:
        dataset = read_dataset(args.dataset, args.root, args.split, **_dataset_options(args))
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"captum-clip: evaluate: {error}") from None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device
    args.device = None  # the harness moves the model to each rank's device
    bundle = _load(args)
    examples = examples_to_keep(args)
    config = EvaluationConfig(args.protocol, args.dataset, args.split, args.model, args.pretrained, methods,
                              batch_size=args.batch_size, precision=args.precision, random_weights_seed=args.seed,
                              sanity=not args.no_random_weights, options=_protocol_options(args))
    try:
        results = run_evaluation(config, dataset, bundle, args.out_dir, device=device, workers=args.workers,
                                 resume=args.resume, progress=not args.quiet, examples=examples)
    except (ValueError, FileNotFoundError, RankFailedError) as error:
        raise SystemExit(f"captum-clip: evaluate: {error}") from None
    if results is not None:
        print(f"wrote {args.out_dir}/results.json, per_image.csv, results.md and results.png", file=sys.stderr)
        if args.report:
            from .report import write_and_say

            write_and_say(args.out_dir)
    return results


#: The protocols of :data:`captum_clip.evaluation.protocols.PROTOCOLS`, named here so that building the parser
#: imports neither Quantus nor the protocols (a test checks the two agree).
PROTOCOL_NAMES = ("pointing", "cam-miou", "segmentation", "wsol", "deletion", "insertion", "mutual-mi", "quantus",
                  "convis-ood")


def add_evaluate_command(commands) -> None:
    parser = commands.add_parser("evaluate", help="a paper's evaluation protocol on a local dataset, sharded over "
                                                  "torch.distributed (run it under torchrun for several processes)")
    parser.add_argument("protocol", choices=PROTOCOL_NAMES)
    parser.add_argument("--dataset", required=True,
                        help="folder, voc, coco, imagenet-seg, cub, imagenet or shapes (generated scenes)")
    parser.add_argument("--root", default=None, help="the dataset's local copy (default: none; not needed for shapes)")
    parser.add_argument("--split", default=None, help="e.g. val (VOC), val2017 (COCO), test (CUB) (default: the dataset's evaluation split)")
    parser.add_argument("--model", default=None, help="open_clip name or config JSON (default: shapes, the shipped scene model)")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or local checkpoint (default: none)")
    parser.add_argument("--methods", action="append", default=[],
                        help="comma-separated registry names, with options as name:key=value (constructor or "
                             "attribute options, e.g. ig:n_steps=16); no default: name at least one")
    parser.add_argument("--out-dir", required=True, help="where results, shards and the report go")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per batch and per shard file")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    add_device_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="skip batches whose shard file is already written")
    parser.add_argument("--tolerance", type=float, default=None, help="pointing: pixels (default 15 at 224 px)")
    parser.add_argument("--threshold", default=None, help="cam-miou: a value in [0, 1] or 'sweep' "
                                                                  "(default: the protocol's)")
    parser.add_argument("--target", default=None, choices=("predicted", "gt"),
                        help="segmentation, deletion, insertion: the class explained (default: the protocol's)")
    parser.add_argument("--option", action="append", default=[],
                        help="other protocol options as key=value, repeatable (default: none)")
    parser.add_argument("--n", type=positive_int, default=200, help="shapes: number of scenes")
    parser.add_argument("--first-object-only", action="store_true",
                        help="shapes: query only each scene's first object (the benchmark's query)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-weights copy")
    parser.add_argument("--no-random-weights", action="store_true", help="leave out the random-weights rows")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads per process (default: torch's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_report_arguments(parser)
    parser.set_defaults(run=evaluate)
