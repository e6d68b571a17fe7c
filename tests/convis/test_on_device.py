"""The window sweep, ranks and aggregation on the model's device, against the numpy / CPU definitions.

* Tensor-cut windows (:func:`iter_crop_batches`, one gather per crop shape from an unfolded canvas, rim alpha
  blended as a tensor op) equal :func:`window_crop` bit for bit, for every window of several geometries.
* Ranks, counted r_min and both aggregations on each available device equal the CPU implementation.
* The fast ``resize="tensor"`` mode stays within docs/convis.md's tolerance of the reference (PIL) mode.
* Progress bars: shown with ``progress=True``, once per call; silent for quick calls in auto mode.

Devices: the CPU always, CUDA when present (the CUDA cases skip otherwise).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from captum_clip.convis import ranks as ranks_module
from captum_clip.core import progress as progress_module
from captum_clip.convis.aggregation import WindowCoverage, aggregate_r_min, aggregate_ranks
from captum_clip.convis.concept_maps import ConceptMapper
from captum_clip.convis.ranks import (
    ranks_from_similarities,
    subtree_best_ranks,
    subtree_min_ranks,
)
from captum_clip.convis.windows import (
    REFERENCE_WINDOWS,
    WindowConfig,
    embed_windows,
    iter_crop_batches,
    padded_canvas,
    window_crop,
    window_grid,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")),
]

#: The tiny geometry of the attribution tests (41 windows overlap the image).
TINY = WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8)

CONFIGS = {
    "tiny": TINY,
    "tiny-plain": WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8, rim_blur=None, crop_minus1=False),
    "tiny-full-size": WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8, crop_minus1=False),
    "off-canvas-r2": WindowConfig(image_size=32, sizes=(40, 16), stride=8, pad=32, rim_blur=2.0),
    "off-canvas-r3.3": WindowConfig(image_size=32, sizes=(40, 16), stride=8, pad=32, rim_blur=3.3, pad_fill="gray"),
    "no-pad": WindowConfig(image_size=30, sizes=(12, 9), stride=5, pad=0),
}


def _image(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _tensor_crops(canvas, boxes, config, device, batch_size=7):
    crops = {}
    for rows, batch in iter_crop_batches(canvas, boxes, config, batch_size, device=device):
        assert batch.dtype == torch.uint8 and batch.device.type == torch.device(device).type
        assert len(rows) <= batch_size
        for row, crop in zip(rows.tolist(), batch.cpu()):
            crops[row] = crop.permute(1, 2, 0).numpy()
    return crops


# ---------------------------------------------------------------------------------------------- windows


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_tensor_cut_windows_equal_window_crop_for_every_window(name, device):
    config = CONFIGS[name]
    canvas = padded_canvas(_image(config.image_size, seed=len(name)), config)
    boxes = window_grid(config).boxes  # all windows, also those that leave the canvas
    crops = _tensor_crops(canvas, boxes, config, device)
    assert sorted(crops) == list(range(len(boxes)))
    for row, box in enumerate(boxes.tolist()):
        expected = window_crop(canvas, tuple(box), config)
        assert crops[row].shape == expected.shape, (name, box)
        assert np.array_equal(crops[row], expected), (name, box)


@pytest.mark.parametrize("device", DEVICES)
def test_tensor_cut_reference_windows_bit_exact_in_one_op_per_size(device):
    """The reference geometry: all 1,800 windows bit-exact; the 730 overlapping ones come in two cuts."""
    canvas = padded_canvas(_image(224, seed=7), REFERENCE_WINDOWS)
    grid = window_grid(REFERENCE_WINDOWS)
    crops = _tensor_crops(canvas, grid.boxes, REFERENCE_WINDOWS, device, batch_size=512)
    for row, box in enumerate(grid.boxes.tolist()):
        assert np.array_equal(crops[row], window_crop(canvas, tuple(box), REFERENCE_WINDOWS)), box
    inside = grid.boxes[grid.overlaps_image]
    batches = list(iter_crop_batches(canvas, inside, REFERENCE_WINDOWS, batch_size=1000, device=device))
    assert [tuple(b.shape) for _, b in batches] == [(441, 3, 127, 127), (289, 3, 63, 63)]


def test_rim_blend_keeps_untouched_pixels():
    """DIV255(255·v) = v for every uint8 v: blending only the rim strips is the same as blending the crop."""
    v = torch.arange(256, dtype=torch.int32) * 255 + 128
    assert torch.equal(((v >> 8) + v) >> 8, torch.arange(256, dtype=torch.int32))


def test_embeddings_stay_on_the_encoders_device_in_row_order():
    canvas = padded_canvas(_image(32), TINY)
    boxes = window_grid(TINY).boxes
    seen = []

    def encode(crops):
        seen.append(crops.device)
        return crops.float().mean((2, 3))

    encode.crop_device = torch.device("cpu")
    out = embed_windows(canvas, boxes, encode, TINY, batch_size=5)
    assert out.shape == (len(boxes), 3) and not out.requires_grad
    for i in range(len(boxes)):
        expected = window_crop(canvas, tuple(boxes[i].tolist()), TINY).reshape(-1, 3).mean(0)
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-6)
    assert set(seen) == {torch.device("cpu")}


# ---------------------------------------------------------------------------------------------- ranks


def _similarities_with_ties(n_windows=37, n_synsets=60, seed=0):
    generator = torch.Generator().manual_seed(seed)
    text = torch.nn.functional.normalize(torch.randn(n_synsets, 6, generator=generator), dim=-1)
    text[40:50] = text[10:20]  # identical texts: exact ties
    windows = torch.randn(n_windows, 6, generator=generator)
    z = torch.nn.functional.normalize(windows, dim=-1) @ text.T
    z[:5, 30:35] = z[:5, 3:4]  # more exact ties, in Sub(c) and across it
    return z


def _reference_ranks(z: torch.Tensor) -> np.ndarray:
    """The reference's rank by (z descending, row ascending), in numpy."""
    out = np.empty(z.shape, dtype=np.int64)
    for p, row in enumerate(z.numpy()):
        order = np.lexsort((np.arange(len(row)), -row))
        out[p, order] = np.arange(len(row))
    return out


