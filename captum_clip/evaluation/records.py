"""What a run keeps for its HTML report: the command and versions behind it, and example maps.

An example is one image of the run with every map each method produced for it, in ``OUT_DIR/examples/`` as one
compressed ``.npz`` per image (:func:`save_example`, :func:`load_examples`):

* ``stem``: the image's name; ``index``: its position in the dataset.
* ``image``: ``(H, W, 3)`` uint8, the model's input as it sees it (resized and cropped, normalisation undone).
* ``queries``: ``(Q,)`` the query texts; ``gt``: ``(Q, H, W)`` bool, each query's ground truth (all False where
  the dataset has none).
* ``methods``: ``(M,)`` the method keys (random-weights rows included); ``maps``: ``(M, Q, H, W)`` float32,
  NaN where a method has no map for a query (float32: IG maps of a full-size ViT fall below float16's range).
* ``signed``: ``(M,)`` bool and ``outlier_perc``: ``(M,)`` float, how each method's maps are displayed (the
  method's ``signed_maps`` and ``display_outlier_perc``, as in the CLI's figures).
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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

EXAMPLES_DIR = "examples"
#: Distribution name -> what the report calls it.
_DISTRIBUTIONS = {"captum-clip": "captum_clip", "torch": "torch", "open_clip_torch": "open_clip",
                  "captum": "captum", "quantus": "quantus", "numpy": "numpy"}


def _program(argv0: str) -> Optional[List[str]]:
    """How the CLI was started, or None when ``argv0`` is not the CLI (a notebook, a script, pytest)."""
    # ``python -m captum_clip.cli`` leaves the path of __main__.py in argv[0]; the console script its own path.
    path = Path(argv0)
    if path.name == "__main__.py" and path.parent.name == "cli" and path.parent.parent.name == "captum_clip":
        return ["python", "-m", "captum_clip.cli"]
    return [path.name] if path.name == "captum-clip" else None


def provenance(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The command line (``sys.argv`` by default) and the versions of the packages a result depends on.

    Versions come from the installed distributions' metadata, so nothing (Quantus in particular) is imported.
    When the process is not the CLI (``run_evaluation`` called from a notebook or a script), its command line
    does not describe the run, so the command says it came from Python and names the program.

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
    program = _program(argv[0]) if argv else None
    if program is None:
        name = Path(argv[0]).name if argv and argv[0] else "an interactive session"
        return {"argv": [], "command": f"(called from Python: {name})", "versions": versions}
    return {"argv": argv, "command": shlex.join([*program, *argv[1:]]), "versions": versions}


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


#: How a method's maps are shown: ``(signed, outlier_perc)``.
Display = Tuple[bool, float]


def display_settings(attribution) -> Display:
    """``(signed, outlier_perc)`` of an attribution method (its ``signed_maps``, ``display_outlier_perc``); a
    baseline that is no method (the random one) shows unsigned and unclipped."""
    return bool(getattr(attribution, "signed_maps", False)), float(getattr(attribution, "display_outlier_perc", 0.0))


def remove_examples(out_dir, which: Callable[[int], bool]) -> None:
    """Remove the example files an earlier run left in ``out_dir`` for the dataset indices ``which`` selects, so
    that a report never mixes two runs (each rank removes those of the batches it computes)."""
    for path in (Path(out_dir) / EXAMPLES_DIR).glob("example-*.npz"):
        index = path.name[len("example-"):-len(".npz")]
        if index.isdigit() and which(int(index)):
            path.unlink(missing_ok=True)


def save_example(out_dir, index: int, stem: str, image: np.ndarray, queries: Sequence[str], gt: np.ndarray,
                 maps: Dict[str, np.ndarray], display: Optional[Dict[str, Display]] = None) -> Path:
    """Write one image's example as ``OUT_DIR/examples/example-<index>.npz`` (see the module docstring).

    Args:
        out_dir: the run's output folder.
        index: the image's position in the dataset (the file name; stems may hold slashes).
        stem: the image's name.
        image: ``(H, W, 3)`` uint8.
        queries: the Q query texts.
        gt: ``(Q, H, W)`` bool ground truth of each query.
        maps: method key -> ``(Q, H, W)`` maps, NaN where the method has no map for a query.
        display: method key -> ``(signed, outlier_perc)`` (:func:`display_settings`); unsigned, unclipped
            for a key it lacks.

    Returns:
        The file written.
    """
    display = display or {}
    folder = Path(out_dir) / EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"example-{int(index):06d}.npz"
    stacked = np.stack([np.asarray(m, dtype=np.float32) for m in maps.values()]) if maps else \
        np.zeros((0, len(queries), *image.shape[:2]), np.float32)
    settings = [display.get(key, (False, 0.0)) for key in maps]
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, index=np.int64(index), stem=np.str_(stem), image=np.asarray(image, np.uint8),
                        queries=np.asarray(list(queries), dtype=str), gt=np.asarray(gt, dtype=bool),
                        methods=np.asarray(list(maps), dtype=str), maps=stacked,
                        signed=np.asarray([s for s, _ in settings], dtype=bool),
                        outlier_perc=np.asarray([o for _, o in settings], dtype=np.float64))
    temporary.replace(path)  # a report never reads a half-written example
    return path


def save_examples(out_dir, images, mean_std, examples: Sequence[Dict[str, Any]],
                  display: Optional[Dict[str, Display]] = None) -> None:
    """Several examples of one batch: ``images`` ``(n, 3, H, W)`` normalised (un-normalised once with
    ``mean_std``), and for each image the keyword arguments of :func:`save_example` but the image."""
    from ..viz import to_display_images

    shown = to_display_images(images, *mean_std)
    for pixels, example in zip(shown, examples):
        save_example(out_dir, image=pixels, display=display, **example)


@dataclass
class Example:
    """One image read back by :func:`load_examples`."""

    index: int
    stem: str
    image: np.ndarray
    queries: List[str]
    gt: np.ndarray
    maps: Dict[str, np.ndarray]
    #: method key -> ``(signed, outlier_perc)``.
    display: Dict[str, Display] = field(default_factory=dict)


def load_examples(out_dir) -> List[Example]:
    """The examples of ``OUT_DIR/examples/``, in dataset order (none when the run kept no maps).

    Raises:
        ValueError: an example file that cannot be read (named).
    """
    examples = []
    for path in sorted((Path(out_dir) / EXAMPLES_DIR).glob("example-*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        try:
            with np.load(path, allow_pickle=False) as stored:
                methods = [str(m) for m in stored["methods"]]
                maps = stored["maps"].astype(np.float32)
                signed = stored["signed"] if "signed" in stored else np.zeros(len(methods), bool)
                clip = stored["outlier_perc"] if "outlier_perc" in stored else np.zeros(len(methods))
                examples.append(Example(int(stored["index"]), str(stored["stem"]), stored["image"],
                                        [str(q) for q in stored["queries"]], stored["gt"],
                                        {key: maps[k] for k, key in enumerate(methods)},
                                        {key: (bool(signed[k]), float(clip[k])) for k, key in enumerate(methods)}))
        except (OSError, ValueError, KeyError, EOFError) as error:
            raise ValueError(f"cannot read the example file {path} ({error}); delete it, or rerun with "
                             "--report to write the examples again.") from None
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
