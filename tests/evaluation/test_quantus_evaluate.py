"""``quantus.evaluate``, the way Quantus users compare methods, runs every registered method."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import quantus

from captum_clip import METHODS, ZeroShotClassifier, load_clip
from captum_clip.shipped import single_object_classnames
from captum_clip.evaluation import make_explain_func
from captum_clip.evaluation.benchmark import shapes_scenes

DOC = Path(__file__).resolve().parents[2] / "docs" / "quantus.md"
N_SCENES = 3
NO_WORDNET = ("ConVis needs WordNet and none was found (apt-get install wordnet-base, or "
              "python -m nltk.downloader wordnet): convis left out of quantus.evaluate")


def _wordnet_missing() -> str | None:
    """Why ConVis cannot run here, or None when WordNet loads."""
    from captum_clip.wordnet import WordNetNotFoundError, load_wordnet

    try:
        load_wordnet()
    except WordNetNotFoundError:
        return NO_WORDNET
    return None


def _explain_funcs():
    names = sorted(METHODS)
    if _wordnet_missing():
        names.remove("convis")  # the other five still run; test_convis_is_evaluated skips, saying why
    return {name: make_explain_func(name, attribute_kwargs={"n_steps": 8} if name == "ig" else None)
            for name in names}


def _check_cells(results, names, n_images: int) -> None:
    # quantus.evaluate prints a failing metric and leaves its cell out, so every cell is checked.
    assert set(results) == set(names)
    for name in names:
        assert set(results[name]) == {"PointingGame", "FaithfulnessCorrelation"}, name
        pointing = np.asarray(results[name]["PointingGame"], dtype=float)
        assert pointing.shape == (n_images,) and np.isfinite(pointing).all(), (name, pointing)
        assert set(np.unique(pointing)) <= {0.0, 1.0}, (name, pointing)
        correlation = np.asarray(results[name]["FaithfulnessCorrelation"], dtype=float)
        assert correlation.shape == (n_images,) and np.isfinite(correlation).all(), (name, correlation)


@pytest.fixture(scope="module")
def scenes():
    classifier = ZeroShotClassifier(load_clip("shapes"), single_object_classnames())
    return classifier, shapes_scenes(classifier, N_SCENES, seed=20)


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
        s_batch=data.s, explain_func_kwargs={}, agg_func=np.asarray, call_kwargs={"logits": {"softmax": False}},
        verbose=False,
    )
    _check_cells(results, xai_methods, N_SCENES)


def test_convis_is_evaluated():
    """The six registered methods are the ones evaluated above, ConVis only where WordNet is installed."""
    assert set(METHODS) >= {"surgery", "clip", "gradcam", "ig", "mutual", "convis"}
    reason = _wordnet_missing()
    if reason:
        pytest.skip(reason)
    assert set(_explain_funcs()) == set(METHODS)


def test_the_docs_snippet_runs():
    """The ``quantus.evaluate`` block of docs/quantus.md runs as written and fills every cell."""
    reason = _wordnet_missing()
    if reason:
        pytest.skip(reason + " (the docs snippet evaluates every method)")
    section = DOC.read_text().split("## Comparing methods with `quantus.evaluate`", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    _check_cells(namespace["results"], METHODS, len(namespace["data"].x))


def test_the_method_keyword_quantus_adds_is_dropped(scenes):
    classifier, data = scenes
    explain = make_explain_func("surgery")
    plain = explain(classifier, data.x, data.y)
    np.testing.assert_array_equal(explain(classifier, data.x, data.y, method="surgery"), plain)
    np.testing.assert_array_equal(explain(classifier, data.x, data.y, method="surgery", device="cpu"), plain)


def test_targets_must_be_whole_class_indices(scenes):
    classifier, data = scenes
    explain = make_explain_func("clip")
    with pytest.raises(ValueError, match=r"integer class indices; got 1\.7 .*A fractional or non-finite target"):
        explain(classifier, data.x, np.array([1.7, 2.0, 3.0]))
    with pytest.raises(ValueError, match="got nan"):
        explain(classifier, data.x, np.array([np.nan, 2.0, 3.0]))
    with pytest.raises(ValueError, match="got inf"):
        explain(classifier, data.x, np.array([2.0, np.inf, 3.0]))
    with pytest.raises(ValueError, match=rf"out of range for a classifier with {classifier.num_classes} classes"):
        explain(classifier, data.x, np.array([2, 2, classifier.num_classes]))
    np.testing.assert_array_equal(explain(classifier, data.x, np.array([2.0, 2.0, 5.0])),
                                  explain(classifier, data.x, np.array([2, 2, 5])))
