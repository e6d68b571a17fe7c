"""Tiny open_clip models built from configs, golden-data location, and model snapshots."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from .fake_wordnet import write_fake_wordnet
import torch

from captum_clip import ZeroShotClassifier, load_clip

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
GOLDEN = SHARED / "golden"

TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
TINY_CONFIGS = {
    "vit": {"embed_dim": 32, "quick_gelu": True,
            "vision_cfg": {"image_size": 64, "layers": 8, "width": 64, "head_width": 32, "patch_size": 16},
            "text_cfg": TINY_TEXT},
    "vit_shallow": {"embed_dim": 32, "quick_gelu": True,
                    "vision_cfg": {"image_size": 48, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8,
                                   "ls_init_value": 0.5},
                    "text_cfg": TINY_TEXT},
    "resnet": {"embed_dim": 32, "quick_gelu": True,
               "vision_cfg": {"image_size": 96, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
               "text_cfg": TINY_TEXT},
}
CLASSNAMES = ["cat", "dog", "red star", "blue ring"]
TEMPLATES = ["a photo of a {}.", "{}"]


@contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads, then restore the previous setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def golden_dir(name: str) -> Path:
    folder = GOLDEN / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: golden equivalence needs ../shared beside the clone (as in CI)")
    return folder


def perturb_(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every parameter and buffer so zero-initialised biases cannot hide a mis-mapped weight."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.add_(0.02 * torch.randn(tensor.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.abs_()


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every embedding bank the tests encode goes to a temporary cache, never the user's."""
    folder = tmp_path_factory.mktemp("captum_clip_cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("CAPTUM_CLIP_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory):
    """One bundle per tiny architecture, loaded through load_clip from a config file."""
    folder = tmp_path_factory.mktemp("configs")
    bundles = {}
    for kind, config in TINY_CONFIGS.items():
        path = folder / f"tiny-{kind}.json"
        path.write_text(json.dumps(config))
        torch.manual_seed(0)
        bundle = load_clip(path)
        perturb_(bundle.model, seed=1)
        if kind == "resnet":
            # Randomly initialised, the v-v attention pool is nearly uniform and every token gets the
            # same feature (patch ranges ~1e-4); trained CLIP ResNets attend far more sharply.
            with torch.no_grad():
                pool = bundle.model.visual.attnpool
                for projection, factor in ((pool.v_proj, 16), (pool.q_proj, 8), (pool.k_proj, 8)):
                    projection.weight.mul_(factor)
        bundles[kind] = bundle
    return bundles


@pytest.fixture(scope="session")
def tiny_classifiers(tiny_bundles):
    return {kind: ZeroShotClassifier(bundle, CLASSNAMES, TEMPLATES) for kind, bundle in tiny_bundles.items()}


def images_for(bundle, n: int = 3, size=None, seed: int = 0) -> torch.Tensor:
    size = size or bundle.model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def snapshot(model: torch.nn.Module) -> dict:
    """Everything attribute() must leave as it was: weights, module types, hooks, flags."""
    hook_dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                  "_state_dict_hooks", "_load_state_dict_pre_hooks", "_forward_hooks_with_kwargs")
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "types": [(name, type(m)) for name, m in model.named_modules()],
        "hooks": [(name, attr, len(getattr(m, attr, {}))) for name, m in model.named_modules() for attr in hook_dicts],
        "grad": [(n, p.requires_grad, p.grad is None) for n, p in model.named_parameters()],
        "training": [m.training for m in model.modules()],
    }


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["types"] == before["types"]
    assert after["hooks"] == before["hooks"]
    assert after["grad"] == before["grad"]
    assert after["training"] == before["training"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        # Bitwise, with a NaN equal to itself (a test may hand over a model with a NaN weight on purpose).
        assert value.dtype == after["state"][key].dtype and torch.equal(
            value.nan_to_num(0.123), after["state"][key].nan_to_num(0.123)
        ) and torch.equal(value.isnan(), after["state"][key].isnan()), f"{key} changed"


# ------------------------------------------------------------------------------------------------ WordNet

NO_WORDNET = (
    "no WordNet installed (apt-get install wordnet-base, or python -m nltk.downloader wordnet): "
    "real-WordNet tests skipped"
)


@pytest.fixture(scope="session")
def real_wordnet():
    from captum_clip.wordnet import WordNetNotFoundError, load_wordnet

    try:
        return load_wordnet()
    except WordNetNotFoundError:
        pytest.skip(NO_WORDNET)


@pytest.fixture
def isolated_nltk_path(tmp_path, monkeypatch):
    """An empty nltk data path and no WNSEARCHDIR, so only the fake databases a test creates are visible."""
    import nltk

    from captum_clip.wordnet import clear_wordnet_cache

    empty = tmp_path / "empty_nltk_data"
    empty.mkdir()
    monkeypatch.setattr(nltk.data, "path", [str(empty)])
    monkeypatch.delenv("WNSEARCHDIR", raising=False)
    monkeypatch.delenv("NLTK_DATA", raising=False)
    clear_wordnet_cache()
    yield empty
    clear_wordnet_cache()


@pytest.fixture
def fake_wordnet(tmp_path, isolated_nltk_path):
    """A reader over the fake database laid out like Debian's package (no lexnames, no index.sense)."""
    from captum_clip.wordnet import load_wordnet

    folder = write_fake_wordnet(tmp_path / "system_wordnet", with_lexnames=False)
    return load_wordnet(system_dirs=[folder])


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
    out = {}
    for kind, method in mutual_methods.items():
        images = images_for(tiny_bundles[kind], n=3, seed=1)
        out[kind] = (images, method.explain(images))
    return out


@pytest.fixture()
def cli_files(tmp_path, monkeypatch):
    """``(image, config, bank)`` files for CLI runs: a 50x70 noise image, the tiny ViT's config JSON and a tiny
    descriptor bank, with a private embedding cache."""
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("CAPTUM_CLIP_CACHE_DIR", str(tmp_path / "cache"))
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(image)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps(TINY_BANK))
    return image, config, bank
