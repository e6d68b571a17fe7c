"""``captum-clip evaluate``: outputs, random-weights rows, hand-checked aggregates, resume, torchrun = one process.

Datasets are written here as a ``folder`` tree of generated scenes, or generated (``shapes``); the model is the
shipped 64-px scene model, so every run takes seconds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_clip.cli import main
from captum_clip.cli.evaluate import PROTOCOL_NAMES
from captum_clip.evaluation.protocols import PROTOCOLS
from captum_clip.shipped.scenes import generate_scene, single_object_classnames

from ..conftest import torch_threads

CLASSNAMES = single_object_classnames()
SEEDS = list(range(41, 51))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def write_folder(root: Path, seeds=SEEDS) -> Path:
    """A ``folder`` dataset of generated scenes: classes.txt, images, one-channel masks and boxes.csv."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSNAMES) + "\n")
    rows = ["stem,class_index,x0,y0,x1,y1"]
    for seed in seeds:
        scene = generate_scene(seed, image_size=64)
        stem = f"scene{seed:03d}"
        Image.fromarray(scene.image).save(root / "images" / f"{stem}.png")
        mask = np.zeros((64, 64), np.uint8)
        for object_mask, name in zip(scene.masks, scene.objects):
            mask[object_mask] = CLASSNAMES.index(name) + 1
            ys, xs = np.nonzero(object_mask)
            rows.append(f"{stem},{CLASSNAMES.index(name) + 1},{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    (root / "boxes.csv").write_text("\n".join(rows) + "\n")
    return root


def evaluate(*arguments) -> None:
    main(["evaluate", *arguments, "--quiet", "--threads", "1"])


def read_rows(out: Path):
    with (out / "per_image.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_the_cli_names_every_protocol():
    assert set(PROTOCOL_NAMES) == set(PROTOCOLS)


def test_pointing_writes_every_output_with_random_weights_rows(tmp_path):
    root = write_folder(tmp_path / "data")
    out = tmp_path / "out"
    evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery,gradcam",
             "--batch-size", "4", "--out-dir", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["protocol"] == "pointing" and results["dataset"] == "folder" and results["n_images"] == 10
    assert set(results["methods"]) == {"surgery", "gradcam", "surgery (random weights)", "gradcam (random weights)"}
    rows = read_rows(out)
    assert [r["stem"] for r in rows] == sorted(r["stem"] for r in rows)
    # One query per (image, class present), the same for every method.
    queries = {(r["stem"], r["query"]) for r in rows}
    expected = {(f"scene{s:03d}", name) for s in SEEDS for name in set(generate_scene(s, image_size=64).objects)}
    assert queries == expected and results["n_queries"] == len(expected)
    for key, metrics in results["methods"].items():
        mine = [r for r in rows if r["method"] == key and r["skipped"] == "0"]
        hits = np.array([int(r["hit"]) for r in mine])
        per_class = {}
        for r in mine:
            per_class.setdefault(r["class"], []).append(int(r["hit"]))
        assert metrics["pointing_overall"] == pytest.approx(hits.mean(), abs=1e-12)
        assert metrics["pointing"] == pytest.approx(np.mean([np.mean(v) for v in per_class.values()]), abs=1e-12)
        assert 0 <= metrics["pointing_stderr"] < 0.5
    assert "random_weights_within_stderr" in results["methods"]["surgery"]
    table = (out / "results.md").read_text()
    assert "| CLIP Surgery" in table and "| CLIP Surgery (random weights)" in table
    assert (out / "results.png").stat().st_size > 5_000


def test_resume_reuses_the_shards_and_gives_the_same_results(tmp_path):
    root = write_folder(tmp_path / "data", SEEDS[:6])
    out = tmp_path / "out"
    arguments = ("wsol", "--dataset", "folder", "--root", str(root), "--methods", "clip", "--batch-size", "2",
                 "--out-dir", str(out))
    evaluate(*arguments)
    first = json.loads((out / "results.json").read_text())
    shards = sorted((out / "shards").glob("*.json"))
    assert len(shards) == 3
    kept = {path: path.stat().st_mtime_ns for path in shards[:2]}
    shards[2].unlink()
    evaluate(*arguments, "--resume")
    assert {path: path.stat().st_mtime_ns for path in shards[:2]} == kept  # not recomputed
    again = json.loads((out / "results.json").read_text())
    assert again["methods"] == first["methods"]
    # Shards of another configuration are refused, not mixed in.
    with pytest.raises(SystemExit, match="written by another evaluation"):
        evaluate("wsol", "--dataset", "folder", "--root", str(root), "--methods", "surgery", "--batch-size", "2",
                 "--out-dir", str(out), "--resume")


def test_shapes_pointing_equals_the_benchmark_for_the_same_scenes_and_tolerance(tmp_path):
    from captum_clip import ZeroShotClassifier, load_clip
    from captum_clip.evaluation.benchmark import run_benchmark, shapes_scenes

    # The benchmark's hit region is the 4-px disk d**2 <= 16; TorchRay's rule is d**2 < tolerance**2, so 4.1.
    out = tmp_path / "out"
    evaluate("pointing", "--dataset", "shapes", "--n", "12", "--first-object-only", "--tolerance", "4.1",
             "--option", "ties=any", "--methods", "surgery", "--batch-size", "6", "--out-dir", str(out))
    results = json.loads((out / "results.json").read_text())
    classifier = ZeroShotClassifier(load_clip("shapes"), CLASSNAMES)
    rows = run_benchmark(classifier, shapes_scenes(classifier, 12), ["surgery"], ["PointingGameTolerant"],
                         batch_size=6, progress=False)
    for row in rows:
        assert results["methods"][row["method"]]["pointing_overall"] == pytest.approx(row["mean"], abs=1e-12), row


def test_bad_arguments_get_clear_errors(tmp_path):
    root = write_folder(tmp_path / "data", SEEDS[:2])
    with pytest.raises(SystemExit, match="--methods is empty"):
        evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "", "--out-dir", str(tmp_path))
    with pytest.raises(SystemExit, match="expected layout|Expected layout"):
        evaluate("pointing", "--dataset", "voc", "--root", str(tmp_path / "nowhere"), "--methods", "surgery",
                 "--out-dir", str(tmp_path / "o"))
    with pytest.raises(SystemExit, match="takes no option 'steps'"):
        evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "ig:steps=3",
                 "--out-dir", str(tmp_path / "o"))
    with pytest.raises(SystemExit, match="needs labels|target=gt needs image labels"):
        evaluate("segmentation", "--dataset", "folder", "--root", str(root), "--methods", "surgery", "--target",
                 "gt", "--out-dir", str(tmp_path / "o"))


