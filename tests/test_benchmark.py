"""The methods x metrics benchmark runs end to end and writes its three reports."""

import csv
import json

import numpy as np
import pytest
import torch

from captum_clip.cli import main
from captum_clip.metrics.benchmark import ALL_METRICS, HIGHER_IS_BETTER, markdown_table, metric_settings

from .conftest import TINY_CONFIGS


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_benchmark_end_to_end(tmp_path, capsys, one_thread):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    out = tmp_path / "bench"
    main(["benchmark", "--model", str(config), "--n", "4", "--methods", "surgery,random", "--metrics",
          "PointingGame,RelevanceMassAccuracy,PixelFlipping,IROF,ROAD,MPRT", "--mprt-samples", "2",
          "--batch-size", "4", "--out-dir", str(out)])
    printed = capsys.readouterr().out
    assert "| CLIP Surgery |" in printed and "| random |" in printed
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 6
    assert {r["metric"] for r in rows} == {"PointingGame", "RelevanceMassAccuracy", "PixelFlipping", "IROF", "ROAD",
                                           "MPRT"}
    assert all(np.isfinite(float(r["mean"])) for r in rows)
    # Random maps do not depend on the weights: MPRT's similarity stays 1.
    assert float(next(r["mean"] for r in rows if r["method"] == "random" and r["metric"] == "MPRT")) == 1.0
    assert (out / "results.png").stat().st_size > 10_000
    assert (out / "results.md").read_text().count("\n") >= 4


def test_benchmark_rejects_unknown_names(tmp_path):
    with pytest.raises(SystemExit, match="unknown method 'lime'"):
        main(["benchmark", "--methods", "lime", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown dataset"):
        main(["benchmark", "--dataset", "imagenet", "--out-dir", str(tmp_path)])


def test_settings_and_table_cover_every_metric():
    assert set(HIGHER_IS_BETTER) == set(ALL_METRICS)
    # PixelFlipping's step must divide H*W; TopK must fit in the image.
    assert (64 * 64) % metric_settings("PixelFlipping", (64, 64))["features_in_step"] == 0
    assert metric_settings("TopKIntersection", (64, 64))["k"] < 64 * 64
    rows = [{"method": "surgery", "metric": "PointingGame", "mean": 0.9, "sem": 0.02}]
    assert "| CLIP Surgery | 0.900 ± 0.020 |" in markdown_table(rows)
