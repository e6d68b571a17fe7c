"""The files an evaluation writes: ``results.json``, ``per_image.csv``, ``results.md`` and ``results.png``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .benchmark import HIGHER_IS_BETTER, RANDOM_WEIGHTS, method_label


def metric_names(results: Dict[str, Any]) -> List[str]:
    """The reported values of ``results["methods"]`` (no standard errors or flags), in first-seen order."""
    names: List[str] = []
    for metrics in results["methods"].values():
        names.extend(k for k in metrics if not k.endswith("_stderr") and k != "random_weights_within_stderr")
    return list(dict.fromkeys(names))


def metric_directions(results: Dict[str, Any]) -> Dict[str, Optional[bool]]:
    """Whether a higher value of each reported metric is better (None: unknown, or a setting)."""
    config = results.get("config", {})
    stored = config.get("directions", {})
    directions = {name: stored.get(name, HIGHER_IS_BETTER.get(name)) for name in metric_names(results)}
    if config.get("main_metric") in directions:
        directions[config["main_metric"]] = config.get("higher_is_better")
    return directions


def markdown(results: Dict[str, Any]) -> str:
    """The table: one row per method key, ``value ± stderr``, each column with its better direction; trained
    methods whose random-weights row lies within one standard error of them are marked with a dagger."""
    metrics = metric_names(results)
    main = results["config"]["main_metric"]
    directions = metric_directions(results)
    arrows = {m: {True: " ↑", False: " ↓"}.get(directions[m], "") for m in metrics}
    header = "| method | " + " | ".join(f"{m}{arrows[m]}" for m in metrics) + " |"
    lines = [f"{results['protocol']} on {results['dataset']} ({results['split'] or 'all'}), model "
             f"{results['model']} ({results['pretrained'] or 'no checkpoint'}): {results['n_images']} images, "
             f"{results['n_queries']} queries.", "", header, "|---|" + "---:|" * len(metrics)]
    for key, values in results["methods"].items():
        cells = []
        for metric in metrics:
            if metric not in values:
                cells.append("—")
                continue
            error = values.get(f"{metric}_stderr")
            cells.append(f"{values[metric]:.3f}" + (f" ± {error:.3f}" if error is not None and math.isfinite(error)
                                                    else ""))
        flag = " †" if values.get("random_weights_within_stderr") else ""
        lines.append(f"| {method_label(key)}{flag} | " + " | ".join(cells) + " |")
    if any(v.get("random_weights_within_stderr") for v in results["methods"].values()):
        lines += ["", f"† its random-weights row lies within one standard error of it on {main}: on this data the "
                      "score does not show that the method reads the trained weights."]
    return "\n".join(lines) + "\n"


def figure(results: Dict[str, Any]) -> Figure:
    """A bar per method key on the main metric, with its standard error; random-weights rows hatched."""
    main = results["config"]["main_metric"]
    keys = [k for k, v in results["methods"].items() if main in v]
    plot = Figure(figsize=(max(4.0, 0.8 * len(keys) + 1.5), 3.4), dpi=100)
    FigureCanvasAgg(plot)
    axis = plot.subplots()
    for position, key in enumerate(keys):
        values = results["methods"][key]
        random = key.endswith(RANDOM_WEIGHTS)
        axis.bar(position, values[main], yerr=values.get(f"{main}_stderr"), capsize=3,
                 color="lightgrey" if random else f"C{position // 2}", hatch="//" if random else None,
                 edgecolor="grey")
    axis.set_xticks(range(len(keys)))
    axis.set_xticklabels([method_label(k) for k in keys], rotation=35, ha="right", fontsize=8)
    axis.set_ylabel(f"{main} {'↑' if results['config']['higher_is_better'] else '↓'}")
    axis.set_title(f"{results['protocol']} on {results['dataset']}", fontsize=10)
    plot.tight_layout()
    return plot


def write_outputs(results: Dict[str, Any], rows: List[Dict[str, Any]], protocol, out_dir) -> Dict[str, Path]:
    """Write the four files into ``out_dir``; rows are sorted by image stem, query and method."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("results.json", "per_image.csv", "results.md", "results.png")}
    paths["results.json"].write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    columns = ["stem", "query", "method", *protocol.columns]
    with paths["per_image.csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["stem"], str(r["query"]), r["method"])):
            writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items()})
    paths["results.md"].write_text(markdown(results))
    figure(results).savefig(paths["results.png"])
    return paths
