"""The vision tower's shortcuts equal the blocks they stand for: the CLS-only last block of Grad-CAM."""

import pytest
import torch
from torch import nn
from open_clip.transformer import ResidualAttentionBlock

from captum_clip import CLIPGradCAM, ZeroShotClassifier
from captum_clip.core.towers import (ACCELERATOR_PASS_IMAGES, CPU_PASS_IMAGES, CPU_PASS_TOKENS, ViTTower,
                                     vision_tower)

from ..conftest import CLASSNAMES, TEMPLATES, images_for


def cls_row_of_block_attention(block: ResidualAttentionBlock, u: torch.Tensor) -> torch.Tensor:
    """What the block's own ``nn.MultiheadAttention`` gives the CLS token, merged over heads: ``(B, D)``."""
    out = block.attn(u, u, u, need_weights=False)[0]
    return out[:, 0]


def merged(block: ResidualAttentionBlock, per_head: torch.Tensor) -> torch.Tensor:
    b, heads, _, head_dim = per_head.shape
    return block.attn.out_proj(per_head.transpose(1, 2).reshape(b, 1, heads * head_dim))[:, 0]


@pytest.mark.parametrize("kind", ["vit", "vit_shallow"])
def test_folded_cls_attention_equals_the_blocks_attention(tiny_bundles, kind):
    tower = vision_tower(tiny_bundles[kind].model)
    last = tower.blocks[-1]
    assert last.attn.in_proj_bias.abs().amin() > 0  # perturbed: a mis-placed bias would show
    u = last.ln_1(torch.randn(3, 17, last.attn.embed_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        expected = cls_row_of_block_attention(last, u)
        actual = merged(last, ViTTower.cls_attention(last, u))
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-5)


def test_folded_cls_attention_without_projection_bias():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(32, 4).eval()
    block.attn = nn.MultiheadAttention(32, 4, bias=False, batch_first=True).eval()
    u = torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(merged(block, ViTTower.cls_attention(block, u)),
                                   cls_row_of_block_attention(block, u), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["vit", "vit_shallow"])
def test_gradcam_head_is_the_last_block_then_the_pool(tiny_bundles, kind):
    tower = vision_tower(tiny_bundles[kind].model)
    images = images_for(tiny_bundles[kind], n=2)
    with torch.no_grad():
        activation = tower.gradcam_activation(images)
        torch.testing.assert_close(tower.gradcam_head(activation), tower.pool(tower.blocks[-1](activation)),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tower.gradcam_head(activation), tiny_bundles[kind].model.encode_image(images),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["vit", "vit_shallow", "resnet"])
def test_gradcam_all_targets_equal_one_call_per_target_within_1e_5(tiny_bundles, kind):
    """The shared forward and the folded head give each target's map as Captum's full backward does."""
    classifier = ZeroShotClassifier(tiny_bundles[kind], CLASSNAMES, TEMPLATES)
    cam = CLIPGradCAM(classifier)
    images = images_for(tiny_bundles[kind], n=3, seed=2)
    every = cam.attribute_all(images, relu_attributions=False, interpolate=False)
    for k in range(len(CLASSNAMES)):
        one = cam.attribute(images, target=k, relu_attributions=False, interpolate=False)
        scale = one.abs().amax()
        assert scale > 0
        torch.testing.assert_close(every[:, k:k + 1] / scale, one / scale, atol=1e-5, rtol=0)


def test_pass_size_is_a_token_budget_on_a_cpu_and_large_elsewhere(tiny_bundles):
    vit, resnet = vision_tower(tiny_bundles["vit"].model), vision_tower(tiny_bundles["resnet"].model)
    assert vit.tokens_per_image((64, 64)) == 17 and vit.tokens_per_image((224, 224)) == 197
    assert vit.images_per_pass((64, 64), "cpu") == CPU_PASS_TOKENS // 17
    assert vit.images_per_pass((224, 224), torch.device("cpu")) == CPU_PASS_TOKENS // 197
    assert vit.images_per_pass((4096, 4096), "cpu") == 1
    assert vit.images_per_pass((64, 64), "cuda") == ACCELERATOR_PASS_IMAGES
    assert resnet.tokens_per_image((96, 96)) is None
    assert resnet.images_per_pass((96, 96), "cpu") == CPU_PASS_IMAGES

