"""Reading a user's images for the ConVis experiments.

* OOD detection: an ImageNet-style root with one folder per class, named by its WordNet ID (``n01530575``, as in
  ImageNet) or by a synset name (``brambling.n.01``). Folders named otherwise are skipped.
* Localisation: an image folder plus a boxes file, one box per line, ``<image path> <x> <y> <width> <height>`` in
  the image's own pixels (CUB-200-2011's ``bounding_boxes.txt`` convention, with the path instead of the image
  id; commas or whitespace separate the fields; ``#`` starts a comment; several lines may name the same image).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nltk.corpus.reader.wordnet import WordNetCorpusReader, WordNetError

__all__ = ["IMAGE_SUFFIXES", "ClassFolder", "class_folders", "list_images", "read_boxes_file"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_WNID = re.compile(r"^n(\d{8})$")


@dataclass(frozen=True)
class ClassFolder:
    """One class folder: its synset and its image files (sorted)."""

    synset: str
    images: list[Path]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in *folder*, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def folder_synset(name: str, wordnet: WordNetCorpusReader) -> str | None:
    """The synset a class folder name stands for: a WordNet ID ``nXXXXXXXX`` or a synset name, else None."""
    match = _WNID.match(name)
    try:
        if match:
            return wordnet.synset_from_pos_and_offset("n", int(match[1])).name()
        if re.match(r"^.+\.n\.\d+$", name):
            return wordnet.synset(name).name()
    except (WordNetError, ValueError, LookupError, AttributeError):
        return None
    return None


def class_folders(root: str | os.PathLike, wordnet: WordNetCorpusReader, limit: int | None = None) -> list[ClassFolder]:
    """The class folders of an ImageNet-style root.

    Args:
        root: folder holding one sub-folder per class.
        wordnet: the reader that resolves folder names.
        limit: keep at most this many images per class (the first by name).

    Returns:
        Class folders whose names resolve to a noun synset, sorted by folder name.

    Raises:
        ValueError: when no sub-folder name resolves.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        synset = folder_synset(folder.name, wordnet)
        if synset is not None:
            images = list_images(folder)
            out.append(ClassFolder(synset, images[:limit] if limit else images))
    if not out:
        raise ValueError(
            f"no class folder under {root} is named by a WordNet ID (n01530575) or a synset name (brambling.n.01)"
        )
    return out


def _box_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, [f for f in re.split(r"[,\s]+", line) if f]


def read_boxes_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Ground-truth boxes per image.

    Args:
        path: the boxes file (format in the module docstring).

    Returns:
        ``{image path as written: (M, 4) float64 inclusive boxes (x0, y0, x1, y1)}``; ``x1 = x + width − 1``.

    Raises:
        ValueError: a malformed line (with its number), or a file without boxes.
    """
    path = Path(path)
    boxes: dict[str, list[list[float]]] = {}
    for number, fields in _box_lines(path):
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected '<image> <x> <y> <width> <height>', got {fields}")
        try:
            x, y, width, height = (float(v) for v in fields[1:])
        except ValueError:
            raise ValueError(f"{path}:{number}: box values must be numbers, got {fields[1:]}") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"{path}:{number}: width and height must be positive")
        boxes.setdefault(fields[0], []).append([x, y, x + width - 1, y + height - 1])
    if not boxes:
        raise ValueError(f"{path} holds no boxes")
    return {k: np.asarray(v, dtype=np.float64) for k, v in boxes.items()}
