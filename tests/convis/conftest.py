"""Fixtures for the ConVis tests: golden-data locations and the tiny reference model (the WordNet readers, real
and fake, are in the root conftest).

Real-data tests skip, saying why, when WordNet or ``../shared`` is absent.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


SHARED_MISSING = "../shared not found: golden equivalence needs the shared folder beside the clone"


def _repo_root() -> Path:
    for folder in Path(__file__).resolve().parents:
        if (folder / "setup.cfg").is_file():
            return folder
    raise RuntimeError("setup.cfg not found above the test file")


@pytest.fixture(scope="session")
def convis_golden_dir() -> Path:
    folder = _repo_root().parent / "shared" / "golden" / "convis"
    if not folder.is_dir():
        pytest.skip(SHARED_MISSING)
    return folder


@pytest.fixture(scope="session")
def model_dir() -> Path:
    folder = _repo_root().parent / "shared" / "golden" / "surgery"
    if not (folder / "tiny-vit.safetensors").is_file():
        pytest.skip(SHARED_MISSING)
    return folder


@pytest.fixture(scope="session")
def golden_vocabulary_names(convis_golden_dir) -> list[str]:
    return (convis_golden_dir / "vocabulary.txt").read_text().split()


@pytest.fixture(scope="session")
def reference_vocabulary(real_wordnet, golden_vocabulary_names):
    """T in the reference's row order (the order of ``vocabulary.txt`` and of the golden D)."""
    from captum_clip.convis.vocabulary import ConceptVocabulary

    return ConceptVocabulary.from_synsets(golden_vocabulary_names, wordnet=real_wordnet)


@pytest.fixture(scope="session")
def golden_case(convis_golden_dir):
    """Loader of ``convis_tiny-vit_<image>.npz``."""
    cache = {}

    def load(image: str):
        if image not in cache:
            cache[image] = dict(np.load(convis_golden_dir / f"convis_tiny-vit_{image}.npz"))
        return cache[image]

    return load


@pytest.fixture(scope="session")
def tiny_clip(model_dir):
    """The golden README's model: open_clip.CLIP from tiny-vit.json, strict safetensors load, eval()."""
    import open_clip
    from safetensors.torch import load_file

    model = open_clip.CLIP(**json.loads((model_dir / "tiny-vit.json").read_text()))
    model.load_state_dict(load_file(str(model_dir / "tiny-vit.safetensors")), strict=True)
    model.eval()
    preprocess = open_clip.image_transform(224, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    return model, preprocess, tokenizer


@pytest.fixture(scope="session")
def golden_text_subset(real_wordnet, golden_vocabulary_names, tiny_clip, tmp_path_factory):
    """Our text bank under tiny-vit for every 10th golden synset (plus their hypernyms), in a temp cache.

    A tenth keeps the test quick; each gloss is encoded independently, so the rows stand for the rest. The map
    tests rank against the stored golden D.
    """
    from captum_clip.core.text import text_encoder
    from captum_clip.convis.text_bank import build_text_bank
    from captum_clip.convis.vocabulary import ConceptVocabulary

    model, _, tokenizer = tiny_clip
    vocabulary = ConceptVocabulary.from_synsets(golden_vocabulary_names[::10], wordnet=real_wordnet)
    cache_dir = tmp_path_factory.mktemp("convis_cache")
    bank = build_text_bank(
        vocabulary,
        text_encoder(model, tokenizer, stage="the golden text bank", normalize=False),
        model_fingerprint="tiny-vit/golden",
        cache_dir=cache_dir,
    )
    return vocabulary, bank, cache_dir
