"""Fixtures for the Mutual Knowledge tests: the golden folder sits beside the clone, never inside it."""

from pathlib import Path

import numpy as np
import pytest


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "setup.cfg").is_file():
            return parent
    return here.parents[2]


GOLDEN_DIR = (_repo_root() / ".." / "shared" / "golden" / "mutual").resolve()


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN_DIR.is_dir():
        pytest.skip("../shared/golden/mutual not found: golden equivalence needs the shared folder beside the clone")
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def load_golden(golden_dir):
    cache = {}

    def load(name: str):
        if name not in cache:
            path = golden_dir / name
            if not path.is_file():
                pytest.skip(f"golden file {name} not found in {golden_dir}")
            with np.load(path, allow_pickle=False) as data:
                cache[name] = {k: data[k] for k in data.files}
        return cache[name]

    return load


# ------------------------------------------------------------------------------ the attribution on tiny models

#: A small bank in Menon & Vondrick's {class: [descriptors]} format, with repeats across classes.
TINY_BANK = {
    "cat": ["furry", "whiskers", "pointy ears", "a long tail", "slit pupils", "a pink nose"],
    "dog": ["furry", "a wagging tail", "a snout", "floppy ears", "a collar", "a wet nose"],
    "red star": ["red", "five points", "star-shaped", "a red object", "sharp corners", "bright color"],
    "blue ring": ["blue", "round", "a hole in the middle", "a blue object", "ring-shaped", "bright color"],
}


@pytest.fixture(scope="session")
def mutual_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mutual_cache")


@pytest.fixture(scope="session")
def mutual_methods(tiny_classifiers, mutual_cache):
    """MutualConceptAttribution per tiny tower, with the small bank and a private cache."""
    from captum_clip.mutual import MutualConceptAttribution

    return {kind: MutualConceptAttribution(tiny_classifiers[kind], TINY_BANK, cache_dir=mutual_cache)
            for kind in ("vit", "resnet")}


@pytest.fixture(scope="session")
def explained(mutual_methods, tiny_bundles):
    """Per tower: three images and their explanations (fitted jointly), shared by the read-only tests."""
    from ..conftest import images_for

    out = {}
    for kind, method in mutual_methods.items():
        images = images_for(tiny_bundles[kind], n=3, seed=1)
        out[kind] = (images, method.explain(images))
    return out
