"""The captum-clip command line writes figures and fails with clear messages."""

import json

import numpy as np
import pytest
from PIL import Image

from captum_clip.cli import main
from captum_clip.loading import BUILTIN_MODELS

from .conftest import TINY_CONFIGS


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