def test_torchrun_on_two_processes_equals_one_process(tmp_path):
    root = write_folder(tmp_path / "data")
    arguments = ["pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery,mutual",
                 "--batch-size", "3", "--device", "cpu", "--quiet", "--threads", "1"]
    single, double = tmp_path / "single", tmp_path / "double"
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).parent / "captum-clip"
    subprocess.run([str(script), "evaluate", *arguments, "--out-dir", str(single)], check=True, env=environment,
                   timeout=300)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                    "--no-python", str(script), "evaluate", *arguments, "--out-dir", str(double)],
                   check=True, env=environment, timeout=300)
    assert (single / "per_image.csv").read_text() == (double / "per_image.csv").read_text()
    one, two = (json.loads((folder / "results.json").read_text()) for folder in (single, double))
    assert one["timing"]["processes"] == 1 and two["timing"]["processes"] == 2
    assert one["methods"].keys() == two["methods"].keys() and one["n_queries"] == two["n_queries"]
    for key in one["methods"]:
        for metric, value in one["methods"][key].items():
            assert two["methods"][key][metric] == pytest.approx(value, abs=1e-9), (key, metric)
    # Both ranks wrote their shards: batches 0, 2 from rank 0 and 1, 3 from rank 1.
    assert len(list((double / "shards").glob("*.json"))) == 4


def test_a_rank_that_fails_stops_every_rank_at_once_with_a_clear_error(tmp_path):
    root = write_folder(tmp_path / "data", SEEDS[:6])
    (root / "images" / f"scene{SEEDS[4]:03d}.png").write_bytes(b"not a png")  # in batch 1, which rank 1 takes
    script = Path(sys.executable).parent / "captum-clip"
    # torchrun's agent would kill rank 0 with no word of why; under a launcher that does not (srun, mp.spawn) it
    # would wait at the gather for gloo's 30-minute timeout. Every rank now leaves saying what failed where.
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--no-python", str(script), "evaluate", "pointing", "--dataset", "folder", "--root",
                           str(root), "--methods", "surgery", "--batch-size", "3", "--device", "cpu", "--quiet",
                           "--threads", "1", "--no-random-weights", "--out-dir", str(tmp_path / "out")],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert f"image 'scene{SEEDS[4]:03d}' of the folder dataset at {root} cannot be read" in done.stderr
    assert "rank 1 of 2 failed with DatasetLayoutError" in done.stderr and "Rank 0 stopped too" in done.stderr
    assert not (tmp_path / "out" / "results.json").exists()


def test_an_unreadable_image_gets_a_clear_error_in_one_process(tmp_path):
    root = write_folder(tmp_path / "data", SEEDS[:2])
    (root / "images" / f"scene{SEEDS[1]:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(SystemExit, match=f"image 'scene{SEEDS[1]:03d}' of the folder dataset .* cannot be read "
                                         r"\(\w*Error: .+\)\. Replace the file"):
        evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery",
                 "--no-random-weights", "--device", "cpu", "--out-dir", str(tmp_path / "out"))


