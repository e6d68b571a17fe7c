"""The paper's concept metrics (Deletion, Insertion, AccDrop, AccInc) and the concept figure."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from captum_clip.mutual import concept_figure, save_concept_figure
from captum_clip.evaluation.concept_metrics import (
    accuracy_drop,
    accuracy_increase,
    concept_deletion,
    concept_insertion,
    concept_perturbation_curves,
    evaluate_concepts,
    gaussian_blur,
    trapezoid_auc,
)
from captum_clip.mutual.results import ranked_concept_masks
from captum_clip.viz import to_display_images

from ..conftest import images_for


def test_gaussian_blur_is_opencvs():
    image = np.random.default_rng(0).random((3, 40, 30)).astype(np.float32)
    expected = np.stack([cv2.GaussianBlur(channel, (11, 11), 0) for channel in image])
    blurred = gaussian_blur(torch.from_numpy(image)[None])[0].numpy()
    assert np.allclose(blurred, expected, atol=1e-5)
    with pytest.raises(ValueError):
        gaussian_blur(torch.zeros(1, 3, 8, 8), ksize=4)


def test_curves_by_hand(tiny_classifiers, tiny_bundles):
    classifier = tiny_classifiers["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    masks = torch.zeros(2, 3, 64, 64, dtype=torch.bool)
    masks[:, 0, :32] = True
    masks[0, 1, 32:] = True  # image 0: two concepts covering everything; image 1: one concept
    target = torch.tensor([0, 2])
    deletion = concept_perturbation_curves(classifier, images, masks, "deletion", target)
    insertion = concept_perturbation_curves(classifier, images, masks, "insertion", target)
    blurred = gaussian_blur(images)
    score = lambda x: 2.5 * (classifier.image_features(x) @ classifier.text_features.T)[torch.arange(2), target]
    with torch.no_grad():
        assert torch.allclose(deletion.scores[:, 0], score(images), atol=1e-5)
        assert torch.allclose(insertion.scores[:, 0], score(blurred), atol=1e-5)
        assert torch.allclose(deletion.scores[0, 2], score(blurred)[0], atol=1e-5)  # all blurred
        assert torch.allclose(insertion.scores[0, 2], score(images)[0], atol=1e-5)  # all restored
    # After its last concept an image's curve stays flat.
    assert torch.allclose(deletion.scores[1, 1:], deletion.scores[1, 1].expand(3))
    assert deletion.scores.shape == (2, 4) and deletion.correct.dtype == torch.bool
    # By default the tracked class is the prediction, which is also the label: correct before any blur.
    assert concept_perturbation_curves(classifier, images, masks).correct[:, 0].all()
    assert torch.allclose(deletion.auc, trapezoid_auc(deletion.scores))
    assert torch.allclose(trapezoid_auc(torch.tensor([1.0, 3.0, 2.0])), torch.tensor(4.5))
    assert torch.allclose(concept_deletion(classifier, images, masks, target), deletion.auc)
    assert torch.allclose(concept_insertion(classifier, images, masks, target), insertion.auc)
    labels = torch.tensor([1, 1])
    drop = accuracy_drop(classifier, images, masks, labels)
    assert drop == trapezoid_auc(concept_perturbation_curves(
        classifier, images, masks, "deletion", labels=labels).correct.float().mean(0))
    assert 0 <= accuracy_increase(classifier, images, masks, labels) <= 3
    with pytest.raises(ValueError, match="mode"):
        concept_perturbation_curves(classifier, images, masks, "flip")
    with pytest.raises(ValueError, match="concept_masks"):
        concept_perturbation_curves(classifier, images, masks[:1])


def test_evaluate_concepts_and_figure(mutual_methods, explained, tiny_bundles, tmp_path):
    method = mutual_methods["vit"]
    images = images_for(tiny_bundles["vit"], n=2)
    scores = evaluate_concepts(method, images, labels=torch.tensor([0, 1]))
    assert set(scores) == {"deletion", "insertion", "acc_drop", "acc_inc"}
    assert all(np.isfinite(v) for v in scores.values()) and 0 <= scores["acc_drop"] <= 5

    images, results = explained["vit"]
    ranked = ranked_concept_masks(results, 5)
    assert ranked.shape == (3, 5, 64, 64)
    for row, e in enumerate(results):
        assert torch.equal(ranked[row, : e.n_concepts], e.masks) and not ranked[row, e.n_concepts:].any()

    import matplotlib.pyplot as plt

    open_figures = plt.get_fignums()
    picture = to_display_images(images, *tiny_bundles["vit"].image_mean_std)[0]
    figure = concept_figure(picture, results[0])
    assert isinstance(figure, Figure) and len(figure.axes) == 3
    assert plt.get_fignums() == open_figures  # no pyplot state
    path = save_concept_figure(tmp_path / "concepts.png", picture, results[0], title="test")
    assert path.is_file() and path.stat().st_size > 5000
    with pytest.raises(ValueError):
        concept_figure(picture[..., 0], results[0])
