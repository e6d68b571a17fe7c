"""Reduced precision: autocast around every method's forward passes, weights in fp32, maps near fp32's."""

import copy
import dataclasses

import pytest
import torch
from captum.attr import NoiseTunnel

from captum_clip import ZeroShotClassifier, build_method, load_clip
from captum_clip.core.loading import ClipBundle

from ..conftest import CLASSNAMES, TEMPLATES, images_for

#: Largest difference from the fp32 map, per method, on the tiny ViT on the CPU under bf16 autocast, relative to
#: the fp32 map's largest absolute value (min-max maps: their range 1).
BF16_TOLERANCE = {"surgery": 0.05, "clip": 0.05, "gradcam": 0.05, "ig": 0.10}


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16; got 'fp8'"):
        load_clip("shapes", precision="fp8")
    bundle = load_clip("shapes")
    with pytest.raises(ValueError, match="precision must be one of"):
        dataclasses.replace(bundle, precision="half")


@pytest.mark.parametrize("name", sorted(BF16_TOLERANCE))
def test_bf16_maps_stay_near_fp32_and_the_weights_stay_fp32(tiny_bundles, name):
    fp32 = tiny_bundles["vit"]
    bf16 = ClipBundle(copy.deepcopy(fp32.model), fp32.preprocess, fp32.tokenizer, fp32.name, precision="bf16")
    images = images_for(fp32, 2)
    options = {"n_steps": 4} if name == "ig" else {}
    maps = {}
    for key, bundle in (("fp32", fp32), ("bf16", bf16)):
        method = build_method(name, ZeroShotClassifier(bundle, CLASSNAMES, TEMPLATES))
        maps[key] = method.attribute(images, target=[0, 1], **options)
    assert maps["bf16"].dtype == torch.float32 and torch.isfinite(maps["bf16"]).all()
    scale = maps["fp32"].abs().max()
    assert (maps["bf16"] - maps["fp32"]).abs().max() <= BF16_TOLERANCE[name] * scale
    assert not torch.equal(maps["bf16"], maps["fp32"])  # autocast did run
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())


def test_noise_tunnel_and_attribute_all_run_under_the_precision(tiny_bundles, monkeypatch):
    fp32 = tiny_bundles["vit"]
    bf16 = ClipBundle(copy.deepcopy(fp32.model), fp32.preprocess, fp32.tokenizer, fp32.name, precision="bf16")
    method = build_method("surgery", ZeroShotClassifier(bf16, CLASSNAMES, TEMPLATES))
    seen = []
    original = method.tower.surgery_tokens

    def recording(images):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(images)

    monkeypatch.setattr(method.tower, "surgery_tokens", recording)
    images = images_for(fp32, 2)
    NoiseTunnel(method).attribute(images, nt_samples=2, stdevs=0.1, target=0)
    method.attribute_all(images)
    assert seen and all(seen)


def _blas_threads():
    from threadpoolctl import threadpool_info

    return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}


def test_blas_runs_on_one_thread_inside_and_as_before_outside():
    from captum_clip.core.threads import single_threaded_blas

    before = _blas_threads()
    with single_threaded_blas():
        assert _blas_threads() == {1}
        with single_threaded_blas():
            assert _blas_threads() == {1}
        assert _blas_threads() == {1}
    assert _blas_threads() == before
    with pytest.raises(RuntimeError), single_threaded_blas():
        raise RuntimeError
    assert _blas_threads() == before


#: The public entry points besides ``attribute`` that run forward passes, and how to call them.
ENTRY_POINTS = {
    "mutual": [("explain", {}), ("visual_concepts", {}), ("fit_concepts", {})],
    "surgery": [("surgery_tokens", {}), ("surgery_similarity", {})],
    "clip": [("dense_tokens", {}), ("similarity", {})],
}


@pytest.mark.parametrize("name,entry", [(n, e) for n, entries in ENTRY_POINTS.items() for e in entries],
                         ids=lambda value: value if isinstance(value, str) else value[0])
def test_every_entry_point_runs_under_the_precision_with_one_blas_thread(tiny_bundles, tmp_path, monkeypatch, name,
                                                                        entry):
    from ..conftest import TINY_BANK

    fp32 = tiny_bundles["vit"]
    bf16 = ClipBundle(copy.deepcopy(fp32.model), fp32.preprocess, fp32.tokenizer, fp32.name, precision="bf16")
    options = {"descriptors": TINY_BANK, "cache_dir": tmp_path} if name == "mutual" else {}
    method = build_method(name, ZeroShotClassifier(bf16, CLASSNAMES, TEMPLATES), **options)
    seen = []
    blocks = method.tower.blocks
    first = blocks[0]

    def recording(module, args):
        seen.append((torch.is_autocast_enabled("cpu"), _blas_threads()))

    handle = first.register_forward_pre_hook(recording)
    try:
        before = _blas_threads()
        function, kwargs = entry
        getattr(method, function)(images_for(fp32, 2), **kwargs)
    finally:
        handle.remove()
    assert seen and all(autocast and threads == {1} for autocast, threads in seen), seen
    assert _blas_threads() == before
