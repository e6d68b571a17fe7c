"""What a run keeps for its HTML report: the command and versions behind it, and example maps.

An example is one image of the run with every map each method produced for it, in ``OUT_DIR/examples/`` as one
compressed ``.npz`` per image (:func:`save_example`, :func:`load_examples`):

* ``stem``: the image's name; ``index``: its position in the dataset.
* ``image``: ``(H, W, 3)`` uint8, the model's input as it sees it (resized and cropped, normalisation undone).
* ``queries``: ``(Q,)`` the query texts; ``gt``: ``(Q, H, W)`` bool, each query's ground truth (all False where
  the dataset has none).
* ``methods``: ``(M,)`` the method keys (random-weights rows included); ``maps``: ``(M, Q, H, W)`` float16,
  NaN where a method has no map for a query.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import shlex
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

EXAMPLES_DIR = "examples"
#: Distribution name -> what the report calls it.
_DISTRIBUTIONS = {"captum-clip": "captum_clip", "torch": "torch", "open_clip_torch": "open_clip",
                  "captum": "captum", "quantus": "quantus", "numpy": "numpy"}


def _program(argv0: str) -> List[str]:
    # ``python -m captum_clip.cli`` leaves the path of __main__.py in argv[0]; the console script its own path.
    path = Path(argv0)
    if path.name == "__main__.py" and path.parent.name == "cli" and path.parent.parent.name == "captum_clip":
        return ["python", "-m", "captum_clip.cli"]
    return [path.name if path.name == "captum-clip" else argv0]


def provenance(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The command line (``sys.argv`` by default) and the versions of the packages a result depends on.

    Versions come from the installed distributions' metadata, so nothing (Quantus in particular) is imported.

    Returns:
        ``{"argv": [...], "command": "captum-clip evaluate ...", "versions": {"captum_clip": "0.1.0", ...}}``.
    """
    argv = list(sys.argv if argv is None else argv)
    versions = {}
    for distribution, name in _DISTRIBUTIONS.items():
        try:
            versions[name] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    command = shlex.join([*_program(argv[0]), *argv[1:]]) if argv else ""
    return {"argv": argv, "command": command, "versions": versions}


@contextlib.contextmanager
def collected_warnings():
    """Collect the warnings raised inside the block instead of printing them.

    Quantus warns once per metric call (and many times per run); printed, the warnings break the progress bar,
    so a run keeps them for its ``results.json`` and report, one entry per distinct message.

    Yields:
        A list, filled when the block ends, of ``{"category", "message", "count"}`` dicts in first-seen order.
    """
    summary: List[Dict[str, Any]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield summary
        finally:
            summary.extend(merge_warnings([{"category": w.category.__name__, "message": str(w.message).strip(),
                                            "count": 1} for w in caught]))


def merge_warnings(entries: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Warnings of several runs (or ranks) as one list, one entry per distinct category and message."""
    merged: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for entry in entries:
        key = (entry["category"], entry["message"])
        if key in merged:
            merged[key]["count"] += entry["count"]
        else:
            merged[key] = dict(entry)
    return list(merged.values())


def say_warnings(summary: Sequence[Dict[str, Any]], where: str) -> None:
    """One line on stderr for the warnings a run collected (their texts are in ``where``)."""
    if summary:
        total = sum(entry["count"] for entry in summary)
        print(f"captum-clip: {total} warning(s), {len(summary)} distinct, collected into {where}", file=sys.stderr)


def save_example(out_dir, index: int, stem: str, image: np.ndarray, queries: Sequence[str], gt: np.ndarray,
                 maps: Dict[str, np.ndarray]) -> Path:
    """Write one image's example as ``OUT_DIR/examples/example-<index>.npz`` (see the module docstring).

    Args:
        out_dir: the run's output folder.
        index: the image's position in the dataset (the file name; stems may hold slashes).
        stem: the image's name.
        image: ``(H, W, 3)`` uint8.
        queries: the Q query texts.
        gt: ``(Q, H, W)`` bool ground truth of each query.
        maps: method key -> ``(Q, H, W)`` maps, NaN where the method has no map for a query.

    Returns:
        The file written.
    """
    folder = Path(out_dir) / EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"example-{int(index):06d}.npz"
    stacked = np.stack([np.asarray(m, dtype=np.float16) for m in maps.values()]) if maps else \
        np.zeros((0, len(queries), *image.shape[:2]), np.float16)
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, index=np.int64(index), stem=np.str_(stem), image=np.asarray(image, np.uint8),
                        queries=np.asarray(list(queries), dtype=str), gt=np.asarray(gt, dtype=bool),
                        methods=np.asarray(list(maps), dtype=str), maps=stacked)
    temporary.replace(path)  # a report never reads a half-written example
    return path


@dataclass
class Example:
    """One image read back by :func:`load_examples`."""

    index: int
    stem: str
    image: np.ndarray
    queries: List[str]
    gt: np.ndarray
    maps: Dict[str, np.ndarray]


def load_examples(out_dir) -> List[Example]:
    """The examples of ``OUT_DIR/examples/``, in dataset order (none when the run kept no maps)."""
    examples = []
    for path in sorted((Path(out_dir) / EXAMPLES_DIR).glob("example-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path, allow_pickle=False) as stored:
            methods = [str(m) for m in stored["methods"]]
            maps = stored["maps"].astype(np.float32)
            examples.append(Example(int(stored["index"]), str(stored["stem"]), stored["image"],
                                    [str(q) for q in stored["queries"]], stored["gt"],
                                    {key: maps[k] for k, key in enumerate(methods)}))
    return sorted(examples, key=lambda e: e.index)


@dataclass
class MapRecorder:
    """Keeps the maps a protocol computes for some images of a batch, as they come out of
    :class:`~.protocols.Method` (so the report's maps are the scored ones, computed once).

    Args:
        items: the batch positions to keep.
    """

    items: Sequence[int]
    #: item -> [(target, (H, W) float32 map)], in the order the maps came.
    kept: Dict[int, List[Tuple[int, np.ndarray]]] = field(default_factory=dict)

    def __call__(self, items: Sequence[int], targets: Sequence[int], maps) -> None:
        wanted = set(self.items)
        for q, (item, target) in enumerate(zip(items, targets)):
            if item in wanted:
                self.kept.setdefault(int(item), []).append(
                    (int(target), maps[q].detach().float().cpu().numpy()))
