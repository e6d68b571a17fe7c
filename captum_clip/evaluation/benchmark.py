"""Methods x metrics comparison through Quantus on generated scenes with ground-truth masks.

Each scene's first object is the query: its class ("red star") is the target and
its pixel mask the ``s_batch``. Explanations are computed once per method and
shared by every metric that only reads them; the randomisation check (MPRT)
re-explains on randomised copies of the model, on a subset of the scenes.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.morphology import dilation, disk
from tqdm.auto import tqdm

from ..core.classifier import ZeroShotClassifier
from ..core.randomise import randomised_vision_copy
from ..shipped import make_scenes, to_tensor
from ..shipped.zero_shot import HELD_OUT_SEED_START
from ..methods import DISPLAY_NAMES, build_method
from .concept_metrics import concept_metric_values
from .quantus_adapters import make_explain_func, make_random_explain_func
from .quantus_fixes import evaluate_metric, make_metric

LOCALISATION = ("PointingGame", "AttributionLocalisation", "RelevanceMassAccuracy", "RelevanceRankAccuracy",
                "TopKIntersection", "AUC")
FAITHFULNESS = ("PixelFlipping", "RegionPerturbation", "FaithfulnessCorrelation", "IROF", "ROAD")
RANDOMISATION = ("MPRT",)
#: The Mutual Knowledge paper's concept metrics (:mod:`captum_clip.evaluation.concept_metrics`). They blur the
#: ranked concepts of :class:`~captum_clip.mutual.MutualConceptAttribution`, so only ``"mutual"`` has them;
#: other methods get no cell. The label AccDrop / AccInc check against is the queried object's class.
CONCEPT = ("ConceptDeletion", "ConceptInsertion", "AccDrop", "AccInc")
CONCEPT_METHODS = ("mutual",)
#: The Pointing Game as Zhang et al. (2016) defined it: a hit also when the maximum lies within 15 px of the
#: object on 224 px images (Quantus's PointingGame has no tolerance). The tolerance scales with the image:
#: round(15 / 224 * min(H, W)) px, 4 px at 64 px. It is Quantus's PointingGame on masks dilated by that disk.
TOLERANT = {"PointingGameTolerant": "PointingGame"}
ALL_METRICS = LOCALISATION + tuple(TOLERANT) + FAITHFULNESS + RANDOMISATION + CONCEPT
#: What ``captum-clip benchmark`` scores unless told otherwise: all but MPRT, which explains every scene again
#: once per randomised layer (on 8 scenes it took 444 of 630 s, IG's random-weights row most of it).
DEFAULT_METRICS = tuple(m for m in ALL_METRICS if m not in RANDOMISATION)
DEFAULT_METHODS = ("surgery", "clip", "gradcam", "ig", "random")
#: Suffix of the rows scored on the model with random vision weights.
RANDOM_WEIGHTS = " (random weights)"

#: Which direction is better, for the report. PixelFlipping and ROAD are AUCs of the target logit (ROAD: of
#: top-1 correctness) as the most relevant pixels are removed: lower is better. RegionPerturbation's curve is
#: the *drop* ``f(x) - f(x_perturbed)`` as the most relevant patches are blurred, so its AUC is higher when the
#: explanation is better. IROF is an area over the curve (higher is better). MPRT is the similarity of the
#: explanation before and after randomising the weights (lower is better).
HIGHER_IS_BETTER = {
    **{name: True for name in LOCALISATION + tuple(TOLERANT)},
    "PixelFlipping": False, "RegionPerturbation": True, "FaithfulnessCorrelation": True, "IROF": True,
    "ROAD": False, "MPRT": False,
    "ConceptDeletion": False, "ConceptInsertion": True, "AccDrop": False, "AccInc": True,
}
_CONCEPT_KEYS = {"ConceptDeletion": "deletion", "ConceptInsertion": "insertion", "AccDrop": "acc_drop",
                 "AccInc": "acc_inc"}


def pointing_tolerance(image_hw: Tuple[int, int]) -> int:
    """Zhang et al.'s 15 px at 224 px, scaled to ``image_hw``."""
    return int(round(15 / 224 * min(image_hw)))


def tolerant_masks(masks: np.ndarray, radius: int) -> np.ndarray:
    """``masks`` ``(N, 1, H, W)`` dilated by a disk of ``radius`` px (the pixels within ``radius`` of the object)."""
    footprint = disk(radius)
    return np.stack([dilation(m[0].astype(bool), footprint)[None] for m in masks]).astype(masks.dtype)


