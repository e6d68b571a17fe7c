"""Methods x metrics comparison through Quantus on generated scenes with ground-truth masks.

Each scene's first object is the query: its class ("red star") is the target and
its pixel mask the ``s_batch``. Explanations are computed once per method and
shared by every metric that only reads them; the randomisation check (MPRT)
re-explains on randomised copies of the model, on a subset of the scenes.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from ..classifier import ZeroShotClassifier
from ..datasets import make_scenes, to_tensor
from ..datasets.evaluate import HELD_OUT_SEED_START
from ..methods import DISPLAY_NAMES
from .quantus_adapters import make_explain_func, make_random_explain_func
from .quantus_fixes import evaluate_metric, make_metric

LOCALISATION = ("PointingGame", "AttributionLocalisation", "RelevanceMassAccuracy", "RelevanceRankAccuracy",
                "TopKIntersection", "AUC")
FAITHFULNESS = ("PixelFlipping", "RegionPerturbation", "FaithfulnessCorrelation", "IROF", "ROAD")
RANDOMISATION = ("MPRT",)
ALL_METRICS = LOCALISATION + FAITHFULNESS + RANDOMISATION
DEFAULT_METHODS = ("surgery", "clip", "gradcam", "ig", "random")

#: Which direction is better, for the report (PixelFlipping/RegionPerturbation/ROAD are AUCs of
#: the target logit as the most relevant pixels are removed; MPRT is the similarity of the
#: explanation before and after randomising the weights).
HIGHER_IS_BETTER = {
    **{name: True for name in LOCALISATION},
    "PixelFlipping": False, "RegionPerturbation": False, "FaithfulnessCorrelation": True, "IROF": True,
    "ROAD": False, "MPRT": False,
}


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


def shapes_scenes(classifier: ZeroShotClassifier, n: int, seed: int = HELD_OUT_SEED_START,
                  image_size: Optional[int] = None) -> SceneBatch:
    """Held-out generated scenes; each scene's first object is queried by its class name.

    Raises:
        ValueError: when the classifier has no class for a queried object.
    """
    size = image_size or classifier.tower.native_image_size[0]
    scenes = make_scenes(n, seed=seed, image_size=size)
    queries = [scene.objects[0] for scene in scenes]
    targets = [classifier.class_index(query) for query in queries]
    if None in targets:
        raise ValueError(f"the classifier has no class {queries[targets.index(None)]!r}; build it over "
                         "captum_clip.datasets.single_object_classnames().")
    mean, std = classifier.bundle.image_mean_std
    images = to_tensor(np.stack([scene.image for scene in scenes]), mean, std)
    masks = np.stack([scene.masks[0] for scene in scenes])[:, None].astype(np.float32)
    return SceneBatch(images.numpy(), np.asarray(targets), masks, queries)


def _explainer(method: str, seed: int, ig_steps: int):
    if method == "random":
        return make_random_explain_func(seed=seed)
    return make_explain_func(method, attribute_kwargs={"n_steps": ig_steps} if method == "ig" else None)


def _explain_all(explainer, classifier, data: SceneBatch, device: str, batch_size: int) -> np.ndarray:
    return np.concatenate([explainer(classifier, data.x[i:i + batch_size], data.y[i:i + batch_size], device=device)
                           for i in range(0, len(data.y), batch_size)])


def run_benchmark(classifier: ZeroShotClassifier, data: SceneBatch, methods: Sequence[str] = DEFAULT_METHODS,
                  metrics: Sequence[str] = ALL_METRICS, device: str = "cpu", batch_size: int = 50,
                  mprt_samples: int = 16, ig_steps: int = 50, seed: int = 0, progress: bool = True) -> List[Dict]:
    """Score every method with every metric.

    Returns:
        One row per (method, metric): ``method``, ``metric``, ``mean``, ``std``, ``sem``,
        ``n`` (scenes scored), ``higher_is_better``, ``seconds``.
    """
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(ALL_METRICS)}.")
    image_hw = tuple(data.x.shape[-2:])
    rows = []
    cells = tqdm(total=len(methods) * len(metrics), desc="benchmark", disable=not progress)
    for method in methods:
        explainer = _explainer(method, seed, ig_steps)
        start = time.perf_counter()
        attributions = _explain_all(explainer, classifier, data, device, batch_size)
        explain_seconds = time.perf_counter() - start
        for metric_name in metrics:
            cells.set_postfix_str(f"{method} / {metric_name}")
            start = time.perf_counter()
            metric = make_metric(metric_name, **metric_settings(metric_name, image_hw))
            if metric_name in RANDOMISATION:
                subset = slice(0, mprt_samples)
                scores = evaluate_metric(metric, classifier, data.x[subset], data.y[subset], s_batch=data.s[subset],
                                         explain_func=explainer, device=device, batch_size=batch_size)
            else:
                scores = evaluate_metric(metric, classifier, data.x, data.y, s_batch=data.s,
                                         a_batch=attributions, explain_func=explainer, device=device,
                                         batch_size=batch_size)
            scores = np.asarray(scores, dtype=np.float64)
            finite = scores[np.isfinite(scores)]
            rows.append({
                "method": method, "metric": metric_name,
                "mean": float(finite.mean()) if finite.size else math.nan,
                "std": float(finite.std()) if finite.size else math.nan,
                "sem": float(finite.std() / math.sqrt(finite.size)) if finite.size else math.nan,
                "n": int(finite.size), "higher_is_better": HIGHER_IS_BETTER[metric_name],
                "seconds": time.perf_counter() - start + (explain_seconds if metric_name == metrics[0] else 0.0),
            })
            cells.update()
    cells.close()
    return rows


def _label(method: str) -> str:
    return DISPLAY_NAMES.get(method, method)


def markdown_table(rows: List[Dict]) -> str:
    """Methods as rows, metrics as columns, ``mean ± sem``; arrows give the better direction."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    header = "| method | " + " | ".join(f"{m} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in metrics) + " |"
    lines = [header, "|---|" + "---:|" * len(metrics)]
    for method in methods:
        values = [f"{cell[method, m]['mean']:.3f} ± {cell[method, m]['sem']:.3f}" for m in metrics]
        lines.append(f"| {_label(method)} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def bar_chart(rows: List[Dict]) -> Figure:
    """One panel per metric, one bar per method with its standard error."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    columns = min(4, len(metrics))
    figure = Figure(figsize=(3.4 * columns, 2.8 * math.ceil(len(metrics) / columns)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(math.ceil(len(metrics) / columns), columns, squeeze=False).ravel()
    colours = [f"C{i}" for i in range(len(methods))]
    for axis, metric in zip(axes, metrics):
        means = [cell[m, metric]["mean"] for m in methods]
        errors = [cell[m, metric]["sem"] for m in methods]
        axis.bar(range(len(methods)), means, yerr=errors, color=colours, capsize=3)
        axis.set_title(f"{metric} {'↑' if HIGHER_IS_BETTER[metric] else '↓'}", fontsize=10)
        axis.set_xticks(range(len(methods)))
        axis.set_xticklabels([_label(m) for m in methods], rotation=35, ha="right", fontsize=8)
    for axis in axes[len(metrics):]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure


def write_reports(rows: List[Dict], out_dir, title: str = "") -> Dict[str, Path]:
    """Write ``results.md``, ``results.csv`` and ``results.png`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "results.md", "csv": out_dir / "results.csv", "png": out_dir / "results.png"}
    paths["md"].write_text((f"{title}\n\n" if title else "") + markdown_table(rows) + "\n")
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bar_chart(rows).savefig(paths["png"])
    return paths


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
