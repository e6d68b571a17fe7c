"""End to end on the golden cases: image file → windows → tiny-vit embeddings → ranks → maps.

chelsea's 730 overlapping windows are embedded once per module (batch 64) and shared by the tests here. Embedding
costs most of this suite's time, so coffee starts from its stored window embeddings instead (its crops are
checked pixel for pixel in test_convis_windows). Tolerances are the golden README's: batch-64 encoding perturbs
embeddings by ~1e-6, which may flip the r_min of windows whose best synset is within 1e-6 of a neighbour by one
rank.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from captum_clip.convis.concept_maps import ConceptMapper, WindowRanks
from captum_clip.convis.encoders import pil_preprocess_image_encoder
from captum_clip.convis.ranks import similarity_ranks

from ..conftest import torch_threads

IMAGES = ["chelsea", "coffee"]
EMBEDDED = "chelsea"


@pytest.fixture(scope="module")
def mapper(reference_vocabulary, tiny_clip, convis_golden_dir):
    model, preprocess, _ = tiny_clip
    golden_d = torch.from_numpy(np.load(convis_golden_dir / "text_bank_tiny-vit.npz")["D"])
    return ConceptMapper(reference_vocabulary, golden_d, pil_preprocess_image_encoder(model.encode_image, preprocess),
                         batch_size=64)


@pytest.fixture(scope="module")
def window_ranks(mapper, convis_golden_dir, golden_case):
    # One intra-op thread while embedding: on a busy 2-core runner, OpenMP spin-waiting made these 730 small
    # preprocess + forward passes 2-3x slower with two threads. Results differ at most by rounding, which the
    # README tolerances below cover.
    with torch_threads(1):
        out = {EMBEDDED: mapper.window_ranks(Image.open(convis_golden_dir / f"{EMBEDDED}.png"))}
    for image in IMAGES:
        if image != EMBEDDED:
            case = golden_case(image)
            embeddings = torch.from_numpy(case["window_embeddings"][case["overlaps_image"]])
            out[image] = WindowRanks(image=case["image_224"], boxes=mapper.boxes, embeddings=embeddings,
                                     ranks=similarity_ranks(embeddings, mapper.text_embeddings))
    return out


def test_window_embeddings(window_ranks, golden_case):
    case, ranks = golden_case(EMBEDDED), window_ranks[EMBEDDED]
    assert np.array_equal(ranks.image, case["image_224"])
    assert np.array_equal(ranks.boxes.numpy(), case["windows"][case["overlaps_image"]])
    np.testing.assert_allclose(
        ranks.embeddings.numpy(), case["window_embeddings"][case["overlaps_image"]], rtol=0, atol=1e-5
    )


@pytest.mark.parametrize("image", IMAGES)
def test_r_min_and_maps(image, mapper, window_ranks, golden_case):
    case = golden_case(image)
    result = mapper.maps(window_ranks[image], list(case["concepts"]))
    assert result.concepts == list(case["concepts"])
    overlap = case["overlaps_image"]
    gold, gap = case["r_min"][:, overlap], case["r_min_gap"][:, overlap]
    r_min = result.r_min.T.numpy()
    assert np.array_equal(r_min[gap >= 1e-6], gold[gap >= 1e-6])
    delta = np.abs(r_min - gold)
    assert delta.max() <= 1
    assert (result.coverage == 80).all()
    for k, concept in enumerate(case["concepts"]):
        span = case["rank_sum"][k].max() - case["rank_sum"][k].min()
        # README: a flipped window moves rank_sum by Δr on its square and may move min S or max S.
        atol = max(1e-6, 2 * delta[k].sum() / span)
        np.testing.assert_allclose(result.maps[k].numpy(), case["map"][k], rtol=0, atol=atol, err_msg=concept)
        if delta[k].sum() == 0:
            assert np.array_equal(result.rank_sum[k].numpy(), case["rank_sum"][k])
    assert result.maps.min() == 0 and result.maps.max() == 1


def test_mean_then_max_matches_a_direct_computation(mapper, window_ranks):
    """The webapp order, checked by scattering each synset's rank onto the canvas window by window."""
    ranks = window_ranks["chelsea"]
    result = mapper.maps(ranks, ["cat.n.01"], aggregation="mean_then_max")
    subtree = mapper.vocabulary.subtree("cat.n.01")
    total = np.zeros((len(subtree), 480, 480))
    count = np.zeros((480, 480))
    for (x, y, b), row in zip(ranks.boxes.tolist(), ranks.ranks[:, subtree].numpy(), strict=True):
        total[:, y : y + b, x : x + b] += row[:, None, None]
        count[y : y + b, x : x + b] += 1
    best_mean = (total / np.maximum(count, 1)).min(0)[128:352, 128:352]
    np.testing.assert_allclose(result.mean_rank[0].numpy(), best_mean, rtol=0, atol=1e-9)
    expected = 1 - (best_mean - best_mean.min()) / (best_mean.max() - best_mean.min())
    np.testing.assert_allclose(result.maps[0].numpy(), expected, rtol=0, atol=1e-9)
    assert result.r_min is None
    # max-then-mean never ranks a pixel worse than mean-then-max: a per-window min is below a min of means.
    canonical = mapper.maps(ranks, ["cat.n.01"])
    assert (canonical.mean_rank <= result.mean_rank + 1e-9).all()


def test_concepts_are_checked_before_any_window_is_embedded(reference_vocabulary, convis_golden_dir):
    def refuse(crops):
        raise AssertionError("encoder called before the concepts were validated")

    mapper = ConceptMapper(reference_vocabulary, torch.randn(len(reference_vocabulary), 8), refuse)
    image = Image.open(convis_golden_dir / "chelsea.png")
    for bad, message in [("run.v.01", "verb"), ("zyzzyx.n.01", "not a synset"), ([], "no concepts"),
                         ("skyscraper.n.01", "not in the concept vocabulary")]:
        with pytest.raises(ValueError, match=message):
            mapper(image, bad)
    with pytest.raises(ValueError, match="aggregation"):
        ConceptMapper(reference_vocabulary, torch.randn(len(reference_vocabulary), 8), refuse, aggregation="avg")
    with pytest.raises(ValueError, match="does not fit"):
        ConceptMapper(reference_vocabulary, torch.randn(5, 8), refuse)