def metric_settings(name: str, image_hw: Tuple[int, int]) -> Dict:
    """Per-metric Quantus settings scaled to the image size (cheap enough for hundreds of scenes)."""
    height, width = image_hw
    pixels = height * width
    return {
        "TopKIntersection": {"k": max(1, pixels // 20)},
        "PixelFlipping": {"features_in_step": max(1, pixels // 32)},
        "RegionPerturbation": {"patch_size": max(1, height // 8), "regions_evaluation": 16},
        "FaithfulnessCorrelation": {"nr_runs": 50, "subset_size": max(1, pixels // 16)},
        "ROAD": {"percentages": [10, 30, 50, 70, 90]},
    }.get(name, {})


@dataclass
class SceneBatch:
    """Benchmark inputs: images ``(N, 3, H, W)``, targets ``(N,)``, masks ``(N, 1, H, W)`` and queries."""

    x: np.ndarray
    y: np.ndarray
    s: np.ndarray
    queries: List[str]
    #: Each image's name (the scene seed for generated scenes), for the report.
    names: Optional[List[str]] = None


def shapes_scenes(classifier: ZeroShotClassifier, n: int, seed: int = HELD_OUT_SEED_START,
                  image_size: Optional[int] = None) -> SceneBatch:
    """Held-out generated scenes; each scene's first object is queried by its class name.

    Raises:
        ValueError: when the classifier has no class for a queried object.
    """
    size = image_size or classifier.bundle.input_size[0]
    scenes = make_scenes(n, seed=seed, image_size=size)
    queries = [scene.objects[0] for scene in scenes]
    targets = [classifier.class_index(query) for query in queries]
    if None in targets:
        raise ValueError(f"the classifier has no class {queries[targets.index(None)]!r}; build it over "
                         "captum_clip.shipped.single_object_classnames().")
    mean, std = classifier.bundle.image_mean_std
    images = to_tensor(np.stack([scene.image for scene in scenes]), mean, std)
    masks = np.stack([scene.masks[0] for scene in scenes])[:, None].astype(np.float32)
    return SceneBatch(images.numpy(), np.asarray(targets), masks, queries,
                      [f"scene {seed + i}" for i in range(len(scenes))])


def parse_method_spec(spec: str) -> Tuple[str, Dict[str, str]]:
    """``"surgery:redundancy=empty"`` -> ``("surgery", {"redundancy": "empty"})``: a method and constructor options.

    Raises:
        ValueError: an option that is not ``key=value``.
    """
    name, *options = spec.split(":")
    parsed = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or not key:
            raise ValueError(f"method option {option!r} in {spec!r} is not key=value (e.g. surgery:redundancy=empty).")
        parsed[key] = value
    return name, parsed


def _explainer(spec: str, seed: int, ig_steps: int):
    method, options = parse_method_spec(spec)
    if method == "random":
        return make_random_explain_func(seed=seed)
    return make_explain_func(method, attribute_kwargs={"n_steps": ig_steps} if method == "ig" else None, **options)


def _explain_all(explainer, classifier, data: SceneBatch, device: str, batch_size: int) -> np.ndarray:
    return np.concatenate([explainer(classifier, data.x[i:i + batch_size], data.y[i:i + batch_size], device=device)
                           for i in range(0, len(data.y), batch_size)])


def concept_scores(classifier: ZeroShotClassifier, data: SceneBatch, device: str, batch_size: int
                   ) -> Dict[str, np.ndarray]:
    """Per-scene concept metrics of Mutual Knowledge for the queried class: ``{metric name: (N,)}``."""
    method = build_method("mutual", classifier)
    values: Dict[str, List[np.ndarray]] = {name: [] for name in CONCEPT}
    for i in range(0, len(data.y), batch_size):
        images = torch.as_tensor(data.x[i:i + batch_size]).to(device)
        labels = torch.as_tensor(data.y[i:i + batch_size]).to(device)
        batch = concept_metric_values(method, images, labels, target=labels)
        for name in CONCEPT:
            values[name].append(batch[_CONCEPT_KEYS[name]].cpu().numpy())
    return {name: np.concatenate(parts) for name, parts in values.items()}


def _summary(scores: np.ndarray) -> Dict:
    finite = np.asarray(scores, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return {"mean": math.nan, "std": math.nan, "sem": math.nan, "n": 0}
    return {"mean": float(finite.mean()), "std": float(finite.std()),
            "sem": float(finite.std() / math.sqrt(finite.size)), "n": int(finite.size)}


@contextlib.contextmanager
def seeded_numpy(seed: int):
    # FaithfulnessCorrelation's subsets and ROAD's noise come from numpy's global generator; seeding it per metric
    # makes every cell the same on a rerun (and independent of what ran before), and the caller's state returns.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def run_benchmark(classifier: ZeroShotClassifier, data: SceneBatch, methods: Sequence[str] = DEFAULT_METHODS,
                  metrics: Sequence[str] = ALL_METRICS, device: str = "cpu", batch_size: int = 50,
                  mprt_samples: int = 16, ig_steps: int = 50, seed: int = 0, progress: bool = True,
                  random_weights: bool = True, random_weights_seed: int = 0, examples: int = 0,
                  examples_dir=None) -> List[Dict]:
    """Score every method with every metric, and every method again on the model with random vision weights.

    Concept metrics (:data:`CONCEPT`) are scored for the methods of :data:`CONCEPT_METHODS` only; the other
    methods get no row for them. With ``random_weights``, each method (but the ``"random"`` baseline) also gets
    the row ``"<method> (random weights)"``: explained and scored with the same classes on a copy of the model
    whose vision tower has seeded random weights (:func:`~captum_clip.core.randomise.randomised_vision_copy`),
    which says how much of a score the trained weights earn.

    With ``examples`` and ``examples_dir``, the maps of the first ``examples`` scenes (every row's, the ones the
    metrics score) are kept for the HTML report in ``examples_dir/examples/`` (:mod:`.records`).

    Returns:
        One row per (method, metric): ``method``, ``metric``, ``mean``, ``std``, ``sem``,
        ``n`` (scenes scored), ``higher_is_better``, ``seconds``.
    """
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(ALL_METRICS)}.")
    image_hw = tuple(data.x.shape[-2:])
    quantus_metrics = [m for m in metrics if m not in CONCEPT]
    # Ground truth per metric, shared by every method: the tolerant Pointing Game reads dilated masks.
    masks = {m: tolerant_masks(data.s, pointing_tolerance(image_hw)) if m in TOLERANT else data.s
             for m in quantus_metrics}
    runs = [(method, method, classifier) for method in methods]
    if random_weights:
        random_bundle = randomised_vision_copy(classifier.bundle, random_weights_seed)
        random_classifier = ZeroShotClassifier(random_bundle, classifier.classnames, classifier.templates,
                                               classifier.logit_scale)
        runs += [(f"{method}{RANDOM_WEIGHTS}", method, random_classifier) for method in methods
                 if parse_method_spec(method)[0] != "random"]
    has_concepts = {method: parse_method_spec(method)[0] in CONCEPT_METHODS for method in methods}
    rows = []
    kept: Dict[str, np.ndarray] = {}
    cells = tqdm(total=sum(1 for _, method, _ in runs for metric in metrics
                           if metric not in CONCEPT or has_concepts[method]),
                 desc="benchmark", disable=not progress)
    for key, method, model in runs:
        explainer = _explainer(method, seed, ig_steps)
        start = time.perf_counter()
        attributions = _explain_all(explainer, model, data, device, batch_size) if quantus_metrics else None
        explain_seconds = time.perf_counter() - start
        if examples and attributions is not None:
            kept[key] = np.asarray(attributions[:examples, 0], dtype=np.float32)
        concepts = None
        for metric_name in metrics:
            if metric_name in CONCEPT:
                if not has_concepts[method]:
                    continue
                cells.set_postfix_str(f"{key} / {metric_name}")
                start = time.perf_counter()
                if concepts is None:
                    concepts = concept_scores(model, data, device, batch_size)
                rows.append({"method": key, "metric": metric_name, **_summary(concepts[metric_name]),
                             "higher_is_better": HIGHER_IS_BETTER[metric_name],
                             "seconds": time.perf_counter() - start})
                cells.update()
                continue
            cells.set_postfix_str(f"{key} / {metric_name}")
            start = time.perf_counter()
            quantus_name = TOLERANT.get(metric_name, metric_name)
            metric = make_metric(quantus_name, **metric_settings(quantus_name, image_hw))
            with seeded_numpy(seed):
                if metric_name in RANDOMISATION:
                    subset = slice(0, mprt_samples)
                    scores = evaluate_metric(metric, model, data.x[subset], data.y[subset], s_batch=data.s[subset],
                                             explain_func=explainer, device=device, batch_size=batch_size)
                else:
                    scores = evaluate_metric(metric, model, data.x, data.y, s_batch=masks[metric_name],
                                             a_batch=attributions, explain_func=explainer, device=device,
                                             batch_size=batch_size)
            rows.append({
                "method": key, "metric": metric_name, **_summary(scores),
                "higher_is_better": HIGHER_IS_BETTER[metric_name],
                "seconds": time.perf_counter() - start + (explain_seconds if metric_name == quantus_metrics[0]
                                                          else 0.0),
            })
            cells.update()
    cells.close()
    if examples_dir is not None:
        from .records import remove_examples

        remove_examples(examples_dir, lambda index: True)  # one process: every earlier example is stale
        if kept:
            _save_examples(examples_dir, data, kept, classifier, methods)
    return rows


def _save_examples(out_dir, data: SceneBatch, kept: Dict[str, np.ndarray], classifier: ZeroShotClassifier,
                   methods: Sequence[str]) -> None:
    from .records import display_settings, save_examples

    n = len(next(iter(kept.values())))
    names = data.names or [f"scene {i}" for i in range(n)]
    display = {}
    for method in methods:
        name, options = parse_method_spec(method)
        shown = display_settings(build_method(name, classifier, **options)) if name != "random" else (False, 0.0)
        display.update({method: shown, f"{method}{RANDOM_WEIGHTS}": shown})
    save_examples(out_dir, torch.as_tensor(data.x[:n]), classifier.bundle.image_mean_std,
                  [{"index": i, "stem": names[i], "queries": [data.queries[i]], "gt": data.s[i, :1] > 0.5,
                    "maps": {key: maps[i][None] for key, maps in kept.items()}} for i in range(n)], display)


def method_label(key: str) -> str:
    """The display name of a method key, its options and a random-weights suffix."""
    suffix = RANDOM_WEIGHTS if key.endswith(RANDOM_WEIGHTS) else ""
    method, options = parse_method_spec(key[: len(key) - len(suffix)])
    label = DISPLAY_NAMES.get(method, method)
    return label + (f" ({', '.join(f'{k}={v}' for k, v in options.items())})" if options else "") + suffix


def markdown_table(rows: List[Dict]) -> str:
    """Methods as rows, metrics as columns, ``mean ± sem``; arrows give the better direction."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    header = "| method | " + " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics) + " |"
    lines = [header, "|---|" + "---:|" * len(metrics)]
    for method in methods:
        values = [f"{cell[method, m]['mean']:.3f} ± {cell[method, m]['sem']:.3f}" if (method, m) in cell else "—"
                  for m in metrics]
        lines.append(f"| {method_label(method)} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def bar_chart(rows: List[Dict]) -> Figure:
    """One panel per metric, one bar per method with its standard error."""
    from ..viz import whole_pixels

    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    columns = min(4, len(metrics))
    labels = [method_label(m) for m in methods]
    # Vertical labels: a bar's width each (0.2 in) and their length below the panel (DejaVu Sans at 8 pt is under
    # 0.6 em a character), so neither overlap nor the canvas edge depends on how many methods there are.
    label_inches = max(len(label) for label in labels) * 8 * 0.6 / 72
    n_rows = math.ceil(len(metrics) / columns)
    figure = Figure(figsize=(whole_pixels(max(3.4, 0.2 * len(methods) + 0.8) * columns, 100),
                             whole_pixels((2.2 + label_inches) * n_rows, 100)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, columns, squeeze=False).ravel()
    colours = [f"C{i}" for i in range(len(methods))]
    for axis, metric in zip(axes, metrics):
        means = [cell[m, metric]["mean"] if (m, metric) in cell else math.nan for m in methods]
        errors = [cell[m, metric]["sem"] if (m, metric) in cell else math.nan for m in methods]
        axis.bar(range(len(methods)), means, yerr=errors, color=colours, capsize=3)
        axis.set_title(f"{metric} {'↑' if HIGHER_IS_BETTER[metric] else '↓'}", fontsize=10)
        axis.set_xticks(range(len(methods)))
        axis.set_xticklabels(labels, rotation=90, fontsize=8)
    for axis in axes[len(metrics):]:
        axis.set_visible(False)
    return figure


def write_reports(rows: List[Dict], out_dir, title: str = "", warnings: Sequence[Dict] = ()) -> Dict[str, Path]:
    """Write ``results.md``, ``results.csv``, ``results.png`` and ``results.json`` (the rows, the title, the
    command, the versions and the ``warnings`` collected by :func:`.records.collected_warnings`, for the HTML
    report) into ``out_dir``."""
    from .records import provenance

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "results.md", "csv": out_dir / "results.csv", "png": out_dir / "results.png",
             "json": out_dir / "results.json"}
    paths["json"].write_text(json.dumps({"kind": "benchmark", "title": title, "rows": rows,
                                         "provenance": provenance(), "warnings": list(warnings)},
                                        indent=2, default=str) + "\n")
    paths["md"].write_text((f"{title}\n\n" if title else "") + markdown_table(rows) + "\n")
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bar_chart(rows).savefig(paths["png"])
    return paths


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
