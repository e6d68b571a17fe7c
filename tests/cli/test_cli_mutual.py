"""``captum-clip explain --method mutual`` writes the concept figure."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from captum_clip.cli import main

from ..conftest import TINY_BANK, TINY_CONFIGS


@pytest.fixture()
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPTUM_CLIP_CACHE_DIR", str(tmp_path / "cache"))
    image = tmp_path / "scene.png"
    Image.fromarray((np.random.default_rng(0).random((50, 70, 3)) * 255).astype(np.uint8)).save(image)
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    bank = tmp_path / "bank.json"
    bank.write_text(json.dumps(TINY_BANK))
    return image, config, bank


def test_mutual_alone_writes_the_concept_figure(files, tmp_path, capsys):
    image, config, bank = files
    out = tmp_path / "mutual.png"
    main(["explain", str(image), "--text", "cat", "--text", "dog", "--method", "mutual", "--model", str(config),
          "--descriptors", str(bank), "--out", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    figure = np.asarray(Image.open(out))
    assert figure.shape[1] > 2.5 * figure.shape[0] / 1.6 and figure.std() > 10
    assert any((tmp_path / "cache" / "mutual_banks").glob("*.safetensors"))  # bank embeddings cached


def test_mutual_beside_other_methods(files, tmp_path):
    image, config, bank = files
    out = tmp_path / "both.png"
    main(["explain", str(image), "--text", "cat", "--method", "surgery,mutual", "--model", str(config),
          "--descriptors", str(bank), "--out", str(out)])
    assert out.is_file() and (tmp_path / "both_mutual.png").is_file()


def test_bad_descriptor_file(files, tmp_path):
    image, config, _ = files
    with pytest.raises(SystemExit, match="cannot read descriptor bank"):
        main(["explain", str(image), "--text", "cat", "--method", "mutual", "--model", str(config),
              "--descriptors", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.png")])
