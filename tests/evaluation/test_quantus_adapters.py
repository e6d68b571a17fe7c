"""Quantus explain_func adapters and the scoped Quantus 0.6.0 fixes, on the tiny ViT (64 px, 4 classes).

Each fix is shown twice: the raw Quantus code path failing (or saturating), then the fix working.
"""

from copy import deepcopy

import numpy as np
import pytest
import quantus
import quantus.helpers.utils as quantus_utils
import torch
from quantus.functions.perturb_func import baseline_replacement_by_mask
from quantus.helpers.asserts import assert_attributions
from quantus.helpers.model.pytorch_model import PyTorchModel
from torch import nn

from captum_clip import ZeroShotClassifier
from captum_clip.methods import METHODS
from captum_clip.evaluation import evaluate_metric, make_explain_func, make_metric, make_random_explain_func
from captum_clip.evaluation.quantus_adapters import DEGENERATE_JITTER, DEGENERATE_LEVEL
from captum_clip.evaluation.quantus_fixes import (
    PixelROAD,
    ScopedMPRT,
    numpy_trapz_compat,
    rgb_irof_perturb_func,
    rgb_road_perturb_func,
)
from captum_clip.evaluation.quantus_fixes import _calculate_auc_trapezoid, _ScopedPyTorchModel

from ..conftest import CLASSNAMES, TEMPLATES, torch_threads

SIZE = 64
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
#: Every registered method (methods added to the registry later are picked up) and the random baseline. The
#: metric grid runs on all of them (issue 3: every listed metric on every method); with the tiny model and
#: ConVis's tiny windows it takes seconds.
EXPLAINERS = sorted(METHODS) + ["random"]
QUIET = {"disable_warnings": True, "display_progressbar": False}
needs_numpy_without_trapz = pytest.mark.skipif(hasattr(np, "trapz"), reason="this numpy still has np.trapz")


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """CLIP-normalised smooth colour images ``(n, 3, 64, 64)``: SLIC finds ~100 segments (pure noise gives 1)."""
    low = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    images = nn.functional.interpolate(low, size=SIZE, mode="bilinear", align_corners=False)
    return ((images - CLIP_MEAN) / CLIP_STD).numpy().astype(np.float32)


def explainer(name: str):
    if name == "ig":
        return make_explain_func("ig", attribute_kwargs={"n_steps": 4})
    if name == "convis":
        # "cat" and "dog" have several noun senses, which ConVis refuses to guess: map the classes to synsets,
        # and keep the vocabulary and windows tiny so the test stays fast.
        from captum_clip.convis import WindowConfig

        return make_explain_func(
            "convis", vocabulary=["cat.n.01", "dog.n.01", "star.n.05", "ring.n.02"],
            windows=WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8),
            class_synsets={"cat": "cat.n.01", "dog": "dog.n.01", "red star": "star.n.05", "blue ring": "ring.n.02"})
    return make_explain_func(name)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Quantus runs hundreds of tiny forward passes; on shared, busy cores two intra-op threads make each
    one up to 20x slower than one thread (measured), so this module uses one and restores the setting."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def vit(tiny_classifiers):
    return tiny_classifiers["vit"]


@pytest.fixture(scope="module")
def batch(vit):
    """Two images, their predicted classes and a box mask ``(2, 1, 64, 64)``."""
    x = smooth_images(2)
    with torch.no_grad():
        y = vit(torch.from_numpy(x)).argmax(-1).numpy()
    s = np.zeros((2, 1, SIZE, SIZE), dtype=np.float32)
    s[:, :, 16:40, 20:44] = 1
    return x, y, s


@pytest.fixture(scope="module")
def random_maps(batch):
    x, y, _ = batch
    return make_random_explain_func(0)(None, x, y)


class ZeroMethod:
    """A registry method whose maps are all zero, like a ReLU'd Grad-CAM without positive evidence."""

    def __init__(self, classifier, **options):
        self.classifier = classifier

    def attribute(self, images, target=None):
        return torch.zeros(images.shape[0], 1, *images.shape[-2:])


