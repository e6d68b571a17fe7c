"""The method contract, run over every registered method on a tiny ViT and a tiny ResNet.

One suite for all six methods: every target format, ``attribute_all``, batch equals loop, determinism, the model
left bitwise unchanged with no hooks (also when an exception is raised), NoiseTunnel, ``quantus.evaluate``,
Captum's ``infidelity`` and ``sensitivity_max``, and every bad input. Method-specific behaviour (the papers' maths,
golden equivalence) is tested beside each method.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import quantus
import torch
from captum.attr import NoiseTunnel
from captum.metrics import infidelity, sensitivity_max

from captum_clip import (METHODS, CLIPGradCAM, CLIPIntegratedGradients, DegenerateMapWarning, NonFiniteError,
                         ZeroShotClassifier, build_method)
from captum_clip.evaluation import expand_to_inputs, make_explain_func

from ..conftest import CLASSNAMES, TEMPLATES, TINY_BANK, assert_unchanged, images_for, snapshot, torch_threads

TOWERS = ("vit", "resnet")
NAMES = sorted(METHODS)
CASES = [(name, tower) for name in NAMES for tower in TOWERS]

#: Per-call options that keep the slow methods to a fraction of a second on the tiny models.
FAST = {"ig": {"n_steps": 4}}

#: ConVis on the tiny models: a small vocabulary, the tiny classes' synsets and a 41-window sweep.
CONVIS_SYNSETS = ["dog.n.01", "cat.n.01", "star.n.05", "ring.n.02", "cup.n.01"]
CONVIS_CLASSES = {"cat": "cat.n.01", "dog": "dog.n.01", "red star": "star.n.05", "blue ring": "ring.n.02"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("contract_cache")


@pytest.fixture(scope="module")
def convis_vocabulary():
    from captum_clip.convis import ConceptVocabulary
    from captum_clip.wordnet import WordNetNotFoundError, load_wordnet

    try:
        return ConceptVocabulary.from_synsets(CONVIS_SYNSETS, wordnet=load_wordnet())
    except WordNetNotFoundError as error:
        return error


def options(name: str, cache, convis_vocabulary) -> dict:
    """Constructor options for the tiny models (the defaults table's would encode 80k synsets or WordNet banks)."""
    if name == "mutual":
        return {"descriptors": TINY_BANK, "cache_dir": cache}
    if name == "convis":
        if isinstance(convis_vocabulary, Exception):
            pytest.skip(f"ConVis needs WordNet: {convis_vocabulary}")
        from captum_clip.convis import WindowConfig

        return {"vocabulary": convis_vocabulary, "class_synsets": CONVIS_CLASSES, "cache_dir": cache,
                "windows": WindowConfig(image_size=32, sizes=(16, 8), stride=8, pad=8)}
    return {}


@pytest.fixture
def make(tiny_classifiers, cache, convis_vocabulary):
    def build(name: str, tower: str, classifier=None):
        return build_method(name, classifier or tiny_classifiers[tower], **options(name, cache, convis_vocabulary))

    return build


def run(method, images, target, name, **kwargs):
    return method.attribute(images, target=target, **FAST.get(name, {}), **kwargs)


def loop_options(name: str, images) -> dict:
    # Mutual Knowledge fits its concepts jointly on the images explained together; one image at a time equals
    # the batch when the batch is the reference the concepts are fitted on (its documented contract).
    return {"reference_images": images} if name == "mutual" else {}


# ------------------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("name, tower", CASES)
def test_every_target_format_agrees_and_batch_equals_loop(make, tiny_classifiers, tiny_bundles, name, tower):
    classifier = tiny_classifiers[tower]
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=3)
    per_image = [1, 3, 0]
    batched = run(method, images, per_image, name)
    assert batched.shape == (3, 1, *images.shape[-2:]) and batched.dtype == torch.float32
    assert torch.isfinite(batched).all()
    for form in (torch.tensor(per_image), [classifier.classnames[i] for i in per_image], tuple(per_image)):
        torch.testing.assert_close(run(method, images, form, name), batched, atol=1e-4, rtol=0)
    loop = torch.cat([run(method, images[i:i + 1], per_image[i], name, **loop_options(name, images))
                      for i in range(3)])
    torch.testing.assert_close(loop, batched, atol=1e-4, rtol=0)
    same = run(method, images, 2, name)
    for form in ([2, 2, 2], classifier.classnames[2], torch.tensor(2), (2,)):
        torch.testing.assert_close(run(method, images, form, name), same, atol=1e-4, rtol=0)
    predicted = classifier(images).argmax(-1)
    torch.testing.assert_close(run(method, images, None, name), run(method, images, predicted, name),
                               atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, tower", CASES)
def test_attribute_all_gives_k_maps_per_image(make, tiny_classifiers, tiny_bundles, name, tower):
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=3)
    every = method.attribute_all(images, **FAST.get(name, {}))
    assert every.shape == (2, len(CLASSNAMES), *images.shape[-2:]) and torch.isfinite(every).all()
    for k in range(len(CLASSNAMES)):
        torch.testing.assert_close(every[:, k:k + 1], run(method, images, k, name), atol=1e-4, rtol=0)
    chosen = method.attribute_all(images, targets=["dog", 3], **FAST.get(name, {}))
    torch.testing.assert_close(chosen, every[:, [1, 3]], atol=1e-4, rtol=0)
    tupled = method.attribute_all((images,), targets=[0], **FAST.get(name, {}))
    assert isinstance(tupled, tuple) and tupled[0].shape == (2, 1, *images.shape[-2:])
    with pytest.raises(ValueError, match="out of range"):
        method.attribute_all(images, targets=[0, 7])


