"""Bad checkpoints and devices get one clear error that names the file or the device."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from captum_clip import CheckpointError, load_clip
from captum_clip.core.loading import BUILTIN_MODELS

from ..conftest import TINY_CONFIGS


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIGS["vit"]))
    return path


def _bad_files(tmp_path):
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(BUILTIN_MODELS["shapes"][1].read_bytes()[:100])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    return {"empty": (empty, "is empty (0 bytes)"),
            "truncated": (truncated, "is not a readable .safetensors file (truncated or corrupt?)"),
            "garbage": (garbage, "is not a readable .pt file (truncated or corrupt?)")}


@pytest.mark.parametrize("case", ["empty", "truncated", "garbage"])
@pytest.mark.parametrize("model", ["shapes", "config", "ViT-B-32"])
def test_unreadable_checkpoints_name_the_file(tmp_path, config, case, model):
    path, reason = _bad_files(tmp_path)[case]
    name = str(config) if model == "config" else model
    with pytest.raises(CheckpointError) as error:
        load_clip(name, pretrained=path)
    message = str(error.value)
    assert str(path) in message and reason in message
    assert "weights_only" not in message


def test_a_checkpoint_of_another_architecture_says_what_did_not_fit(tmp_path, config):
    weights = tmp_path / "tiny.safetensors"
    save_file(load_clip(config).model.state_dict(), str(weights))
    with pytest.raises(CheckpointError, match=r"does not fit model 'shapes': (text pos_embed width changed|.*size mismatch|.*Missing)") \
            as error:
        load_clip("shapes", pretrained=weights)
    assert str(weights) in str(error.value)
    # A text tower of another width trips open_clip's bare "text pos_embed width changed!" assertion.
    wide = dict(TINY_CONFIGS["vit"], text_cfg=dict(TINY_CONFIGS["vit"]["text_cfg"], width=64))
    wide_config = tmp_path / "wide.json"
    wide_config.write_text(json.dumps(wide))
    with pytest.raises(CheckpointError, match=r"does not fit model") as error:
        load_clip(wide_config, pretrained=weights)
    assert str(weights) in str(error.value)


def test_devices_that_do_not_exist(config, monkeypatch):
    with pytest.raises(ValueError, match=r"device 'gpu0' is not a device torch knows"):
        load_clip(config, device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:7"):
        with pytest.raises(ValueError, match=f"device '{device}' asks for CUDA, but CUDA is not available"):
            load_clip(config, device=device)
    assert next(load_clip(config, device="auto").model.parameters()).device.type == "cpu"


def test_text_width_mismatch_names_open_clips_reason_for_every_kind_of_model(tmp_path, config):
    weights = tmp_path / "tiny.safetensors"
    save_file(load_clip(config).model.state_dict(), str(weights))
    wide = dict(TINY_CONFIGS["vit"], text_cfg=dict(TINY_CONFIGS["vit"]["text_cfg"], width=64))
    wide_config = tmp_path / "wide.json"
    wide_config.write_text(json.dumps(wide))
    for model in ("shapes", str(wide_config), "ViT-B-32"):
        with pytest.raises(CheckpointError) as error:
            load_clip(model, pretrained=weights)
        message = str(error.value)
        assert f"Checkpoint {weights} does not fit model {model!r}: text pos_embed width changed!" in message
        assert "architecture the weights were trained with" in message
        assert isinstance(error.value.__cause__, AssertionError)


def test_a_cuda_index_past_the_last_gpu_names_the_ones_there(config, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError) as error:
        load_clip(config, device="cuda:7")
    message = str(error.value)
    assert "device 'cuda:7' does not exist" in message and "1 CUDA device(s), cuda:0..cuda:0" in message
    assert "'cpu'" in message


def test_good_loads_are_unchanged_and_leave_the_callers_path_alone(tmp_path, config):
    weights = tmp_path / "weights.safetensors"
    torch.manual_seed(0)
    state = load_clip(config).model.state_dict()
    save_file(state, str(weights))
    before = (str(weights), weights.read_bytes())
    bundle = load_clip(config, pretrained=weights, device="cpu")
    assert (str(weights), weights.read_bytes()) == before
    assert bundle.pretrained == str(weights) and bundle.device == torch.device("cpu")
    assert all(torch.equal(state[k], v) for k, v in bundle.model.state_dict().items())
    assert load_clip("shapes").pretrained == str(BUILTIN_MODELS["shapes"][1])
