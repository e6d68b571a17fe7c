"""CLIP Surgery reproduces the reference: golden data, and a literal port on other towers and sizes."""

import numpy as np
import pytest
import torch

from captum_clip import RawCLIPSimilarity, SurgeryCAM, ZeroShotClassifier, load_clip

from .conftest import golden_dir, images_for
from .reference_surgery import labelset_similarities_and_maps


@pytest.fixture(scope="module")
def golden():
    folder = golden_dir("surgery")
    bundle = load_clip(folder / "tiny-vit.json", pretrained=folder / "tiny-vit.safetensors")
    inputs = np.load(folder / "inputs_224.npz")
    expected = dict(np.load(folder / "expected_tiny-vit_224.npz"))
    templates = (folder / "templates.txt").read_text().splitlines()
    classifier = ZeroShotClassifier(bundle, [str(s) for s in inputs["labels"]], templates)
    return bundle, classifier, torch.from_numpy(inputs["images"]), str(inputs["query"][0]), expected


def max_diff(actual, expected):
    return float(np.abs(np.asarray(actual.detach() if torch.is_tensor(actual) else actual) - expected).max())


def test_golden_text_features(golden):
    _, classifier, _, query, expected = golden
    assert max_diff(classifier.text_features, expected["text_features"]) < 1e-5
    assert max_diff(classifier.encode_text([query]), expected["query_text_features"]) < 1e-5
    assert max_diff(classifier.redundancy, expected["redundancy"]) < 1e-5


def test_golden_tokens(golden):
    bundle, classifier, images, _, expected = golden
    with torch.no_grad():
        tokens, pooled = classifier.tower.surgery_tokens(images)
        dense = classifier.tower.dense_tokens(images)
        vanilla = bundle.model.encode_image(images)
    public = [(SurgeryCAM(classifier).surgery_tokens(images), "surgery_tokens"),
              (RawCLIPSimilarity(classifier).dense_tokens(images), "vanilla_tokens")]
    for actual, key in [(tokens, "surgery_tokens"), (dense, "vanilla_tokens"), (pooled, "vanilla_cls"),
                        (vanilla, "vanilla_cls"), *public]:
        assert max_diff(actual, expected[key]) < 1e-4 * np.abs(expected[key]).max(), key
    assert max_diff(tokens[:, 0], expected["vanilla_cls"]) < 1e-4 * np.abs(expected["vanilla_cls"]).max()


def test_golden_similarities(golden):
    _, classifier, images, query, expected = golden
    cam = SurgeryCAM(classifier)
    assert max_diff(cam.surgery_similarity(images), expected["sim_labelset"]) < 1e-5
    tokens, _ = cam._tokens(images)
    cosine = tokens @ classifier.text_features.T
    assert max_diff(cosine, expected["cos_labelset"]) < 1e-5
    query_scores = SurgeryCAM(classifier, redundancy="empty")._text_scores(tokens, [query])
    assert max_diff(query_scores, expected["sim_query"]) < 1e-5
    raw_tokens, _ = RawCLIPSimilarity(classifier)._tokens(images)
    assert max_diff(RawCLIPSimilarity(classifier).similarity(images), expected["vanilla_sim_labelset"]) < 1e-5
    assert max_diff(raw_tokens @ classifier.encode_text([query]).T, expected["vanilla_sim_query"]) < 1e-5


def test_golden_maps(golden):
    _, classifier, images, query, expected = golden
    channels_last = lambda maps: maps.permute(0, 2, 3, 1)
    assert max_diff(channels_last(SurgeryCAM(classifier).attribute_all(images)), expected["map_labelset"]) < 1e-4
    query_maps = SurgeryCAM(classifier, redundancy="empty").attribute(images, target=query)
    assert max_diff(channels_last(query_maps), expected["map_query"]) < 1e-4
    raw = RawCLIPSimilarity(classifier)
    assert max_diff(channels_last(raw.attribute_all(images)), expected["vanilla_map_labelset"]) < 1e-4
    assert max_diff(channels_last(raw.attribute(images, target=query)), expected["vanilla_map_query"]) < 1e-4
    # One class at a time gives the same maps as all classes in one pass.
    for k in range(classifier.num_classes):
        single = SurgeryCAM(classifier).attribute(images, target=k)
        assert max_diff(channels_last(single), expected["map_labelset"][..., k:k + 1]) < 1e-4


@pytest.mark.parametrize("kind,size", [("vit", 64), ("vit", 96), ("vit_shallow", 40), ("resnet", 64), ("resnet", 96)])
def test_matches_literal_reference(tiny_classifiers, tiny_bundles, kind, size):
    classifier = tiny_classifiers[kind]
    images = images_for(tiny_bundles[kind], n=2, size=size)
    sims, expected = labelset_similarities_and_maps(tiny_bundles[kind].model, images, classifier.text_features)
    cam = SurgeryCAM(classifier)
    assert float((cam.surgery_similarity(images) - sims).abs().max()) < 1e-5
    actual = cam.attribute_all(images)
    assert actual.shape == expected.shape == (2, classifier.num_classes, size, size)
    # Min-max divides by the patch range, which is tiny on random ResNets; scale the tolerance with it.
    patch_range = float((sims[:, 1:].amax(1) - sims[:, 1:].amin(1)).min())
    assert float((actual - expected).abs().max()) < max(1e-4, 1e-6 / patch_range)