@pytest.mark.parametrize("name, tower", CASES)
def test_tuples_in_tuples_out_and_deterministic(make, tiny_bundles, name, tower):
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=4)
    first = run(method, images, [0, 1], name)
    assert torch.equal(run(method, images, [0, 1], name), first)
    out = run(method, (images,), [0, 1], name)
    assert isinstance(out, tuple) and len(out) == 1 and torch.equal(out[0], first)


# --------------------------------------------------------------------------------- the model unchanged


@pytest.mark.parametrize("name, tower", CASES)
def test_the_model_is_left_bitwise_unchanged_with_no_hooks(make, tiny_classifiers, tiny_bundles, name, tower):
    model = tiny_bundles[tower].model
    before = snapshot(model)
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=5)
    run(method, images, [0, 1], name)
    method.attribute_all(images, targets=[2], **FAST.get(name, {}))
    assert_unchanged(model, before)
    with pytest.raises(ValueError):
        run(method, images, 99, name)
    assert_unchanged(model, before)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    # Fail inside the model's forward, after the method (or Captum) has registered its hooks.
    handle = tiny_classifiers[tower].tower.gradcam_layer.register_forward_pre_hook(explode)
    before = snapshot(model)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            run(method, images, [0, 1], name)
        assert_unchanged(model, before)
    finally:
        handle.remove()


# ----------------------------------------------------------------------------------- Captum and Quantus


@pytest.mark.parametrize("name, tower", CASES)
def test_noise_tunnel_wraps_the_method(make, tiny_bundles, name, tower):
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=6)
    smooth = NoiseTunnel(method).attribute(images, nt_type="smoothgrad", nt_samples=2, stdevs=0.1, target=[0, 1],
                                           **FAST.get(name, {}))
    assert smooth.shape == (2, 1, *images.shape[-2:]) and torch.isfinite(smooth).all()


@pytest.mark.parametrize("name, tower", CASES)
def test_captum_infidelity_and_sensitivity_max(make, tiny_classifiers, tiny_bundles, name, tower):
    classifier = tiny_classifiers[tower]
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=7)
    target = torch.tensor([0, 2])
    maps = run(method, images, target, name)

    def perturb(inputs):
        noise = torch.randn(inputs.shape, generator=torch.Generator().manual_seed(0)) * 0.05
        return noise, inputs - noise

    score = infidelity(classifier, perturb, images, expand_to_inputs(maps, images), target=target, n_perturb_samples=2)
    assert score.shape == (2,) and torch.isfinite(score).all()
    sensitivity = sensitivity_max(lambda x, target: run(method, x, target, name), images, target=target,
                                  n_perturb_samples=2)
    assert sensitivity.shape == (2,) and torch.isfinite(sensitivity).all()


