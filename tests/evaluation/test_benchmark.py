"""The methods x metrics benchmark runs end to end and writes its three reports."""

import csv
import json

import numpy as np
import pytest
import torch

from captum_clip.cli import main
from captum_clip import ZeroShotClassifier, load_clip
from captum_clip.shipped import single_object_classnames
from captum_clip.methods import build_method
from captum_clip.evaluation import evaluate_metric, make_metric
from captum_clip.evaluation.benchmark import (ALL_METRICS, CONCEPT, HIGHER_IS_BETTER, markdown_table, metric_settings,
                                           parse_method_spec, pointing_tolerance, shapes_scenes, tolerant_masks)
from captum_clip.evaluation.concept_metrics import evaluate_concepts

from ..conftest import TINY_CONFIGS, torch_threads


@pytest.fixture()
def one_thread():
    with torch_threads(1):
        yield


def test_tiny_benchmark_end_to_end(tmp_path, capsys, one_thread):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    out = tmp_path / "bench"
    main(["benchmark", "--model", str(config), "--n", "4", "--methods", "surgery,random", "--metrics",
          "PointingGame,PointingGameTolerant,RelevanceMassAccuracy,PixelFlipping,IROF,ROAD,MPRT", "--mprt-samples", "2",
          "--batch-size", "4", "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert "| CLIP Surgery |" in printed and "| random |" in printed
    assert "| CLIP Surgery (random weights) |" in printed and "| random (random weights) |" not in printed
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 * 7  # surgery, its random-weights row, and the random baseline (no such row)
    assert {r["metric"] for r in rows} == {"PointingGame", "PointingGameTolerant", "RelevanceMassAccuracy",
                                           "PixelFlipping", "IROF", "ROAD", "MPRT"}
    for method in ("surgery", "surgery (random weights)", "random"):
        score = {r["metric"]: float(r["mean"]) for r in rows if r["method"] == method}
        assert score["PointingGameTolerant"] >= score["PointingGame"]
    assert all(np.isfinite(float(r["mean"])) for r in rows)
    # Random maps do not depend on the weights: MPRT's similarity stays 1.
    assert float(next(r["mean"] for r in rows if r["method"] == "random" and r["metric"] == "MPRT")) == 1.0
    assert (out / "results.png").stat().st_size > 10_000
    assert (out / "results.md").read_text().count("\n") >= 4


def test_concept_metrics_come_with_mutual_only(tmp_path, capsys, one_thread):
    """The Mutual Knowledge concept metrics run from the benchmark command, for the mutual method alone."""
    out = tmp_path / "bench"
    main(["benchmark", "--model", "shapes", "--n", "3", "--methods", "mutual,surgery", "--metrics",
          "PointingGame," + ",".join(CONCEPT), "--batch-size", "3", "--out-dir", str(out)])
    rows = list(csv.DictReader((out / "results.csv").open()))
    expected = {("mutual", "PointingGame"), ("surgery", "PointingGame"), *(("mutual", name) for name in CONCEPT)}
    assert {(r["method"], r["metric"]) for r in rows} == expected | {(f"{m} (random weights)", n) for m, n in expected}
    assert all(r["n"] == "3" for r in rows)
    table = (out / "results.md").read_text()
    surgery_line = next(line for line in table.splitlines() if line.startswith("| CLIP Surgery |"))
    assert surgery_line.count("—") == len(CONCEPT)
    # The same numbers as evaluate_concepts on the same scenes, explained for the queried class (one batch:
    # Mutual Knowledge fits its concepts on the batch).
    classifier = ZeroShotClassifier(load_clip("shapes"), single_object_classnames())
    data = shapes_scenes(classifier, 3)
    labels = torch.as_tensor(data.y)
    expected = evaluate_concepts(build_method("mutual", classifier), torch.as_tensor(data.x), labels, target=labels)
    by_metric = {r["metric"]: float(r["mean"]) for r in rows if r["method"] == "mutual"}
    for name, key in zip(CONCEPT, ("deletion", "insertion", "acc_drop", "acc_inc")):
        assert by_metric[name] == pytest.approx(expected[key], abs=1e-5), name
    assert 0 <= by_metric["AccDrop"] <= 5 and 0 <= by_metric["AccInc"] <= 5


def test_method_options_in_the_method_name():
    assert parse_method_spec("surgery:redundancy=empty") == ("surgery", {"redundancy": "empty"})
    assert parse_method_spec("ig") == ("ig", {})
    rows = [{"method": "surgery:redundancy=empty", "metric": "PointingGame", "mean": 0.5, "sem": 0.1}]
    assert "| CLIP Surgery (redundancy=empty) | 0.500 ± 0.100 |" in markdown_table(rows)
    with pytest.raises(SystemExit, match="not key=value"):
        main(["benchmark", "--methods", "surgery:empty", "--out-dir", "unused"])


def test_benchmark_rejects_unknown_names(tmp_path):
    with pytest.raises(SystemExit, match="unknown method 'lime'"):
        main(["benchmark", "--methods", "lime", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown dataset"):
        main(["benchmark", "--dataset", "imagenet", "--out-dir", str(tmp_path)])


def test_tolerant_pointing_game_counts_near_misses_only():
    """Zhang et al.'s tolerance: a maximum 3 px off the object is a hit at 64 px (4 px), 6 px off is not."""
    masks = np.zeros((2, 1, 64, 64), np.float32)
    masks[:, 0, 20:30, 20:30] = 1
    maps = np.zeros((2, 1, 64, 64), np.float32)
    maps[0, 0, 32, 25] = 1  # 3 px below the square
    maps[1, 0, 35, 25] = 1  # 6 px below
    assert pointing_tolerance((64, 64)) == 4 and pointing_tolerance((224, 224)) == 15
    metric = make_metric("PointingGame")
    images = np.zeros((2, 3, 64, 64), np.float32)
    strict = evaluate_metric(metric, None, images, np.zeros(2, int), s_batch=masks, a_batch=maps)
    tolerant = evaluate_metric(metric, None, images, np.zeros(2, int), s_batch=tolerant_masks(masks, 4), a_batch=maps)
    assert list(strict) == [0, 0] and list(tolerant) == [1, 0]


def test_settings_and_table_cover_every_metric():
    assert set(HIGHER_IS_BETTER) == set(ALL_METRICS)
    # PixelFlipping's step must divide H*W; TopK must fit in the image.
    assert (64 * 64) % metric_settings("PixelFlipping", (64, 64))["features_in_step"] == 0
    assert metric_settings("TopKIntersection", (64, 64))["k"] < 64 * 64
    rows = [{"method": "surgery", "metric": "PointingGame", "mean": 0.9, "sem": 0.02}]
    assert "| CLIP Surgery | 0.900 ± 0.020 |" in markdown_table(rows)


@pytest.mark.parametrize("metric_name", ["PixelFlipping", "RegionPerturbation", "IROF"])
def test_report_direction_matches_what_the_metric_rewards(metric_name, one_thread):
    """A map on the queried object must score better than its inverse, in the direction the report marks."""
    classifier = ZeroShotClassifier(load_clip("shapes"), single_object_classnames())
    data = shapes_scenes(classifier, 6)
    settings = metric_settings(metric_name, (64, 64))
    scores = {}
    for name, maps in (("object", data.s), ("inverse", 1 - data.s)):
        metric = make_metric(metric_name, **settings)
        scores[name] = float(np.mean(evaluate_metric(metric, classifier, data.x, data.y, s_batch=data.s,
                                                     a_batch=maps + 1e-3 * np.random.default_rng(0).random(maps.shape))))
    object_better = scores["object"] > scores["inverse"] if HIGHER_IS_BETTER[metric_name] \
        else scores["object"] < scores["inverse"]
    assert object_better, scores


def test_random_metrics_give_the_same_cells_on_a_rerun(one_thread):
    """FaithfulnessCorrelation and ROAD draw from numpy's global generator: the benchmark seeds it per metric."""
    from captum_clip.evaluation.benchmark import run_benchmark

    classifier = ZeroShotClassifier(load_clip("shapes"), single_object_classnames())
    data = shapes_scenes(classifier, 3)
    first = run_benchmark(classifier, data, ["surgery"], ["FaithfulnessCorrelation", "ROAD"], batch_size=3,
                          progress=False, random_weights=False)
    np.random.rand(17)  # whatever ran before
    again = run_benchmark(classifier, data, ["surgery"], ["FaithfulnessCorrelation", "ROAD"], batch_size=3,
                          progress=False, random_weights=False)
    assert [(r["metric"], r["mean"], r["std"]) for r in first] == [(r["metric"], r["mean"], r["std"]) for r in again]
