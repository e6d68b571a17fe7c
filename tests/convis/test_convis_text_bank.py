"""Text bank: encoding, on-disk cache (hit, invalidation, corruption) and the golden D."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from captum_clip.convis.text_bank import build_text_bank, text_bank_cache_path
from captum_clip.convis.vocabulary import ConceptVocabulary


class CountingEncoder:
    """A deterministic text 'model': a hash of each string as a 6-d vector; records every call."""

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:24], dtype=np.uint32) for t in texts]
        return torch.tensor(np.stack(rows).astype(np.float64) / 2**31 - 1.0, dtype=torch.float32)


def _refuse(texts):
    raise AssertionError("the cache should have been hit: nothing may be encoded")


@pytest.fixture
def vocab(fake_wordnet):
    return ConceptVocabulary.from_words(["cat", "cup", "bird"], wordnet=fake_wordnet)


def test_encodes_once_then_hits_the_cache(vocab, tmp_path):
    encoder = CountingEncoder()
    first = build_text_bank(vocab, encoder, model_fingerprint="hash-model", cache_dir=tmp_path)
    assert encoder.calls == [len(vocab)] and not first.from_cache
    assert first.embeddings.shape == (len(vocab), 6)
    assert torch.allclose(first.embeddings.norm(dim=1), torch.ones(len(vocab)))
    expected = torch.nn.functional.normalize(CountingEncoder()(vocab.texts()), dim=1)
    assert torch.equal(first.embeddings, expected)
    assert text_bank_cache_path(vocab, "hash-model", cache_dir=tmp_path).is_file()

    second = build_text_bank(vocab, _refuse, model_fingerprint="hash-model", cache_dir=tmp_path)
    assert second.from_cache
    assert torch.equal(second.embeddings, first.embeddings)
    second.check_matches(vocab)


def test_cache_key_separates_models_sources_and_vocabularies(vocab, tmp_path, fake_wordnet):
    build_text_bank(vocab, CountingEncoder(), model_fingerprint="model-a", cache_dir=tmp_path)
    for kwargs, other_vocab in [
        ({"model_fingerprint": "model-b"}, vocab),
        ({"model_fingerprint": "model-a", "text_source": "lemmas"}, vocab),
        ({"model_fingerprint": "model-a"}, ConceptVocabulary.from_words(["cat", "cup"], wordnet=fake_wordnet)),
    ]:
        encoder = CountingEncoder()
        bank = build_text_bank(other_vocab, encoder, cache_dir=tmp_path, **kwargs)
        assert not bank.from_cache and encoder.calls, kwargs
    assert len(list((tmp_path / "convis_text_banks").glob("*.safetensors"))) == 4
    # Without the cache, everything is encoded again and nothing is written.
    encoder = CountingEncoder()
    build_text_bank(vocab, encoder, model_fingerprint="model-a", cache_dir=tmp_path / "off", use_cache=False)
    assert encoder.calls and not (tmp_path / "off").exists()


def test_corrupt_cache_is_reencoded_with_a_warning(vocab, tmp_path):
    build_text_bank(vocab, CountingEncoder(), model_fingerprint="m", cache_dir=tmp_path)
    path = text_bank_cache_path(vocab, "m", cache_dir=tmp_path)
    path.write_bytes(b"not a safetensors file")
    encoder = CountingEncoder()
    with pytest.warns(RuntimeWarning, match="unreadable embedding cache"):
        bank = build_text_bank(vocab, encoder, model_fingerprint="m", cache_dir=tmp_path)
    assert encoder.calls and not bank.from_cache
    assert build_text_bank(vocab, _refuse, model_fingerprint="m", cache_dir=tmp_path).from_cache


def test_bad_arguments(vocab, tmp_path, fake_wordnet):
    with pytest.raises(ValueError, match="model_fingerprint"):
        build_text_bank(vocab, CountingEncoder(), model_fingerprint="", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="encode_texts returned"):
        build_text_bank(vocab, lambda t: torch.zeros(1, 3), model_fingerprint="m", cache_dir=tmp_path)
    bank = build_text_bank(vocab, CountingEncoder(), model_fingerprint="m", use_cache=False)
    with pytest.raises(ValueError, match="another vocabulary"):
        bank.check_matches(ConceptVocabulary.from_words(["cat"], wordnet=fake_wordnet))


# ------------------------------------------------------------------------------------------------- golden


def test_golden_text_bank_rows(golden_text_subset, convis_golden_dir):
    vocabulary, bank, cache_dir = golden_text_subset
    golden = np.load(convis_golden_dir / "text_bank_tiny-vit.npz")
    golden_rows = {name: i for i, name in enumerate(golden["vocabulary"])}
    rows = [golden_rows[name] for name in vocabulary.names]
    assert len(rows) >= 708
    np.testing.assert_allclose(bank.embeddings.numpy(), golden["D"][rows], rtol=0, atol=1e-6)
    # A second build of the same bank reads the file the first one wrote.
    again = build_text_bank(vocabulary, _refuse, model_fingerprint="tiny-vit/golden", cache_dir=cache_dir)
    assert again.from_cache and torch.equal(again.embeddings, bank.embeddings)