# ---------------------------------------------------------------------------------------------
# explain_func adapters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPLAINERS)
def test_explain_func_contract(vit, batch, name):
    x, y, _ = batch
    func = explainer(name)
    maps = func(model=vit, inputs=x, targets=y)
    assert type(maps) is np.ndarray and maps.dtype == np.float32 and maps.shape == (2, 1, SIZE, SIZE)
    assert np.isfinite(maps).all()
    flat = maps.reshape(2, -1)
    assert (flat.max(1) > flat.min(1)).all(), "a map is constant"
    assert_attributions(x_batch=x, a_batch=maps)
    # float64 inputs and one scalar target for the whole batch are accepted too.
    again = func(model=vit, inputs=x.astype(np.float64), targets=np.int64(y[0]), device="cpu")
    assert again.shape == maps.shape and again.dtype == np.float32


def test_device_kwarg_moves_inputs(vit, batch):
    x, y, _ = batch
    func = make_explain_func("clip")
    reference = func(vit, x, y)
    np.testing.assert_allclose(func(vit, x, y, device="cpu"), reference, atol=1e-6)
    np.testing.assert_allclose(func(vit, x, y, device=torch.device("cpu")), reference, atol=1e-6)
    if not torch.cuda.is_available():
        # The inputs really are sent to the requested device.
        with pytest.raises((RuntimeError, AssertionError)):
            func(vit, x, y, device="cuda")
    assert make_random_explain_func()(vit, x, y, device="cpu").shape == (2, 1, SIZE, SIZE)


def test_explain_func_explains_the_model_it_is_given(vit, batch):
    """MPRT hands over a randomised deep copy: its maps must come from that copy, not a cached method."""
    x, y, _ = batch
    func = make_explain_func("clip")
    original = func(vit, x, y)
    randomised = deepcopy(vit)
    with torch.no_grad():
        for parameter in randomised.model.visual.transformer.resblocks[-1].parameters():
            parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    assert not np.allclose(func(randomised, x, y), original, atol=1e-3)
    np.testing.assert_allclose(func(vit, x, y), original, atol=1e-6)
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        func(vit.model.visual, x, y)


def test_random_baseline_is_seeded_per_image(batch):
    x, y, _ = batch
    maps = make_random_explain_func(0)(None, x, y)
    assert maps.dtype == np.float32 and maps.min() >= 0 and maps.max() < 1
    # Same image, same map, whatever its batch position; another seed, another map.
    np.testing.assert_array_equal(make_random_explain_func(0)(None, x[::-1], y)[::-1], maps)
    assert not np.allclose(make_random_explain_func(1)(None, x, y), maps)
    assert make_explain_func("random", seed=0)(None, x, y).tolist() == maps.tolist()


def test_methods_registered_later_work_and_constant_maps_are_never_all_zero(vit, batch, monkeypatch):
    x, y, _ = batch
    monkeypatch.setitem(METHODS, "zero", ZeroMethod)
    zeros = np.zeros((2, 1, SIZE, SIZE), np.float32)
    # Quantus rejects an all-zero batch outright...
    with pytest.raises(AssertionError, match="equal to zero"):
        assert_attributions(x_batch=x, a_batch=zeros)
    # ...and a batch where every map is the same constant.
    with pytest.raises(AssertionError, match="uniformly distributed"):
        assert_attributions(x_batch=x, a_batch=zeros + 0.5)

    func = make_explain_func("zero")
    maps = func(vit, x, y)
    assert func.n_maps == 2 and func.n_degenerate == 2
    assert maps.min() >= DEGENERATE_LEVEL and maps.max() <= DEGENERATE_LEVEL * (1 + DEGENERATE_JITTER) * 1.0001
    assert (maps.reshape(2, -1).max(1) > maps.reshape(2, -1).min(1)).all()
    assert_attributions(x_batch=x, a_batch=maps)
    # Tie-breaking depends on the image only: reproducible and batch-invariant.
    np.testing.assert_array_equal(func(vit, x[::-1], y[::-1])[::-1], maps)
    np.testing.assert_array_equal(func(vit, x[:1], y[:1]), maps[:1])
    # It works inside a Quantus metric, where a raw all-zero map would be refused.
    scores = evaluate_metric(make_metric("RelevanceMassAccuracy"), vit, x, y, s_batch=batch[2], explain_func=func)
    box_fraction = batch[2][0].mean()
    np.testing.assert_allclose(scores, box_fraction, rtol=2e-3)  # the uniform map's mass in the box

    with pytest.raises(ValueError, match="constant map"):
        make_explain_func("zero", on_degenerate="raise")(vit, x, y)
    kept = make_explain_func("zero", on_degenerate="keep")(vit, x, y)
    assert not kept.any()


