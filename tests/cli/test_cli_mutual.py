"""``captum-clip explain --method mutual`` writes the concept figure."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from captum_clip.cli import main



def test_mutual_alone_writes_the_concept_figure(cli_files, tmp_path, capsys):
    image, config, bank = cli_files
    out = tmp_path / "mutual.png"
    main(["explain", str(image), "--text", "cat", "--text", "dog", "--method", "mutual", "--model", str(config),
          "--descriptors", str(bank), "--out", str(out)])
    assert f"wrote {out}" in capsys.readouterr().out
    figure = np.asarray(Image.open(out))
    assert figure.shape[1] > 2.5 * figure.shape[0] / 1.6 and figure.std() > 10
    assert any((tmp_path / "cache" / "mutual_banks").glob("*.safetensors"))  # bank embeddings cached


def test_mutual_beside_other_methods(cli_files, tmp_path):
    image, config, bank = cli_files
    out = tmp_path / "both.png"
    main(["explain", str(image), "--text", "cat", "--method", "surgery,mutual", "--model", str(config),
          "--descriptors", str(bank), "--out", str(out)])
    assert out.is_file() and (tmp_path / "both_mutual.png").is_file()


def test_bad_descriptor_file(cli_files, tmp_path):
    image, config, _ = cli_files
    with pytest.raises(SystemExit, match="cannot read descriptor bank"):
        main(["explain", str(image), "--text", "cat", "--method", "mutual", "--model", str(config),
              "--descriptors", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.png")])