SUBTREES = [[3], [30, 31, 32, 33, 34, 3], [10, 40], list(range(0, 60, 3)), [59, 58], [15, 45, 2, 7], list(range(60))]


@pytest.mark.parametrize("device", DEVICES)
def test_ranks_and_counted_r_min_on_the_device_equal_the_cpu(device, monkeypatch):
    z = _similarities_with_ties()
    cpu_ranks = ranks_from_similarities(z)
    assert np.array_equal(cpu_ranks.numpy(), _reference_ranks(z))
    expected = subtree_min_ranks(cpu_ranks, SUBTREES)
    on_device = z.to(device)
    ranks = ranks_from_similarities(on_device)
    assert ranks.device.type == torch.device(device).type
    assert torch.equal(ranks.cpu(), cpu_ranks)
    assert torch.equal(subtree_min_ranks(ranks, SUBTREES).cpu(), expected)
    assert torch.equal(subtree_best_ranks(on_device, SUBTREES).cpu(), expected)
    # Tiny budgets force one row and one concept per chunk.
    monkeypatch.setattr(ranks_module, "_SORT_BUDGET", 1)
    monkeypatch.setattr(ranks_module, "_COUNT_BUDGET", 1)
    assert torch.equal(ranks_from_similarities(on_device).cpu(), cpu_ranks)
    assert torch.equal(subtree_best_ranks(on_device, SUBTREES).cpu(), expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", [TINY, REFERENCE_WINDOWS], ids=["tiny", "reference"])
def test_aggregation_on_the_device_equals_the_cpu(device, config):
    grid = window_grid(config)
    boxes = grid.boxes[grid.overlaps_image]
    z = _similarities_with_ties(n_windows=len(boxes), seed=3)
    ranks = ranks_from_similarities(z)
    cpu = WindowCoverage(boxes, config.pad, config.image_size)
    moved = cpu.to(device)
    assert moved.device.type == torch.device(device).type and cpu.device.type == "cpu"
    for order in ("max_then_mean", "mean_then_max"):
        expected = aggregate_ranks(ranks, SUBTREES, cpu, order)
        got = aggregate_ranks(ranks.to(device), SUBTREES, moved, order)
        assert got.maps.device.type == torch.device(device).type
        for field in ("maps", "mean_rank", "rank_sum"):
            torch.testing.assert_close(getattr(got, field).cpu(), getattr(expected, field), rtol=0, atol=1e-12)
        assert torch.equal(got.coverage.cpu(), expected.coverage)
        if order == "max_then_mean":
            assert torch.equal(got.r_min.cpu(), expected.r_min)
            counted = aggregate_r_min(subtree_best_ranks(z.to(device), SUBTREES), moved)
            assert torch.equal(counted.rank_sum.cpu(), expected.rank_sum)


@pytest.fixture(scope="module")
def tiny_vocabulary(real_wordnet):
    from captum_clip.convis.vocabulary import ConceptVocabulary

    return ConceptVocabulary.from_synsets(["dog.n.01", "cat.n.01", "cup.n.01", "car.n.01", "circle.n.01"],
                                          wordnet=real_wordnet)


def _integer_encoder(device):
    """Exact on every device: 8 integer-valued features per crop (channel sums, quadrant sums), so the device's
    float rounding cannot flip a rank; one-hot texts make z a rescaling of them."""

    def encode(crops):
        assert crops.device.type == torch.device(device).type
        x = crops.to(torch.float32)
        h, w = x.shape[-2:]
        quadrants = [x[..., : h // 2, : w // 2], x[..., : h // 2, w // 2 :], x[..., h // 2 :, : w // 2],
                     x[..., h // 2 :, w // 2 :], x[:, :1]]
        return torch.cat([x.sum((2, 3)), torch.stack([q.sum((1, 2, 3)) for q in quadrants], 1)], 1)

    encode.crop_device = encode.device = torch.device(device)
    return encode


@pytest.mark.parametrize("device", DEVICES)
def test_mapper_on_the_device_equals_the_cpu_mapper(device, tiny_vocabulary):
    text = torch.eye(8)[torch.arange(len(tiny_vocabulary)) % 8]  # rows j and j + 8 tie exactly
    concepts = ["dog.n.01", "cat.n.01", "entity.n.01", "cup.n.01", "car.n.01", "circle.n.01"]
    image = _image(32, seed=11)
    cpu = ConceptMapper(tiny_vocabulary, text, _integer_encoder("cpu"), windows=TINY, batch_size=6)
    moved = ConceptMapper(tiny_vocabulary, text, _integer_encoder(device), windows=TINY, batch_size=6)
    assert moved.device.type == torch.device(device).type
    expected_ranks = cpu.window_ranks(image)
    ranks = moved.window_ranks(image)
    assert ranks.embeddings.device.type == torch.device(device).type and not ranks.has_ranks
    assert torch.equal(ranks.embeddings.cpu(), expected_ranks.embeddings)
    for order in ("max_then_mean", "mean_then_max"):
        for subset in (concepts[:2], concepts):  # counted r_min (few concepts) and the sorted rank matrix
            expected = cpu.maps(expected_ranks, subset, aggregation=order)
            got = moved.maps(ranks, subset, aggregation=order)
            assert got.maps.device.type == torch.device(device).type
            torch.testing.assert_close(got.maps.cpu(), expected.maps, rtol=0, atol=1e-12)
            torch.testing.assert_close(got.rank_sum.cpu(), expected.rank_sum, rtol=0, atol=1e-9)
            if order == "max_then_mean":
                assert torch.equal(got.r_min.cpu(), expected.r_min)
    assert torch.equal(ranks.ranks.cpu(), expected_ranks.ranks)


def test_counted_and_sorted_r_min_agree_on_a_real_sweep(tiny_vocabulary):
    text = torch.nn.functional.normalize(torch.randn(len(tiny_vocabulary), 8, generator=torch.Generator()
                                                     .manual_seed(2)), dim=-1)
    mapper = ConceptMapper(tiny_vocabulary, text, _integer_encoder("cpu"), windows=TINY)
    ranks = mapper.window_ranks(_image(32, seed=4))
    subtrees = [tiny_vocabulary.subtree(c) for c in ["dog.n.01", "entity.n.01", "cup.n.01"]]
    counted = ranks.subtree_min_ranks(subtrees)
    assert not ranks.has_ranks  # a few concepts: no sort
    assert torch.equal(counted, subtree_min_ranks(ranks.ranks, subtrees))


# ------------------------------------------------------------------------------------ fast vs reference mode


def test_fast_mode_maps_within_the_documented_tolerance(tiny_clip, golden_case, convis_golden_dir,
                                                        reference_vocabulary):
    """docs/convis.md: with ``resize="tensor"``, r_min matches the reference (PIL) on > 95% of windows and is never
    more than 3 ranks off. Here on every window of a stride-32 sub-grid of the reference geometry (164 windows,
    each also a reference window), against the golden reference's own r_min; the maps then differ by at most
    what those rank differences can move a min-max map."""
    from PIL import Image

    from captum_clip.convis.encoders import tensor_resize_image_encoder

    from ..conftest import torch_threads

    model, _, _ = tiny_clip
    case = golden_case("chelsea")
    config = WindowConfig(stride=32)
    golden_d = torch.from_numpy(np.load(convis_golden_dir / "text_bank_tiny-vit.npz")["D"])
    encoder = tensor_resize_image_encoder(model.encode_image, 224, (0.48145466, 0.4578275, 0.40821073),
                                          (0.26862954, 0.26130258, 0.27577711))
    mapper = ConceptMapper(reference_vocabulary, golden_d, encoder, windows=config, batch_size=64)
    with torch_threads(1):
        fast = mapper(Image.open(convis_golden_dir / "chelsea.png"), list(case["concepts"]))
    # The same windows in the golden (reference-order, stride-16) enumeration.
    golden_index = {tuple(box): i for i, box in enumerate(case["windows"].tolist())}
    rows = [golden_index[tuple(box)] for box in mapper.boxes.tolist()]
    assert len(rows) == 164
    reference_r_min = torch.from_numpy(case["r_min"][:, rows].T.astype(np.int64))
    reference = aggregate_r_min(reference_r_min, mapper.coverage)
    delta = (fast.r_min.cpu() - reference_r_min).abs()
    assert (delta == 0).double().mean() > 0.95
    assert delta.max() <= 3
    coverage = float(mapper.coverage.cell_count.min())
    for k in range(len(case["concepts"])):
        shift = float(delta[:, k].sum()) / coverage  # bound on any pixel's mean-rank change
        flat = reference.mean_rank[k]
        span = float(flat.max() - flat.min())
        bound = 4 * shift / (span - 2 * shift) if span > 2 * shift else 1.0
        assert (fast.maps[k].cpu() - reference.maps[k]).abs().max() <= bound + 1e-12, case["concepts"][k]


# ----------------------------------------------------------------------------------------------- progress


def test_progress_bars(tiny_vocabulary, capsys, monkeypatch):
    text = torch.eye(8)[torch.arange(len(tiny_vocabulary)) % 8]
    image = _image(32, seed=1)
    shown = ConceptMapper(tiny_vocabulary, text, _integer_encoder("cpu"), windows=TINY, progress=True)
    with shown.sweep_progress(2):
        shown.window_ranks(image)
        shown.window_ranks(image)
    err = capsys.readouterr().err
    assert "ConVis: window sweep" in err and f"{2 * len(shown.boxes)}/{2 * len(shown.boxes)}" in err
    shown.window_ranks(image)  # outside sweep_progress: its own bar
    assert f"{len(shown.boxes)}/{len(shown.boxes)}" in capsys.readouterr().err
    # Auto: silent for a quick sweep, shown once it runs past the delay.
    auto = ConceptMapper(tiny_vocabulary, text, _integer_encoder("cpu"), windows=TINY, progress=None)
    auto.window_ranks(image)
    assert "ConVis" not in capsys.readouterr().err
    monkeypatch.setattr(progress_module, "AUTO_PROGRESS_DELAY", 0.0)
    auto.window_ranks(image)
    assert "ConVis: window sweep" in capsys.readouterr().err
    ConceptMapper(tiny_vocabulary, text, _integer_encoder("cpu"), windows=TINY).window_ranks(image)
    assert "ConVis" not in capsys.readouterr().err  # the mapper's default: off
    with pytest.raises(TypeError, match="progress"):
        progress_module.progress_bar("yes", total=1, desc="x", unit="x")


def test_attribution_progress_on_text_bank_and_sweep(tiny_classifiers, tiny_bundles, tiny_vocabulary, tmp_path,
                                                     capsys):
    from captum_clip.convis.attribution import ConVisAttribution

    from ..conftest import images_for, torch_threads

    method = ConVisAttribution(tiny_classifiers["vit"], tiny_vocabulary, windows=TINY, cache_dir=tmp_path,
                               progress=True)
    images = images_for(tiny_bundles["vit"], n=3, seed=0)
    images[2] = images[0]
    with torch_threads(1):
        method.attribute(images, target="dog.n.01")
    err = capsys.readouterr().err
    assert "ConVis: encoding synset texts" in err
    n = len(method.mapper.boxes)
    assert f"{2 * n}/{2 * n}" in err  # one bar over the call's two distinct images
    assert ConVisAttribution(tiny_classifiers["vit"], tiny_vocabulary, windows=TINY)._progress is None  # auto
    with pytest.raises(ValueError, match="progress"):
        ConVisAttribution(tiny_classifiers["vit"], tiny_vocabulary, windows=TINY, progress="always")
