"""``captum-clip evaluate``: a protocol, a dataset, methods and their random-weights rows, on one process or many.

The run is the same on one process and under ``torchrun``: the dataset is cut into fixed batches
(:func:`~.distributed.batches`), each rank explains its batches (:func:`~.distributed.shard`) and writes one
shard file per batch, and rank 0 gathers every row, sorts them by image stem and aggregates. Aggregates are
computed from the sorted per-image rows only, so they do not depend on the number of processes.

Every method given is also run on a copy of the model whose vision tower has seeded random weights
(:func:`~captum_clip.core.randomise.randomised_vision_copy`): its row ``"<method> (random weights)"`` says what a
score means (on the shipped scenes a random ViT already localises well on some metrics).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core.classifier import ZeroShotClassifier
from ..core.loading import ClipBundle
from ..core.precision import check_precision
from ..core.randomise import randomised_vision_copy
from ..methods import build_method, method_class
from .benchmark import RANDOM_WEIGHTS as RANDOM_SUFFIX, parse_method_spec
from .datasets import EvalDataset, PreparedDataset, collate
from .distributed import Context, batches, failing_together, gather_to_main, process_group, shard
from .protocols import PROTOCOLS, Method, Protocol
from .records import (MapRecorder, collected_warnings, display_settings, merge_warnings, provenance,
                      remove_examples, save_examples, say_warnings)
from .reports import metric_names, write_outputs

#: Bootstrap replicates behind every standard error (over images, seeded).
BOOTSTRAP = 200


@dataclass
class EvaluationConfig:
    """Everything that determines the rows; hashed into the shard files so that ``--resume`` never mixes runs."""

    protocol: str
    dataset: str
    split: Optional[str]
    model: str
    pretrained: Optional[str]
    methods: List[str]
    batch_size: int = 16
    precision: str = "fp32"
    random_weights_seed: int = 0
    sanity: bool = True
    options: Dict[str, Any] = field(default_factory=dict)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.__dict__, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _parse_value(value: str) -> Any:
    # CLI values are strings; numbers, booleans and None are what constructors and attribute() take.
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            continue
    return {"true": True, "false": False, "none": None}.get(value.lower(), value)


def split_method_options(spec: str):
    """``(name, constructor options, attribute options)`` of ``"name:key=value:..."``: an option goes to the
    constructor when it takes it, else to ``attribute`` (e.g. ``ig:n_steps=16``).

    Raises:
        ValueError: an option that neither takes.
    """
    name, options = parse_method_spec(spec)
    cls = method_class(name)
    constructor = inspect.signature(cls.__init__).parameters
    attribute = inspect.signature(cls.attribute).parameters
    built, called = {}, {}
    for key, value in options.items():
        if key in constructor:
            built[key] = _parse_value(value)
        elif key in attribute:
            called[key] = _parse_value(value)
        else:
            raise ValueError(f"{name} takes no option {key!r} (constructor: {sorted(set(constructor) - {'self'})}; "
                             f"attribute: {sorted(set(attribute) - {'self', 'inputs'})}).")
    return name, built, called


def build_methods(specs: Sequence[str], classifier: ZeroShotClassifier, random_classifier: Optional[ZeroShotClassifier]
                  ) -> Dict[str, Method]:
    """``{method key: Method}``: every spec as given, and its random-weights row."""
    methods = {}
    for spec in specs:
        name, built, called = split_method_options(spec)
        methods[spec] = Method(build_method(name, classifier, **built), called, name, built)
        if random_classifier is not None:
            methods[spec + RANDOM_SUFFIX] = Method(build_method(name, random_classifier, **built), called, name,
                                                   built, reference=classifier)
    return methods


def _shard_path(out_dir: Path, batch_number: int) -> Path:
    return out_dir / "shards" / f"batch-{batch_number:06d}.json"


def _read_shard(path: Path, digest: str) -> Optional[List[dict]]:
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # a half-written file from an interrupted run: computed again
    if stored.get("config") != digest:
        raise ValueError(f"{path} was written by another evaluation (config {stored.get('config')}, this one "
                         f"{digest}); use a fresh --out-dir or delete {path.parent}.")
    return stored["rows"]


def _write_shard(path: Path, digest: str, rows: List[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"config": digest, "rows": rows}))
    temporary.replace(path)


def run_evaluation(config: EvaluationConfig, dataset: EvalDataset, bundle: ClipBundle, out_dir, *,
                   device: str = "auto", workers: int = 0, resume: bool = False, progress: bool = True,
                   classifier: Optional[ZeroShotClassifier] = None, examples: int = 0
                   ) -> Optional[Dict[str, Any]]:
    """Run ``config.protocol`` on ``dataset`` and write ``results.json``, ``per_image.csv``, ``results.md`` and
    ``results.png`` into ``out_dir`` (rank 0).

    Args:
        config: protocol, methods and options (see :class:`EvaluationConfig`).
        dataset: a reader from :func:`captum_clip.evaluation.datasets.read_dataset`.
        bundle: the model.
        out_dir: where results and per-batch shard files go.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``; under torchrun each rank takes its local GPU.
        workers: DataLoader workers per rank.
        resume: reuse shard files of an interrupted run with the same config.
        progress: a progress bar with an ETA on rank 0.
        classifier: the label set; default a ZeroShotClassifier over the dataset's class names (or the
            protocol's ``label_set``).
        examples: keep the maps of the first ``examples`` images of the dataset (every method and query, with the
            image and its ground truth) in ``out_dir/examples/`` for the HTML report
            (:mod:`~captum_clip.evaluation.records`); they are the maps the protocol scores, not computed again.
            Batches reused by ``resume`` keep the examples their run wrote.

    Returns:
        The results dict on rank 0, None on other ranks.
    """
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {config.protocol!r}; choose from {', '.join(PROTOCOLS)}.")
    # The run's precision is the bundle's: every method autocasts its own forward passes in it.
    bundle = dataclasses.replace(bundle, precision=check_precision(config.precision))
    protocol: Protocol = PROTOCOLS[config.protocol](**config.options)
    protocol.check(dataset)
    out_dir = Path(out_dir)
    digest = config.digest()
    home = bundle.device
    with process_group(device) as context:
        bundle.model.to(context.device)
        try:
            return _evaluate(protocol, config, dataset, bundle, classifier, context, out_dir, digest, workers,
                             resume, progress, examples)
        finally:
            bundle.model.to(home)  # the caller's model goes back where it was


def _evaluate(protocol: Protocol, config: EvaluationConfig, dataset: EvalDataset, bundle: ClipBundle,
              classifier: Optional[ZeroShotClassifier], context: Context, out_dir: Path, digest: str, workers: int,
              resume: bool, progress: bool, examples: int = 0) -> Optional[Dict[str, Any]]:
    with failing_together(context):
        classifier = classifier or ZeroShotClassifier(bundle, protocol.label_set(dataset))
        random_classifier = None
        if config.sanity:
            random_bundle = randomised_vision_copy(bundle, config.random_weights_seed)
            random_classifier = ZeroShotClassifier(random_bundle, classifier.classnames, classifier.templates,
                                                   classifier.logit_scale, classifier._cache_dir,
                                                   classifier._use_cache)
        methods = build_methods(config.methods, classifier, random_classifier)
        with collected_warnings() as caught:
            rows, timing = _run_shard(protocol, dataset, bundle, classifier, methods, config, context, out_dir,
                                      digest, workers, resume, progress, examples)
    all_rows = gather_to_main(rows, context)
    all_timing = gather_to_main([timing], context)
    all_warnings = gather_to_main(caught, context)
    if not context.is_main:
        return None
    results = summarise(protocol, config, dataset, all_rows, list(methods), _merge_timing(all_timing))
    results["timing"]["processes"] = context.world_size
    results["provenance"] = provenance()
    results["warnings"] = all_warnings = merge_warnings(all_warnings)
    write_outputs(results, all_rows, protocol, out_dir)
    say_warnings(all_warnings, out_dir / "results.json")
    return results


def _run_shard(protocol: Protocol, dataset: EvalDataset, bundle: ClipBundle, classifier: ZeroShotClassifier,
               methods: Dict[str, Method], config: EvaluationConfig, context: Context, out_dir: Path, digest: str,
               workers: int, resume: bool, progress: bool, examples: int = 0):
    all_batches = batches(len(dataset), config.batch_size)
    mine = shard(all_batches, context)
    rows: List[dict] = []
    todo = []
    for number in mine:
        stored = _read_shard(_shard_path(out_dir, number), digest) if resume else None
        if stored is None:
            todo.append(number)
        else:
            rows.extend(stored)
    timing = {key: 0.0 for key in methods}
    images_done = 0
    recomputed = {index for number in todo for index in all_batches[number]}
    remove_examples(out_dir, lambda i: i in recomputed or (context.is_main and i >= len(dataset)))
    if todo:
        loader = DataLoader(PreparedDataset(dataset, bundle), batch_sampler=[all_batches[n] for n in todo],
                            num_workers=workers, collate_fn=collate)
        bar = tqdm(total=len(todo) * (context.world_size if context.is_main else 1), unit="batch",
                   desc=f"{config.protocol} on {config.dataset}", disable=not (progress and context.is_main))
        for number, batch in zip(todo, loader):
            batch["image"] = batch["image"].to(context.device)
            batch_rows = []
            keep = [item for item, index in enumerate(batch["index"]) if index < examples]
            recorders = {key: MapRecorder(keep) for key in methods} if keep else {}
            for key, method in methods.items():
                start = time.perf_counter()
                method.recorder = recorders.get(key)
                try:
                    scored = protocol.score(method, batch)
                finally:
                    method.recorder = None
                if context.device.type == "cuda":
                    torch.cuda.synchronize(context.device)
                timing[key] += time.perf_counter() - start
                batch_rows.extend({"method": key, **row} for row in scored)
            if keep:
                _save_examples(out_dir, protocol, batch, keep, recorders, methods, classifier.classnames, bundle)
            _write_shard(_shard_path(out_dir, number), digest, batch_rows)
            rows.extend(batch_rows)
            images_done += len(batch["stem"])
            bar.update(context.world_size if context.is_main else 1)
        bar.close()
    return rows, {"seconds": timing, "images": images_done}


def _save_examples(out_dir: Path, protocol: Protocol, batch: Dict[str, Any], keep: Sequence[int],
                   recorders: Dict[str, MapRecorder], methods: Dict[str, Method], classnames: Sequence[str],
                   bundle: ClipBundle) -> None:
    """One example file per kept image: every method's recorded map of every query any method answered, outlined
    with the ground truth the protocol scored."""
    size = tuple(batch["image"].shape[-2:])
    kept_items, examples = [], []
    for item in keep:
        targets = list(dict.fromkeys(t for r in recorders.values() for t, _ in r.kept.get(item, [])))
        if not targets:
            continue  # a protocol without maps (mutual-mi, convis-ood): nothing to show
        maps = {}
        for key, recorder in recorders.items():
            stack = np.full((len(targets), *size), np.nan, dtype=np.float32)
            for target, values in recorder.kept.get(item, []):
                stack[targets.index(target)] = values
            maps[key] = stack
        kept_items.append(item)
        examples.append({"index": batch["index"][item], "stem": batch["stem"][item],
                         "queries": [classnames[t] for t in targets], "maps": maps,
                         "gt": np.stack([protocol.truth(batch, item, t) for t in targets])})
    if examples:
        save_examples(out_dir, batch["image"][kept_items], bundle.image_mean_std, examples,
                      {key: display_settings(method.attribution) for key, method in methods.items()})


def _merge_timing(parts: List[dict]) -> Dict[str, Any]:
    # Ranks run side by side: a method's wall time is its slowest rank's, and the throughput is of all ranks.
    images = sum(p["images"] for p in parts)
    seconds = {}
    for part in parts:
        for key, value in part["seconds"].items():
            seconds[key] = max(seconds.get(key, 0.0), value)
    return {"images_computed": images,
            "images_per_second": {k: (images / v if v > 0 else None) for k, v in seconds.items()},
            "seconds": seconds}


def _bootstrap_weights(stems: Sequence[str], n_replicates: int, seed: int = 0) -> np.ndarray:
    """``(1 + R, n_rows)`` weights: all ones, then R resamplings of the images (rows follow their image)."""
    images, index = np.unique(np.asarray(stems), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(images), np.full(len(images), 1.0 / len(images)), size=n_replicates)
    return np.concatenate([np.ones((1, len(stems))), counts[:, index]], axis=0).astype(np.float64)


def summarise(protocol: Protocol, config: EvaluationConfig, dataset: EvalDataset, rows: List[dict],
              method_keys: Sequence[str], timing: Dict[str, Any]) -> Dict[str, Any]:
    """The ``results.json`` dict: each method's metrics with bootstrap standard errors, and the sanity flags."""
    rows.sort(key=lambda r: (r["stem"], str(r["query"]), r["method"]))
    methods: Dict[str, Dict[str, Any]] = {}
    for key in method_keys:
        mine = [r for r in rows if r["method"] == key]
        if not mine:
            methods[key] = {}
            continue
        weights = _bootstrap_weights([r["stem"] for r in mine], BOOTSTRAP)
        values = protocol.summarise(mine, weights)
        metrics: Dict[str, Any] = {}
        for name, series in values.items():
            series = np.asarray(series, dtype=np.float64)
            if series.ndim == 0 or series.shape[0] == 1:  # a metric without a standard error (e.g. a threshold)
                metrics[name] = float(series.reshape(-1)[0])
                continue
            metrics[name] = float(series[0])
            replicates = series[1:][np.isfinite(series[1:])]
            metrics[f"{name}_stderr"] = float(replicates.std(ddof=1)) if replicates.size > 1 else math.nan
        methods[key] = metrics
    for key in list(methods):
        if key.endswith(RANDOM_SUFFIX):
            continue
        trained, random = methods[key], methods.get(key + RANDOM_SUFFIX)
        main = protocol.main_metric
        if random and main in trained and main in random:
            gap = abs(trained[main] - random[main])
            trained["random_weights_within_stderr"] = bool(gap <= trained.get(f"{main}_stderr", 0.0))
    return {
        "protocol": config.protocol, "dataset": config.dataset, "split": config.split, "model": config.model,
        "pretrained": config.pretrained, "n_images": len({r["stem"] for r in rows}),
        "n_queries": len({(r["stem"], str(r["query"])) for r in rows}),
        "config": {**config.__dict__, "bootstrap_replicates": BOOTSTRAP, "main_metric": protocol.main_metric,
                   "higher_is_better": protocol.higher_is_better,
                   # Every reported value's better direction (None: a setting), for the tables' arrows.
                   "directions": {name: protocol.direction(name) for name in metric_names({"methods": methods})}},
        "methods": methods,
        "timing": timing,
    }
