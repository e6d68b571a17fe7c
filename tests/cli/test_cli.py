"""The captum-clip command line writes figures and fails with clear messages."""

import json

import numpy as np
import pytest
from PIL import Image

from captum_clip.cli import main
from captum_clip.core.loading import BUILTIN_MODELS

from ..conftest import TINY_CONFIGS


@pytest.fixture()
def image_and_config(tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(image)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    return image, config


def test_explain_writes_one_panel_per_query_and_method(image_and_config, tmp_path, capsys):
    image, config = image_and_config
    out = tmp_path / "figure.png"
    main(["explain", str(image), "--text", "cat", "--text", "red star", "--method", "surgery,clip",
          "--method", "gradcam", "--model", str(config), "--out", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    figure = np.asarray(Image.open(out))
    # 3 rows (methods) x 3 columns (input + 2 queries) of equal panels.
    assert figure.shape[0] > 2 * 200 and figure.shape[1] > 2 * 200
    assert figure.std() > 10


def test_explain_single_query_uses_the_empty_redundancy(image_and_config, tmp_path):
    image, config = image_and_config
    out = tmp_path / "single.png"
    main(["explain", str(image), "--text", "a cat", "--model", str(config), "--out", str(out)])
    assert out.is_file()


@pytest.mark.parametrize("arguments,message", [
    (["--text", "cat", "--method", "lime"], "unknown method 'lime'"),
    ([], "at least one query"),
])
def test_explain_errors(image_and_config, tmp_path, arguments, message):
    image, config = image_and_config
    with pytest.raises(SystemExit, match=message):
        main(["explain", str(image), "--model", str(config), "--out", str(tmp_path / "x.png"), *arguments])


def test_explain_unreadable_image(image_and_config, tmp_path):
    _, config = image_and_config
    (tmp_path / "broken.png").write_text("not an image")
    with pytest.raises(SystemExit, match="cannot read image"):
        main(["explain", str(tmp_path / "broken.png"), "--text", "cat", "--model", str(config)])


@pytest.mark.skipif(not BUILTIN_MODELS["shapes"][1].is_file(), reason="shipped scene model not built")
def test_demo_runs_offline_with_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "demo.png"
    main(["demo", "--out", str(out), "--method", "surgery,clip"])
    assert out.is_file() and "wrote" in capsys.readouterr().out


def test_out_without_a_suffix_reports_the_file_it_wrote(image_and_config, tmp_path, capsys):
    image, config = image_and_config
    main(["explain", str(image), "--text", "cat", "--model", str(config), "--out", str(tmp_path / "figure")])
    assert f"wrote {tmp_path / 'figure.png'}\n" in capsys.readouterr().out
    assert (tmp_path / "figure.png").is_file() and not (tmp_path / "figure").exists()


def test_explain_with_ig_takes_its_steps_and_batch(image_and_config, tmp_path, capsys):
    image, config = image_and_config
    out = tmp_path / "ig.png"
    main(["explain", str(image), "--text", "cat", "--text", "dog", "--method", "ig", "--ig-steps", "3",
          "--ig-batch-size", "2", "--model", str(config), "--out", str(out)])
    assert out.is_file()


@pytest.mark.parametrize("arguments, message", [
    (["explain", "IMAGE", "--text", "cat", "--method", ","], "--method is empty"),
    (["explain", "IMAGE", "--text", "cat", "--method", "ig", "--ig-steps", "0"], "--ig-steps: expected a positive"),
    (["benchmark", "--n", "0"], "--n: expected a positive integer"),
    (["benchmark", "--n", "2", "--batch-size", "-1"], "--batch-size: expected a positive integer"),
    (["convis-wsol", "--scenes", "0"], "--scenes: expected a positive integer"),
    (["convis-ood", "--scenes", "two"], "--scenes: expected a positive integer, got 'two'"),
])
def test_counts_must_be_positive_and_methods_named(image_and_config, capsys, arguments, message):
    image, _ = image_and_config
    with pytest.raises(SystemExit) as stop:
        main([str(image) if a == "IMAGE" else a for a in arguments])
    assert message in str(stop.value) + capsys.readouterr().err


def test_explain_without_model_says_it_uses_the_shipped_one(image_and_config, tmp_path, capsys):
    image, _ = image_and_config
    main(["explain", str(image), "--text", "red star", "--out", str(tmp_path / "shipped.png")])
    assert "no --model given: using the shipped 'shapes' scene model" in capsys.readouterr().err


def test_a_checkpoint_for_another_model_says_to_pass_model(image_and_config, tmp_path):
    from safetensors.torch import save_file

    from captum_clip import load_clip

    image, config = image_and_config
    weights = tmp_path / "other.safetensors"
    save_file(load_clip(str(config)).model.state_dict(), str(weights))
    with pytest.raises(SystemExit) as stop:
        main(["explain", str(image), "--text", "cat", "--pretrained", str(weights), "--out", str(tmp_path / "x.png")])
    assert str(weights) in str(stop.value)
    assert "--model defaults to the shipped 'shapes' model" in str(stop.value)