def test_relu_gradcam_without_positive_evidence(tiny_classifiers):
    """The real case: ReLU'd Grad-CAM of the tiny random ResNet is all zero for some classes."""
    resnet = tiny_classifiers["resnet"]
    low = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x = nn.functional.interpolate(low, size=96, mode="bilinear", align_corners=False).numpy()
    gradcam = METHODS["gradcam"](resnet)
    empty = [c for c in range(resnet.num_classes)
             if not gradcam.attribute(torch.from_numpy(x), target=c).any()]
    if not empty:
        pytest.skip("no class has an all-zero ReLU'd Grad-CAM on this model")
    y = np.full(2, empty[0])
    raw = gradcam.attribute(torch.from_numpy(x), target=torch.from_numpy(y)).numpy()
    s = np.zeros((2, 1, 96, 96), np.float32)
    s[:, :, 20:60, 30:70] = 1
    with pytest.raises(AssertionError, match="equal to zero"):
        quantus.RelevanceMassAccuracy(**QUIET)(model=resnet, x_batch=x, y_batch=y, a_batch=raw, s_batch=s)
    func = make_explain_func("gradcam")
    scores = evaluate_metric(make_metric("RelevanceMassAccuracy"), resnet, x, y, s, explain_func=func)
    assert func.n_degenerate == func.n_maps == 2
    np.testing.assert_allclose(scores, s[0].mean(), rtol=2e-3)  # chance: the box's share of the image


def test_only_the_constant_maps_of_a_batch_are_replaced(vit, batch, monkeypatch):
    x, y, _ = batch

    class HalfZero(ZeroMethod):
        def attribute(self, images, target=None):
            maps = torch.rand(images.shape[0], 1, *images.shape[-2:], generator=torch.Generator().manual_seed(0))
            maps[0] = 0
            return maps

    monkeypatch.setitem(METHODS, "half_zero", HalfZero)
    func = make_explain_func("half_zero")
    maps = func(vit, x, y)
    assert func.n_degenerate == 1
    assert maps[0].max() < 2 * DEGENERATE_LEVEL and maps[1].max() > 0.5


