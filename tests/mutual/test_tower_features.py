"""The tower's last-block features that Mutual Knowledge decomposes (tokens and keys, ViT and ResNet)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ..conftest import images_for


def _capture(module, images, model, use_input=False):
    seen = {}
    handle = module.register_forward_hook(lambda m, args, out: seen.setdefault("x", args[0] if use_input else out))
    try:
        with torch.no_grad():
            model.encode_image(images)
    finally:
        handle.remove()
    return seen["x"]


def test_vit_tokens_and_keys(tiny_classifiers, tiny_bundles):
    tower, model = tiny_classifiers["vit"].tower, tiny_bundles["vit"].model
    images = images_for(tiny_bundles["vit"], n=2)
    last = model.visual.transformer.resblocks[-1]
    with torch.no_grad():
        tokens, pooled = tower.last_block_features(images, "tokens")
        keys, pooled_keys = tower.last_block_features(images, "keys")
        reference = model.encode_image(images)
    # Tokens: the last block's output (before ln_post), batch-first (B, 1 + N, width).
    assert torch.allclose(tokens, _capture(last, images, model), atol=1e-6)
    assert tokens.shape == (2, 17, 64)
    # Keys: ln_1(x) W_k^T of the last block's input, without the key bias.
    attn_input = _capture(last.attn, images, model, use_input=True)
    width = tokens.shape[-1]
    expected = F.linear(attn_input, last.attn.in_proj_weight[width:2 * width])
    assert torch.allclose(keys, expected, atol=1e-6) and not torch.allclose(keys, tokens)
    assert torch.allclose(pooled, reference, atol=1e-5) and torch.allclose(pooled_keys, reference, atol=1e-5)


def test_resnet_tokens_and_keys(tiny_classifiers, tiny_bundles):
    tower, model = tiny_classifiers["resnet"].tower, tiny_bundles["resnet"].model
    images = images_for(tiny_bundles["resnet"], n=2)
    with torch.no_grad():
        tokens, pooled = tower.last_block_features(images, "tokens")
        keys, _ = tower.last_block_features(images, "keys")
        reference = model.encode_image(images)
    layer4 = _capture(model.visual.layer4, images, model)
    cells = layer4.flatten(2).transpose(1, 2)
    assert tokens.shape == (2, 10, 256)
    assert torch.allclose(tokens[:, 1:], cells) and torch.allclose(tokens[:, 0], cells.mean(1))
    assert keys.shape == tokens.shape and torch.allclose(pooled, reference, atol=1e-5)
    with pytest.raises(ValueError, match="facet"):
        tower.last_block_features(images, "values")
