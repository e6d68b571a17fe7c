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
