"""Bad inputs give clear ValueErrors; loading handles configs, checkpoints, tags and unsupported towers."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from captum_clip import CLIPGradCAM, SurgeryCAM, ZeroShotClassifier, load_clip
from captum_clip.core.towers import resize_positional_table, vision_tower

from ..conftest import CLASSNAMES, TEMPLATES, TINY_CONFIGS, images_for


@pytest.fixture(scope="module")
def vit(tiny_classifiers, tiny_bundles):
    return tiny_classifiers["vit"], images_for(tiny_bundles["vit"], n=2)


def test_bad_classifier_arguments(tiny_bundles):
    bundle = tiny_bundles["vit"]
    with pytest.raises(ValueError, match="classnames is empty"):
        ZeroShotClassifier(bundle, [])
    with pytest.raises(ValueError, match="not a single string"):
        ZeroShotClassifier(bundle, "cat")
    with pytest.raises(ValueError, match="duplicates"):
        ZeroShotClassifier(bundle, ["cat", "cat"])
    with pytest.raises(ValueError, match="contain '\\{\\}'"):
        ZeroShotClassifier(bundle, ["cat"], templates=["a photo"])
    one = ZeroShotClassifier(bundle, ["cat"], TEMPLATES)
    with pytest.raises(ValueError, match="redundancy='empty'"):
        SurgeryCAM(one, redundancy="labelset")
    assert SurgeryCAM(one).redundancy_mode == "empty"  # "auto": a single query has no label set
    with pytest.raises(ValueError, match="redundancy must be one of"):
        SurgeryCAM(one, redundancy="mean")
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        SurgeryCAM(bundle.model)
    assert SurgeryCAM(one, redundancy="empty").attribute(images_for(bundle, 1), target=0).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_classifier_matches_open_clip_and_any_size(tiny_bundles, kind):
    bundle = tiny_bundles[kind]
    classifier = ZeroShotClassifier(bundle, CLASSNAMES, TEMPLATES, logit_scale=1.0)
    images = images_for(bundle, n=2)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(bundle.model.encode_image(images), dim=-1) @ classifier.text_features.T
        assert torch.allclose(classifier(images), expected, atol=1e-5)
        assert classifier(images_for(bundle, n=2, size=(80, 112))).shape == (2, 4)
    assert torch.allclose(classifier.text_features.norm(dim=-1), torch.ones(4), atol=1e-5)
    assert classifier.classnames == CLASSNAMES


def test_positional_table_resized_for_rectangles_without_touching_the_model(tiny_bundles):
    visual = tiny_bundles["vit"].model.visual
    before = visual.positional_embedding.detach().clone()
    table = resize_positional_table(visual.positional_embedding, (4, 4), (3, 6))
    assert table.shape == (1 + 18, visual.positional_embedding.shape[1])
    assert torch.equal(table[0], visual.positional_embedding[0])
    assert resize_positional_table(visual.positional_embedding, (4, 4), (4, 4)) is visual.positional_embedding
    assert torch.equal(visual.positional_embedding, before)


def test_load_config_with_local_checkpoints(tmp_path, tiny_bundles):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    state = tiny_bundles["vit"].model.state_dict()
    torch.save(state, tmp_path / "weights.pt")
    loaded = load_clip(config, pretrained=tmp_path / "weights.pt")
    assert not loaded.model.training
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, state[key])
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "weights.safetensors")
    assert torch.equal(load_clip(config, pretrained=tmp_path / "weights.safetensors").model.visual.proj,
                       state["visual.proj"])
    # An open_clip_config.json (model_cfg + preprocess_cfg) works too.
    wrapped = tmp_path / "open_clip_config.json"
    wrapped.write_text(json.dumps({"model_cfg": TINY_CONFIGS["vit"], "preprocess_cfg": {}}))
    assert load_clip(wrapped).tokenizer(["a cat"]).shape == (1, 77)


def test_loading_errors(tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip(config, pretrained=tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="local checkpoint"):
        load_clip(config, pretrained="openai")
    (tmp_path / "bad.json").write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(ValueError, match="not an open_clip model config"):
        load_clip(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="Unknown model"):
        load_clip("ViT-Q-99")
    other = tmp_path / "other.json"
    other.write_text(json.dumps(TINY_CONFIGS["resnet"]))
    torch.save(load_clip(other).model.state_dict(), tmp_path / "rn.pt")
    with pytest.raises(ValueError, match="does not fit model"):
        load_clip(config, pretrained=tmp_path / "rn.pt")


def test_pretrained_tag_offline_gives_a_clear_error():
    code = ("from captum_clip import load_clip\n"
            "try:\n    load_clip('RN50', pretrained='openai')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    assert out.startswith("WeightsUnavailableError")
    assert "'RN50'" in out and "'openai'" in out and "pretrained='/path/to/" in out


def test_unsupported_towers_are_named():
    class TimmLikeTower(nn.Module):
        pass

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = TimmLikeTower()

    with pytest.raises(NotImplementedError, match="TimmLikeTower"):
        vision_tower(Model())


@pytest.mark.parametrize("final_ln_after_pool", [False, True])
def test_patch_mean_pooled_vit_matches_open_clip(tiny_bundles, tmp_path, final_ln_after_pool):
    """A ViT pooling the patch mean (pool_type='avg') is read exactly as open_clip runs it."""
    config = json.loads(json.dumps(TINY_CONFIGS["vit_shallow"]))
    config["vision_cfg"].update(pool_type="avg", final_ln_after_pool=final_ln_after_pool)
    path = tmp_path / "tiny-avg.json"
    path.write_text(json.dumps(config))
    cls_pooled = tiny_bundles["vit_shallow"]
    bundle = load_clip(path)
    bundle.model.load_state_dict(cls_pooled.model.state_dict())
    tower, cls_tower = vision_tower(bundle.model), vision_tower(cls_pooled.model)
    images = images_for(bundle, n=2)
    with torch.no_grad():
        expected = bundle.model.encode_image(images)
        tokens, pooled = tower.surgery_tokens(images)
        cls_tokens, _ = cls_tower.surgery_tokens(images)
        features, feature_pooled = tower.last_block_features(images)
    assert not torch.allclose(expected, cls_pooled.model.encode_image(images), atol=1e-3)
    for actual in (tower.encode(images), pooled, feature_pooled):
        assert torch.allclose(actual, expected, atol=1e-5)
    # The v-v path does not depend on how the original path pools.
    assert torch.allclose(tokens[:, 1:], cls_tokens[:, 1:], atol=1e-5)
    classifier = ZeroShotClassifier(bundle, CLASSNAMES, TEMPLATES)
    for method in (SurgeryCAM(classifier), CLIPGradCAM(classifier)):
        maps = method.attribute(images, target=[0, 2])
        assert maps.shape == (2, 1, 48, 48) and maps.abs().amax() > 0


def test_attentional_pooler_vit_is_refused_with_its_pool_type(tiny_bundles, tmp_path):
    config = json.loads(json.dumps(TINY_CONFIGS["vit_shallow"]))
    config["vision_cfg"]["pool_type"] = "none"
    path = tmp_path / "tiny-none.json"
    path.write_text(json.dumps(config))
    with pytest.raises(NotImplementedError, match="pool_type='none'"):
        vision_tower(load_clip(path).model)


def test_no_false_random_init_warning_when_weights_load(caplog, tmp_path):
    """open_clip warns that a config-built model is random; true without weights, false for 'shapes'."""
    with caplog.at_level("WARNING"):
        load_clip("shapes")
    assert not any("initialized randomly" in r.getMessage() or "no CLIP weights" in r.getMessage()
                   for r in caplog.records)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY_CONFIGS["vit_shallow"]))
    with caplog.at_level("WARNING"):
        load_clip(path)
    assert any("initialized randomly" in r.getMessage() for r in caplog.records)
    assert not any(isinstance(f, type) or "DropRandomInit" in type(f).__name__ for f in logging.getLogger().filters)