def test_one_named_gpu_for_several_processes_is_refused(monkeypatch):
    from captum_clip.evaluation import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    with pytest.raises(ValueError, match="names one GPU for all 2 processes; under torchrun pass --device cuda"):
        distributed._device("cuda:0", local_rank=1, world_size=2)
    assert distributed._device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    assert distributed._device("auto", local_rank=3, world_size=4) == torch.device("cuda", 1)
    assert distributed._device("cuda:1", local_rank=0, world_size=1) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 3


def _shard_rows(out: Path, method: str):
    rows = [row for path in sorted((out / "shards").glob("*.json")) for row in json.loads(path.read_text())["rows"]]
    return sorted((r for r in rows if r["method"] == method), key=lambda r: (r["stem"], str(r["query"])))


@pytest.mark.parametrize("protocol", ["cam-miou", "segmentation", "wsol", "deletion", "insertion", "mutual-mi",
                                      "quantus"])
def test_each_protocol_aggregates_its_per_image_rows_as_defined(tmp_path, protocol):
    root = write_folder(tmp_path / "data", SEEDS[:6])
    out = tmp_path / "out"
    method = "mutual" if protocol == "mutual-mi" else "surgery"
    extra = {"cam-miou": ["--threshold", "sweep"],
             "quantus": ["--option", "metrics=PointingGame,TopKIntersection"]}.get(protocol, [])
    evaluate(protocol, "--dataset", "folder", "--root", str(root), "--methods", method, "--batch-size", "3",
             "--out-dir", str(out), *extra)
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {method, f"{method} (random weights)"}
    metrics = results["methods"][method]
    rows = _shard_rows(out, method)
    assert len({r["stem"] for r in rows}) == 6
    if protocol == "cam-miou":
        best = None
        for t, threshold in enumerate(np.round(np.arange(0.05, 0.96, 0.05), 2)):
            confusion = np.zeros((len(CLASSNAMES) + 1,) * 2)
            for r in rows:
                dense = np.zeros(np.prod(r["stats"]["shape"]))
                dense[r["stats"]["index"]] = r["stats"]["count"]
                confusion += dense.reshape(r["stats"]["shape"])[t]
            union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
            with np.errstate(invalid="ignore"):
                miou = np.nanmean(np.diag(confusion) / np.where(union > 0, union, np.nan))
            if best is None or miou > best[0]:
                best = (miou, threshold)
        assert metrics["miou"] == pytest.approx(best[0], abs=1e-12) and metrics["threshold"] == best[1]
    elif protocol == "segmentation":
        correct = sum(r["stats"]["correct"] for r in rows)
        labeled = sum(r["stats"]["labeled"] for r in rows)
        inter = np.sum([r["stats"]["intersection"] for r in rows], axis=0)
        union = np.sum([r["stats"]["union"] for r in rows], axis=0)
        assert metrics["pixel_accuracy"] == pytest.approx(correct / labeled, abs=1e-9)
        assert metrics["miou"] == pytest.approx(np.mean(inter / union), abs=1e-9)
        assert metrics["map"] == pytest.approx(np.mean([r["stats"]["ap"] for r in rows]), abs=1e-12)
    elif protocol == "wsol":
        hits = np.array([r["stats"]["hits"] for r in rows], dtype=float)
        assert metrics["maxboxacc"] == pytest.approx(hits.mean(0).max(), abs=1e-12)
        v2 = np.array([r["stats"]["hits_v2"] for r in rows], dtype=float)
        assert metrics["maxboxacc_v2"] == pytest.approx(v2.mean(0).max(0).mean(), abs=1e-12)
    elif protocol in ("deletion", "insertion"):
        curves = np.array([r["stats"]["curve"] for r in rows])
        assert curves.shape == (6, 11) and set(np.unique(curves)) <= {0.0, 1.0}
        expected = np.mean([(c[:-1] + c[1:]).sum() / 2 / 10 for c in curves])
        assert metrics["auc"] == pytest.approx(expected, abs=1e-12)
    elif protocol == "quantus":
        for name in ("PointingGame", "TopKIntersection"):
            values = np.array([r[name] for r in rows])
            assert metrics[name] == pytest.approx(values[np.isfinite(values)].mean(), abs=1e-12)
        assert set(np.unique([r["PointingGame"] for r in rows])) <= {0.0, 1.0}
    else:
        assert metrics["mi"] == pytest.approx(np.mean([r["mi"] for r in rows]), abs=1e-12)
        assert metrics["auc"] == pytest.approx(np.mean([r["auc"] for r in rows]), abs=1e-12)
    for name, value in metrics.items():
        if name.endswith("_stderr"):
            assert np.isfinite(value) and value >= 0, name