@pytest.mark.parametrize("name", EXPLAINERS)
def test_raw_quantus_pointing_game_and_pixel_flipping(vit, batch, name):
    x, y, s = batch
    func = explainer(name)
    hits = quantus.PointingGame(**QUIET)(model=vit, x_batch=x, y_batch=y, s_batch=s, explain_func=func,
                                         device="cpu")
    curves = quantus.PixelFlipping(features_in_step=2048, **QUIET)(
        model=vit, x_batch=x, y_batch=y, s_batch=s, explain_func=func, softmax=False, device="cpu")
    assert len(hits) == 2 and set(map(float, hits)) <= {0.0, 1.0}
    curves = np.asarray(curves)
    assert curves.shape == (2, 3 * SIZE * SIZE // 2048) and np.isfinite(curves).all()


# ---------------------------------------------------------------------------------------------
# Fix 1: np.trapz
# ---------------------------------------------------------------------------------------------

@needs_numpy_without_trapz
def test_trapz_compat_is_scoped():
    original = quantus_utils.calculate_auc
    with pytest.raises(AttributeError, match="trapz"):
        quantus_utils.calculate_auc(np.arange(3.0))
    with numpy_trapz_compat():
        assert quantus_utils.calculate_auc(np.arange(3.0)) == 2.0
        np.testing.assert_allclose(quantus_utils.calculate_auc(np.ones((2, 4)), batched=True), [3.0, 3.0])
        assert not hasattr(np, "trapz")  # numpy itself is never touched
        with numpy_trapz_compat():
            pass
        assert quantus_utils.calculate_auc is _calculate_auc_trapezoid  # still patched after a nested exit
    assert quantus_utils.calculate_auc is original and not hasattr(np, "trapz")
    with pytest.raises(KeyError):
        with numpy_trapz_compat():
            raise KeyError("boom")
    assert quantus_utils.calculate_auc is original


def test_trapz_compat_does_nothing_when_numpy_has_trapz(monkeypatch):
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    original = quantus_utils.calculate_auc
    with numpy_trapz_compat():
        assert quantus_utils.calculate_auc is original
        assert quantus_utils.calculate_auc(np.arange(3.0)) == 2.0
    assert hasattr(np, "trapz")


@needs_numpy_without_trapz
def test_pixel_flipping_auc_needs_the_compat(vit, batch, random_maps):
    x, y, _ = batch
    metric = quantus.PixelFlipping(features_in_step=2048, return_auc_per_sample=True, **QUIET)
    with pytest.raises(AttributeError, match="trapz"):
        metric(model=vit, x_batch=x, y_batch=y, a_batch=random_maps, softmax=False)
    scores = evaluate_metric(metric, vit, x, y, a_batch=random_maps)
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert not hasattr(np, "trapz")


# ---------------------------------------------------------------------------------------------
# Fix 2: IROF on RGB
# ---------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:The settings for perturbing input:UserWarning")
def test_irof_fails_on_rgb_and_the_perturb_func_fixes_it(vit, batch, random_maps):
    x, y, _ = batch
    with numpy_trapz_compat():
        with pytest.raises(AssertionError, match="shape of arr must be the same as the mask"):
            quantus.IROF(return_aggregate=False, **QUIET)(model=vit, x_batch=x, y_batch=y, a_batch=random_maps,
                                                          softmax=False)
    scores = evaluate_metric(make_metric("IROF"), vit, x, y, a_batch=random_maps)
    assert scores.shape == (2,) and np.isfinite(scores).all()


@pytest.mark.filterwarnings("ignore:The settings for perturbing input:UserWarning")
def test_irof_baseline_is_per_image(vit, batch, random_maps):
    """Quantus's "mean" baseline is taken over the whole batch; the fix takes it per image."""
    x, y, _ = batch
    companion = np.concatenate([x[:1], x[1:] + 3.0])  # a much brighter second image
    with torch.no_grad():
        y2 = vit(torch.from_numpy(companion)).argmax(-1).numpy()

    def broadcast_only(arr, mask, **kwargs):  # the shape fix alone
        return baseline_replacement_by_mask(arr=arr, mask=np.broadcast_to(mask, arr.shape), **kwargs)

    def first_score(perturb_func, images, targets):
        metric = make_metric("IROF", perturb_func=perturb_func)
        return evaluate_metric(metric, vit, images, targets, a_batch=random_maps[: len(images)])[0]

    alone = first_score(broadcast_only, x[:1], y[:1])
    assert abs(first_score(broadcast_only, companion, y2) - alone) > 1e-3
    alone = first_score(rgb_irof_perturb_func, x[:1], y[:1])
    assert first_score(rgb_irof_perturb_func, companion, y2) == pytest.approx(alone, rel=1e-4, abs=1e-5)


def test_irof_perturb_func_shapes():
    arr = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    mask = np.zeros((2, 1, 4, 4), bool)
    mask[0, 0, 0, 0] = mask[1, 0, 3, 3] = True
    out = rgb_irof_perturb_func(arr, mask, perturb_baseline="black")
    assert out.shape == arr.shape and out.dtype == arr.dtype
    np.testing.assert_array_equal(out[0, :, 0, 0], arr[0].min())  # every channel, per-image baseline
    np.testing.assert_array_equal(out[1, :, 3, 3], arr[1].min())
    assert (out != arr).sum() == 5  # 6 replaced values, one of which already was the minimum
    single = rgb_irof_perturb_func(arr[0], mask[0, 0], perturb_baseline=0.0)
    np.testing.assert_array_equal(single[:, 0, 0], 0.0)


# ---------------------------------------------------------------------------------------------
# Fix 3: ROAD on RGB
# ---------------------------------------------------------------------------------------------

def _pixel_counter(counts):
    def counting(arr, indices, **kwargs):
        counts.append(len(np.unique(np.asarray(indices) % (SIZE * SIZE))))
        return rgb_road_perturb_func(arr, indices, **kwargs)
    return counting


def test_road_fails_on_rgb_and_removes_the_requested_pixels_once_fixed(vit, batch, random_maps):
    x, y, _ = batch
    with pytest.raises(IndexError):
        quantus.ROAD(percentages=[30], **QUIET)(model=vit, x_batch=x, y_batch=y, a_batch=random_maps)
    # The index fix alone runs, but stock ROAD cuts the channel-broadcast ranking at H*W*p entries:
    # about a third of the requested pixels are imputed.
    counts = []
    quantus.ROAD(percentages=[30], perturb_func=_pixel_counter(counts), **QUIET)(
        model=vit, x_batch=x, y_batch=y, a_batch=random_maps)
    requested = int(SIZE * SIZE * 0.3)
    assert len(counts) == 2 and all(requested / 3 <= c <= requested / 3 + 1 for c in counts)

    counts = []
    metric = make_metric("ROAD", percentages=[30, 70], perturb_func=_pixel_counter(counts))
    assert isinstance(metric, PixelROAD)
    scores = evaluate_metric(metric, vit, x, y, a_batch=random_maps)
    assert counts == [requested] * 2 + [int(SIZE * SIZE * 0.7)] * 2
    assert scores.shape == (2,) and np.isfinite(scores).all()
    assert set(metric.evaluation_scores) == {30, 70}


def test_road_keeps_every_batch(vit, batch, random_maps):
    x, _, _ = batch
    with torch.no_grad():
        logits = vit(torch.from_numpy(x))
    # Image 1 is scored against its least likely class: its curve is 0 unless imputation makes that class win.
    y = np.array([int(logits[0].argmax()), int(logits[1].argmin())])
    percentages = [10, 20]

    def stock(images, targets, batch_size):
        return quantus.ROAD(percentages=percentages, noise=0.0, perturb_func=rgb_road_perturb_func, **QUIET)(
            model=vit, x_batch=images, y_batch=targets, a_batch=random_maps[: len(images)], batch_size=batch_size)

    # Stock ROAD reports the first batch only.
    assert stock(x, y, batch_size=1) == stock(x[:1], y[:1], batch_size=1)

    metric = make_metric("ROAD", percentages=percentages, noise=0.0)
    per_sample = evaluate_metric(metric, vit, x, y, a_batch=random_maps, batch_size=1)
    assert metric.per_sample_curves.shape == (2, 2) and not metric.per_sample_curves[1].any()
    assert list(metric.evaluation_scores.values()) == pytest.approx(metric.per_sample_curves.mean(0).tolist())
    np.testing.assert_array_equal(evaluate_metric(make_metric("ROAD", percentages=percentages, noise=0.0), vit, x, y,
                                                  a_batch=random_maps, batch_size=2), per_sample)


def test_road_perturb_func_maps_indices_to_pixels():
    image = np.random.default_rng(0).random((3, 8, 8))
    np.random.seed(0)
    from_broadcast = rgb_road_perturb_func(image, [5, 64 + 5, 128 + 5, 9], noise=0.0)
    np.random.seed(0)
    from_pixels = rgb_road_perturb_func(image, [5, 9], noise=0.0)
    np.testing.assert_allclose(from_broadcast, from_pixels)
    changed = np.flatnonzero((from_pixels != image).any(axis=0).reshape(-1))
    assert set(changed) <= {5, 9}
    np.testing.assert_array_equal(rgb_road_perturb_func(image, []), image)


# ---------------------------------------------------------------------------------------------
# Fix 4: softmax saturation
# ---------------------------------------------------------------------------------------------

def test_softmax_saturates_on_clip_logits(tiny_bundles, batch, random_maps):
    x, _, _ = batch
    metric = quantus.PixelFlipping(features_in_step=1024, **QUIET)
    # A single text query: the softmax is identically 1.
    single = ZeroShotClassifier(tiny_bundles["vit"], ["cat"], TEMPLATES)
    y = np.zeros(2, dtype=np.int64)
    assert np.unique(metric(model=single, x_batch=x, y_batch=y, a_batch=random_maps)).tolist() == [1.0]
    logits = np.asarray(evaluate_metric(metric, single, x, y, a_batch=random_maps, reduce_curves=False))
    assert (np.ptp(logits, axis=1) > 0.1).all()

    # Trained CLIP's logit scale (100) over 4 classes: the softmax is 1 to within 1e-4 at every step.
    peaked = ZeroShotClassifier(tiny_bundles["vit"], CLASSNAMES, TEMPLATES, logit_scale=100.0)
    with torch.no_grad():
        y = peaked(torch.from_numpy(x)).argmax(-1).numpy()
    probabilities = np.asarray(metric(model=peaked, x_batch=x, y_batch=y, a_batch=random_maps))
    logits = np.asarray(evaluate_metric(metric, peaked, x, y, a_batch=random_maps, reduce_curves=False))
    assert np.ptp(probabilities) < 1e-4 and (np.ptp(logits, axis=1) > 1.0).all()
    # softmax=None keeps the metric's own default (True here).
    assert np.ptp(evaluate_metric(metric, peaked, x, y, a_batch=random_maps, softmax=None,
                                  reduce_curves=False)) < 1e-4


# ---------------------------------------------------------------------------------------------
# The classifier mirrors its model's mode, so Quantus accepts it without touching the model
# ---------------------------------------------------------------------------------------------

def test_classifier_mode_follows_the_model_and_quantus_accepts_it(tiny_bundles, batch, random_maps):
    x, y, _ = batch
    classifier = ZeroShotClassifier(tiny_bundles["vit"], CLASSNAMES, TEMPLATES)
    metric = quantus.PixelFlipping(features_in_step=2048, **QUIET)
    assert not classifier.training and not any(m.training for m in classifier.model.modules())
    assert len(metric(model=classifier, x_batch=x, y_batch=y, a_batch=random_maps, softmax=False)) == 2
    # A model that really is in training mode is refused by Quantus, and left in that mode.
    training = deepcopy(classifier).train()
    with pytest.raises(AttributeError, match="evaluation mode"):
        metric(model=training, x_batch=x, y_batch=y, a_batch=random_maps, softmax=False)
    assert all(m.training for m in training.modules())


# ---------------------------------------------------------------------------------------------
# Fix 5: MPRT scope
# ---------------------------------------------------------------------------------------------

def test_stock_mprt_starts_with_text_layers_that_cannot_change_anything(vit, batch):
    x = torch.from_numpy(batch[0])
    wrapped = PyTorchModel(vit, channel_first=True)
    names = []
    with torch.no_grad():
        for name, model in wrapped.get_random_layer_generator(order="top_down"):
            if name.startswith("model.visual"):
                break
            names.append(name)
            torch.testing.assert_close(model(x), vit(x))  # randomised text layers: same logits
    assert names and names[0] == "model.ln_final"
    assert not any(isinstance(m, nn.MultiheadAttention)
                   for n, m in vit.named_modules() if hasattr(m, "reset_parameters"))

    scoped = _ScopedPyTorchModel(wrapped, "vision", None, randomise_attention=True)
    n_attention = sum(isinstance(m, nn.MultiheadAttention) for m in vit.model.visual.modules())
    n_vision = sum(hasattr(m, "reset_parameters") for m in vit.model.visual.modules())
    assert scoped.random_layer_generator_length == n_vision + n_attention
    generator = scoped.get_random_layer_generator(order="top_down")
    name, model = next(generator)
    assert name == "model.visual.ln_post"
    name, model = next(generator)
    with torch.no_grad():
        assert not torch.allclose(model(x), vit(x))
    only_attention = _ScopedPyTorchModel(
        wrapped, lambda n, m: isinstance(m, nn.MultiheadAttention) and n.startswith("model.visual."), 1, True)
    with torch.no_grad():
        before = vit.model.visual.transformer.resblocks[-1].attn.in_proj_weight.clone()
        name, model = next(only_attention.get_random_layer_generator())
        assert name.endswith("resblocks.7.attn")
        assert not torch.equal(model.model.visual.transformer.resblocks[-1].attn.in_proj_weight, before)
        assert torch.equal(vit.model.visual.transformer.resblocks[-1].attn.in_proj_weight, before)
    assert _ScopedPyTorchModel(wrapped, "all", None, False).random_layer_generator_length == \
        wrapped.random_layer_generator_length


def test_scoped_mprt_layers_rng_and_average(vit, batch):
    x, y, _ = batch
    metric = make_metric("MPRT", max_layers=2)
    assert isinstance(metric, ScopedMPRT)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    similarities = evaluate_metric(metric, vit, x, y, explain_func="clip")
    assert torch.equal(torch.get_rng_state(), state)  # Quantus's reseeding does not leak
    assert list(metric.evaluation_scores) == ["original", "model.visual.ln_post",
                                              "model.visual.transformer.resblocks.7.mlp.c_proj"]
    assert metric.evaluation_scores["original"] == pytest.approx([1.0, 1.0])
    assert similarities.shape == (2,) and np.isfinite(similarities).all()
    # The random baseline does not depend on the model: MPRT must flag it (similarity 1).
    random_similarity = evaluate_metric(make_metric("MPRT", max_layers=1), vit, x, y, explain_func="random")
    assert random_similarity == pytest.approx([1.0, 1.0])

    scores = {"original": [1.0, 1.0], "a": [0.2, 0.4], "b": [0.0, 0.2]}
    stock = quantus.MPRT(**QUIET)
    stock.evaluation_scores = dict(scores)
    assert stock.recompute_average_correlation_per_sample() == pytest.approx([0.4, 1.6 / 3])  # includes "original"
    metric.evaluation_scores = dict(scores)
    assert metric.recompute_average_correlation_per_sample() == pytest.approx([0.1, 0.3])


# ---------------------------------------------------------------------------------------------
# Every metric x every method
# ---------------------------------------------------------------------------------------------

CHEAP_METRICS = {
    "PointingGame": {},
    "AttributionLocalisation": {},
    "RelevanceMassAccuracy": {},
    "RelevanceRankAccuracy": {},
    "TopKIntersection": {"k": 64},
    "AUC": {},
    "PixelFlipping": {"features_in_step": 2048},  # must divide H*W; 3*H*W/2048 = 6 steps
    "RegionPerturbation": {"patch_size": 16, "regions_evaluation": 4},
    "FaithfulnessCorrelation": {"nr_runs": 3, "subset_size": 256},
    "IROF": {},
    "ROAD": {"percentages": [20, 60]},
    "MPRT": {"max_layers": 2},
}


# Known, harmless Quantus 0.6.0 warnings: AttributionLocalisation divides by x_batch[2:].size (0 for a batch of
# 2; only its weighted score uses it), and IROF pads the segment loop of the image with fewer segments.
@pytest.mark.filterwarnings("ignore:divide by zero encountered in divide:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:Ratio is smaller than max size:UserWarning")
@pytest.mark.filterwarnings("ignore:The settings for perturbing input:UserWarning")
@pytest.mark.parametrize("name", EXPLAINERS)
@pytest.mark.parametrize("metric_name", CHEAP_METRICS)
def test_every_metric_runs_on_every_method(vit, batch, metric_name, name):
    x, y, s = batch
    training = vit.training
    metric = make_metric(metric_name, **CHEAP_METRICS[metric_name])
    scores = evaluate_metric(metric, vit, x, y, s_batch=s[:, 0] if metric_name == "AUC" else s,
                             explain_func=explainer(name), device="cpu")
    assert isinstance(scores, np.ndarray) and scores.shape == (2,)
    assert np.isfinite(scores).all(), scores
    assert vit.training == training


def test_make_metric_names_and_guards():
    assert type(make_metric("pixelflipping", features_in_step=16)) is quantus.PixelFlipping
    assert make_metric("FaithfulnessCorrelation").return_aggregate is False
    assert isinstance(make_metric("ModelParameterRandomisation"), ScopedMPRT)
    with pytest.raises(ValueError, match="not a Quantus metric"):
        make_metric("NoSuchMetric")
    with pytest.raises(ValueError, match="weighted"):
        make_metric("AttributionLocalisation", weighted=True)