@pytest.mark.parametrize("name, tower", CASES)
def test_quantus_evaluate_runs_the_method(make, tiny_classifiers, tiny_bundles, cache, convis_vocabulary, name, tower):
    classifier = tiny_classifiers[tower]
    options(name, cache, convis_vocabulary)  # skips ConVis without WordNet
    images = images_for(tiny_bundles[tower], n=2, seed=8)
    masks = np.zeros((2, 1, *images.shape[-2:]), dtype=np.float32)
    masks[..., : images.shape[-2] // 2, :] = 1
    explain = make_explain_func(name, attribute_kwargs=FAST.get(name), **options(name, cache, convis_vocabulary))
    results = quantus.evaluate(
        metrics={"PointingGame": quantus.PointingGame(disable_warnings=True, display_progressbar=False)},
        xai_methods={name: explain}, model=classifier, x_batch=images.numpy(), y_batch=np.array([0, 1]),
        s_batch=masks, explain_func_kwargs={}, agg_func=np.asarray, call_kwargs={"logits": {"softmax": False}},
        verbose=False,
    )
    scores = np.asarray(results[name]["PointingGame"], dtype=float)  # a failing metric leaves its cell out
    assert scores.shape == (2,) and set(np.unique(scores)) <= {0.0, 1.0}


# ---------------------------------------------------------------------------------------- bad inputs

BAD_IMAGES = [
    (lambda x: x[0], "single image use image.unsqueeze"),
    (lambda x: x[:, :1], "3 \\(RGB\\) channels"),
    (lambda x: x.permute(0, 2, 3, 1), "3 \\(RGB\\) channels"),
    (lambda x: (x * 50).to(torch.uint8), "floating-point"),
    (lambda x: x.masked_fill(torch.rand_like(x) > 0.99, float("nan")), "NaN"),
    (lambda x: x[:0], "empty batch"),
    (lambda x: x[..., :4, :4], "smaller than one token cell"),
    (lambda x: x.numpy(), "torch.Tensor"),
    (lambda x: (x, x), "tuple of 2"),
]

BAD_TARGETS = [
    (4, "out of range .* 4 classes"), (-1, "out of range"), ([0, 1, 2], "3 entries but inputs has 2"),
    (torch.tensor([0.5, 1.0]), "integer class indices"), (torch.zeros(2, 2, dtype=torch.long), "0-d or 1-d"),
    ([], "non-empty list"), ("", "non-empty strings"), (True, "got True"), ([0, 1.5], "got 1.5"),
]


@pytest.mark.parametrize("name, tower", CASES)
def test_bad_images_and_targets_get_clear_errors(make, tiny_bundles, name, tower):
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=9)
    for bad, message in BAD_IMAGES:
        with pytest.raises(ValueError, match=message):
            run(method, bad(images), 0, name)
    for target, message in BAD_TARGETS:
        with pytest.raises(ValueError, match=message):
            run(method, images, target, name)
    with pytest.raises(ValueError, match="does not take additional_forward_args"):
        run(method, images, 0, name, additional_forward_args=(1,))
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        type(method)(tiny_bundles[tower].model)


@pytest.mark.parametrize("name, tower", CASES)
def test_a_nan_weight_names_the_stage_and_leaves_the_model_as_it_was(make, tiny_bundles, name, tower):
    broken = copy.deepcopy(tiny_bundles[tower])
    with torch.no_grad():
        next(broken.model.visual.parameters()).view(-1)[0] = float("nan")
    classifier = ZeroShotClassifier(broken, CLASSNAMES, TEMPLATES, use_cache=False)  # the text side is healthy
    method = make(name, tower, classifier)
    before = snapshot(broken.model)
    with pytest.raises(NonFiniteError, match=r"became non-finite \(NaN"):
        run(method, images_for(broken, n=2, seed=10), [0, 1], name)
    assert_unchanged(broken.model, before)


@pytest.mark.parametrize("name, tower", CASES)
def test_huge_inputs_raise_instead_of_returning_a_blank_map(make, tiny_bundles, name, tower):
    if name == "convis":
        pytest.skip("ConVis un-normalises and clips its inputs to pixels: inputs x 1e30 are a saturated image")
    method = make(name, tower)
    # Either a stage overflows, or the map saturates to a constant: an error or a warning, never a silent blank.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            maps = run(method, images_for(tiny_bundles[tower], n=2, seed=11) * 1e30, [0, 1], name)
        except NonFiniteError as error:
            assert "became non-finite" in str(error)
            return
    constant = (maps.flatten(1).amax(1) == maps.flatten(1).amin(1)).tolist()
    warned = [w for w in caught if issubclass(w.category, DegenerateMapWarning)]
    assert any(constant) == bool(warned), (constant, [str(w.message) for w in caught])


@pytest.mark.parametrize("name, tower", CASES)
def test_inference_mode_works_or_is_refused_clearly(make, tiny_bundles, name, tower):
    method = make(name, tower)
    images = images_for(tiny_bundles[tower], n=2, seed=12)
    expected = run(method, images, [0, 1], name)
    with torch.inference_mode():
        if isinstance(method, (CLIPGradCAM, CLIPIntegratedGradients)):
            with pytest.raises(RuntimeError, match="needs gradients, and torch.inference_mode"):
                run(method, images, [0, 1], name)
            return
        inside = run(method, images, [0, 1], name)
    torch.testing.assert_close(inside, expected, atol=1e-5, rtol=0)