def test_dataloader_workers_and_autocast_precision(tmp_path):
    root = write_folder(tmp_path / "data", SEEDS[:4])
    plain, other = tmp_path / "plain", tmp_path / "other"
    evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery", "--batch-size", "2",
             "--no-random-weights", "--out-dir", str(plain))
    # Two worker processes read and preprocess the batches; the rows do not change.
    evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery", "--batch-size", "2",
             "--no-random-weights", "--workers", "2", "--out-dir", str(other))
    assert (plain / "per_image.csv").read_text() == (other / "per_image.csv").read_text()
    bf16 = tmp_path / "bf16"
    evaluate("pointing", "--dataset", "folder", "--root", str(root), "--methods", "surgery,gradcam", "--batch-size",
             "2", "--no-random-weights", "--precision", "bf16", "--out-dir", str(bf16))
    results = json.loads((bf16 / "results.json").read_text())
    assert set(results["methods"]) == {"surgery", "gradcam"} and results["config"]["precision"] == "bf16"
    assert all(np.isfinite(v["pointing"]) for v in results["methods"].values())


def test_convis_ood_on_wnid_folders_reports_aurocs_computed_from_its_rows(tmp_path, real_wordnet):
    from sklearn.metrics import roc_auc_score

    root = tmp_path / "imagenet"
    # tench (a fish) is ID under fish.n.01, a dog OOD under dog.n.01, a car under neither (left out).
    for k, wnid in enumerate(("n01440764", "n02084071", "n02958343")):
        folder = root / "val" / wnid
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(generate_scene(100 + 10 * k + j, image_size=64).image).save(folder / f"img{j}.JPEG")
    out = tmp_path / "out"
    evaluate("convis-ood", "--dataset", "imagenet", "--root", str(root), "--methods", "convis,surgery",
             "--option", "id_synset=fish.n.01", "--option", "ood_synset=dog.n.01", "--batch-size", "4",
             "--out-dir", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["surgery"] == {}  # only ConVis has this experiment
    rows = [r for r in read_rows(out) if r["method"] == "convis"]
    assert len(rows) == 8 and {r["stem"].split("/")[0] for r in rows} == {"n01440764", "n02084071"}
    is_ood = np.array([r["is_ood"] == "1" for r in rows])
    assert is_ood.sum() == 4 and all(r["stem"].startswith("n02084071") for r, o in zip(rows, is_ood) if o)
    for name in ("id_definition", "hierarchy_definitions", "hierarchy_lemmas", "zero_shot"):
        expected = roc_auc_score(is_ood, -np.array([float(r[name]) for r in rows]))
        assert results["methods"]["convis"][name] == pytest.approx(expected, abs=1e-6), name
    with pytest.raises(SystemExit, match="needs --option id_synset"):
        evaluate("convis-ood", "--dataset", "imagenet", "--root", str(root), "--methods", "convis",
                 "--out-dir", str(tmp_path / "o"))


def test_each_protocol_outlines_the_truth_it_scores():
    """The report's outline: the class mask (pointing), the foreground (segmentation), the boxes (wsol)."""
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:4, :4] = 1  # class 0
    mask[4:, 4:] = 2  # class 1
    batch = {"image": torch.zeros(1, 3, 8, 8), "mask": [mask], "boxes": [torch.tensor([[0.0, 4.0, 2.0, 8.0]])],
             "box_labels": [torch.tensor([1])]}
    pointing = PROTOCOLS["pointing"]().truth(batch, 0, 0)
    assert pointing.sum() == 16 and pointing[:4, :4].all()
    assert PROTOCOLS["segmentation"]().truth(batch, 0, 0).sum() == 32  # the whole foreground
    boxes = PROTOCOLS["wsol"]().truth(batch, 0, 0)
    assert boxes.sum() == 8 and boxes[4:, :2].all()  # the boxes, though the dataset has masks too
    no_mask = {**batch, "mask": [None]}
    assert (PROTOCOLS["pointing"]().truth(no_mask, 0, 0) == boxes).all()


def test_every_column_has_its_direction_and_settings_have_none():
    from captum_clip.evaluation.benchmark import HIGHER_IS_BETTER

    assert PROTOCOLS["cam-miou"]().direction("miou") is True and PROTOCOLS["cam-miou"]().direction("threshold") is None
    assert PROTOCOLS["deletion"]().direction("auc") is False and PROTOCOLS["insertion"]().direction("auc") is True
    quantus = PROTOCOLS["quantus"](metrics="PointingGame,PixelFlipping")
    assert [quantus.direction(m) for m in ("PointingGame", "PixelFlipping")] == \
        [HIGHER_IS_BETTER["PointingGame"], HIGHER_IS_BETTER["PixelFlipping"]] == [True, False]
