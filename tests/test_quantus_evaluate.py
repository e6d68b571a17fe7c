"""``quantus.evaluate``, the way Quantus users compare methods, runs every registered method."""

from __future__ import annotations

import numpy as np
import pytest
import quantus

from captum_clip import METHODS, ZeroShotClassifier, load_clip
from captum_clip.datasets import single_object_classnames
from captum_clip.metrics import make_explain_func
from captum_clip.metrics.benchmark import shapes_scenes


def _explain_funcs():
    from captum_clip.convis.wordnet import WordNetNotFoundError, load_wordnet

    names = sorted(METHODS)
    try:
        load_wordnet()
    except WordNetNotFoundError:
        names.remove("convis")  # ConVis needs WordNet; the other five still run
    return {name: make_explain_func(name, attribute_kwargs={"n_steps": 4} if name == "ig" else None)
            for name in names}


@pytest.fixture(scope="module")
def scenes():
    classifier = ZeroShotClassifier(load_clip("shapes"), single_object_classnames())
    return classifier, shapes_scenes(classifier, 3, seed=20)


def test_quantus_evaluate_runs_every_method(scenes):
    classifier, data = scenes
    xai_methods = _explain_funcs()
    size = data.x.shape[-1]
    results = quantus.evaluate(
        metrics={
            "PointingGame": quantus.PointingGame(disable_warnings=True, display_progressbar=False),
            "FaithfulnessCorrelation": quantus.FaithfulnessCorrelation(
                nr_runs=4, subset_size=size * 4, perturb_baseline="black", abs=False, normalise=True,
                return_aggregate=False, disable_warnings=True, display_progressbar=False),
        },
        xai_methods=xai_methods, model=classifier, x_batch=data.x, y_batch=data.y,
        s_batch=data.s, explain_func_kwargs={}, agg_func=np.asarray, call_kwargs={"logits": {"softmax": False}}, verbose=False,
    )
    # quantus.evaluate prints a failing metric and leaves its cell out, so every cell is checked.
    assert set(results) == set(xai_methods)
    for name, scores in results.items():
        pointing = np.asarray(scores["PointingGame"], dtype=float)
        assert pointing.shape == (3,) and set(np.unique(pointing)) <= {0.0, 1.0}, name
        correlation = np.asarray(scores["FaithfulnessCorrelation"], dtype=float)
        assert correlation.shape == (3,) and np.isfinite(correlation).all(), name


def test_the_method_keyword_quantus_adds_is_dropped(scenes):
    classifier, data = scenes
    explain = make_explain_func("surgery")
    plain = explain(classifier, data.x, data.y)
    np.testing.assert_array_equal(explain(classifier, data.x, data.y, method="surgery"), plain)


def test_targets_must_be_whole_class_indices(scenes):
    classifier, data = scenes
    explain = make_explain_func("clip")
    with pytest.raises(ValueError, match=r"got 1\.7 .*A fractional target names no class"):
        explain(classifier, data.x, np.array([1.7, 2.0, 3.0]))
    with pytest.raises(ValueError, match="got nan"):
        explain(classifier, data.x, np.array([np.nan, 2.0, 3.0]))
    np.testing.assert_array_equal(explain(classifier, data.x, np.array([2.0, 2.0, 5.0])),
                                  explain(classifier, data.x, np.array([2, 2, 5])))
