"""The core's text side and its one embedding cache: chunked encoding, the text-tower fingerprint, cache keys."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from captum_clip import NonFiniteError, ZeroShotClassifier
from captum_clip.core.cache import CACHE_ENV, cache_path, cache_root, cached_embeddings
from captum_clip.core.text import encode_texts, prompt_ensembles, text_tower_fingerprint

from ..conftest import TEMPLATES

TEXTS = ["a cat", "a dog", "a red star", "a blue ring", "nothing at all"]


def test_cache_root_is_explicit_then_environment_then_platform(monkeypatch, tmp_path):
    assert cache_root(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "captum_clip"


def test_cached_embeddings_hit_miss_corrupt_and_off(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"embeddings": torch.arange(6.0).reshape(3, 2)}

    key = {"text_tower": "t", "texts": "abc"}
    first, hit = cached_embeddings("banks", key, compute, names=("embeddings",), rows=3, cache_dir=tmp_path)
    assert not hit and calls == [1] and cache_path("banks", key, tmp_path).is_file()
    second, hit = cached_embeddings("banks", key, compute, names=("embeddings",), rows=3, cache_dir=tmp_path)
    assert hit and calls == [1] and torch.equal(second["embeddings"], first["embeddings"])
    # Another key part is another file; a key is order-free.
    assert cache_path("banks", {"texts": "abc", "text_tower": "t"}, tmp_path) == cache_path("banks", key, tmp_path)
    assert cache_path("banks", {**key, "texts": "abd"}, tmp_path) != cache_path("banks", key, tmp_path)
    # A file with the wrong rows or an unreadable one is re-encoded, with a warning naming it.
    with pytest.warns(RuntimeWarning, match="do not match"):
        cached_embeddings("banks", key, compute, names=("embeddings",), rows=4, cache_dir=tmp_path)
    cache_path("banks", key, tmp_path).write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable embedding cache"):
        _, hit = cached_embeddings("banks", key, compute, names=("embeddings",), rows=3, cache_dir=tmp_path)
    assert not hit
    _, hit = cached_embeddings("banks", key, compute, names=("embeddings",), rows=3, cache_dir=tmp_path / "off",
                               use_cache=False)
    assert not hit and not (tmp_path / "off").exists()


def test_encode_texts_is_chunked_unit_norm_and_checked(tiny_bundles):
    bundle = tiny_bundles["vit"]
    whole = encode_texts(bundle.model, bundle.tokenizer, TEXTS)
    torch.testing.assert_close(encode_texts(bundle.model, bundle.tokenizer, TEXTS, chunk_size=2), whole,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(whole.norm(dim=-1), torch.ones(len(TEXTS)))
    with torch.no_grad():
        raw = bundle.model.encode_text(bundle.tokenizer(TEXTS))
    torch.testing.assert_close(encode_texts(bundle.model, bundle.tokenizer, TEXTS, normalize=False), raw,
                               atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        encode_texts(bundle.model, bundle.tokenizer, TEXTS, chunk_size=0)
    with pytest.raises(ValueError, match="no texts"):
        encode_texts(bundle.model, bundle.tokenizer, [])
    broken = copy.deepcopy(bundle.model)
    with torch.no_grad():
        broken.token_embedding.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="the bank went"):
        encode_texts(broken, bundle.tokenizer, TEXTS, stage="the bank went")


def test_texts_are_encoded_in_fp32_under_any_autocast(tiny_bundles):
    """The text caches are keyed by the text tower, not by a precision: a bank encoded inside a bf16 method must
    equal the fp32 one, or whichever precision encoded it first would decide what every later run reads."""
    bundle = tiny_bundles["vit"]
    texts = ["a red star", "a blue ring", "a dog"]
    plain = encode_texts(bundle.model, bundle.tokenizer, texts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = encode_texts(bundle.model, bundle.tokenizer, texts)
        assert torch.is_autocast_enabled("cpu")  # the caller's autocast is back after the call
        reduced = bundle.model.encode_text(bundle.tokenizer(texts)).float()
    assert torch.equal(inside, plain)
    assert not torch.allclose(F.normalize(reduced, dim=-1), plain, atol=1e-6)  # bf16 would have changed them


def test_long_text_encoding_shows_a_bar_with_an_eta(tiny_bundles, capsys, monkeypatch):
    from captum_clip.core import progress

    bundle = tiny_bundles["vit"]
    encode_texts(bundle.model, bundle.tokenizer, TEXTS, chunk_size=2)
    assert "encoding texts" not in capsys.readouterr().err  # auto: a quick call prints nothing
    monkeypatch.setattr(progress, "AUTO_PROGRESS_DELAY", 0.0)  # as if it had run past the delay
    prompt_ensembles(bundle.model, bundle.tokenizer, TEXTS[:2], TEMPLATES)
    err = capsys.readouterr().err
    assert f"class embeddings (2 texts x {len(TEMPLATES)} templates)" in err and "<" in err  # tqdm's ETA
    encode_texts(bundle.model, bundle.tokenizer, TEXTS, progress=False)
    assert capsys.readouterr().err == ""


def test_prompt_ensembles_average_the_normalised_prompts(tiny_bundles):
    bundle = tiny_bundles["vit"]
    ensembles = prompt_ensembles(bundle.model, bundle.tokenizer, ["cat", "dog"], TEMPLATES)
    with torch.no_grad():
        prompts = F.normalize(bundle.model.encode_text(bundle.tokenizer([t.format("dog") for t in TEMPLATES])), dim=-1)
    torch.testing.assert_close(ensembles[1], F.normalize(prompts.mean(dim=0), dim=-1), atol=1e-6, rtol=0)


def test_the_fingerprint_follows_the_text_tower_only(tiny_bundles):
    bundle = tiny_bundles["vit"]
    model = copy.deepcopy(bundle.model)
    first = text_tower_fingerprint(model, bundle.tokenizer)
    assert text_tower_fingerprint(model, bundle.tokenizer) == first
    with torch.no_grad():
        model.visual.conv1.weight.add_(1.0)
    assert text_tower_fingerprint(model, bundle.tokenizer) == first
    with torch.no_grad():
        model.token_embedding.weight[0, 0] += 1.0
    assert text_tower_fingerprint(model, bundle.tokenizer) != first
    assert text_tower_fingerprint(tiny_bundles["resnet"].model, bundle.tokenizer) != first


def test_a_second_classifier_reads_its_class_embeddings_from_the_cache(tiny_bundles, tmp_path, monkeypatch):
    bundle = copy.deepcopy(tiny_bundles["vit"])
    encoded = []
    original = bundle.model.encode_text

    def counting(tokens, *args, **kwargs):
        encoded.append(tokens.shape[0])
        return original(tokens, *args, **kwargs)

    monkeypatch.setattr(bundle.model, "encode_text", counting)
    classes = ["cat", "dog", "red star"]
    first = ZeroShotClassifier(bundle, classes, TEMPLATES, cache_dir=tmp_path)
    assert sum(encoded) == len(classes) * len(TEMPLATES)
    second = ZeroShotClassifier(bundle, classes, TEMPLATES, cache_dir=tmp_path)
    assert sum(encoded) == len(classes) * len(TEMPLATES)  # nothing encoded again
    assert torch.equal(second.text_features, first.text_features)
    ZeroShotClassifier(bundle, classes, ["{}"], cache_dir=tmp_path)  # other templates: other embeddings
    assert sum(encoded) == len(classes) * (len(TEMPLATES) + 1)
    ZeroShotClassifier(bundle, classes, TEMPLATES, cache_dir=tmp_path, use_cache=False)
    assert sum(encoded) == len(classes) * (2 * len(TEMPLATES) + 1)
