"""A literal, one-image-at-a-time transcription of CLIP Surgery as the spec describes the reference.

Written independently of captum_clip (explicit attention matrices, the full
(L, K, E) feature-surgery tensor, square grids only) so that tests can check
the library on architectures and sizes that have no golden data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _resized_pos(table: torch.Tensor, side: int) -> torch.Tensor:
    native = int(math.sqrt(table.shape[0] - 1))
    if native == side:
        return table
    patch = table[1:].reshape(1, native, native, -1).permute(0, 3, 1, 2)
    patch = F.interpolate(patch, (side, side), mode="bilinear").reshape(-1, side * side).T
    return torch.cat([table[:1], patch], 0)


def _heads(x, n):  # (L, D) -> (n, L, d)
    return x.reshape(x.shape[0], n, -1).permute(1, 0, 2)


def _attend(q, k, v):
    scale = q.shape[-1] ** -0.5
    return torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1) @ v


def vit_surgery_tokens(visual, image):
    """image (1, 3, S, S) -> (1 + N, E) surgery tokens of a ViT tower."""
    x = visual.conv1(image)
    side = x.shape[-1]
    x = x.reshape(x.shape[1], -1).T
    x = torch.cat([visual.class_embedding[None], x], 0) + _resized_pos(visual.positional_embedding, side)
    x = visual.ln_pre(x)[None]
    blocks = list(visual.transformer.resblocks)
    for block in blocks[:-6]:
        x = block(x)
    x_ori, x_new = x[0], x[0]
    for block in blocks[-6:]:
        attn = block.attn
        u = block.ln_1(x_ori)
        q, k, v = (u @ attn.in_proj_weight.T + attn.in_proj_bias).chunk(3, dim=-1)
        n = attn.num_heads
        q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
        merge = lambda o: attn.out_proj(o.permute(1, 0, 2).reshape(o.shape[1], -1))
        o_ori, o_vv = merge(_attend(q, k, v)), merge(_attend(v, v, v))
        x_new = x_new + block.ls_1(o_vv)
        x_ori = x_ori + block.ls_1(o_ori)
        x_ori = x_ori + block.ls_2(block.mlp(block.ln_2(x_ori)))
    out = torch.cat([x_ori[:1], x_new[1:]], 0)
    return visual.ln_post(out) @ visual.proj


def resnet_surgery_tokens(visual, image):
    """image (1, 3, S, S) -> (1 + hw, E) v-v attention-pool tokens of a ModifiedResNet tower."""
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(image)))))
    side = x.shape[-1]
    x = x.reshape(x.shape[1], -1).T
    x = torch.cat([x.mean(0, keepdim=True), x], 0)
    pool = visual.attnpool
    x = x + _resized_pos(pool.positional_embedding, side)
    v = x @ pool.v_proj.weight.T + pool.v_proj.bias
    n = pool.num_heads
    out = _attend(_heads(v, n), _heads(v, n), _heads(v, n))
    return pool.c_proj(out.permute(1, 0, 2).reshape(out.shape[1], -1))


def labelset_surgery(features, text):
    """features (1 + N, E) unit norm, text (K, E) -> (1 + N, K), with the explicit redundancy tensor."""
    prob = torch.softmax((features[:1] @ text.T) * 2, dim=-1)
    weights = prob / prob.mean(dim=-1, keepdim=True)
    feats = features[:, None, :] * text[None, :, :] * weights[0][None, :, None]
    return (feats - feats.mean(dim=1, keepdim=True)).sum(dim=-1)


def similarity_map(sim, size):
    """sim (1 + N, K) -> (K, size, size): min-max over patches, square grid, bilinear."""
    sim = sim[1:]
    sim = (sim - sim.min(0, keepdim=True)[0]) / (sim.max(0, keepdim=True)[0] - sim.min(0, keepdim=True)[0])
    side = int(math.sqrt(sim.shape[0]))
    grid = sim.T.reshape(1, -1, side, side)
    return F.interpolate(grid, (size, size), mode="bilinear")[0]


@torch.no_grad()
def labelset_similarities_and_maps(model, images, text):
    """Per image: label-set similarities (B, 1 + N, K) and maps (B, K, S, S)."""
    tower = vit_surgery_tokens if hasattr(model.visual, "transformer") else resnet_surgery_tokens
    sims = [labelset_surgery(F.normalize(tower(model.visual, image[None]), dim=-1), text) for image in images]
    maps = [similarity_map(sim, image.shape[-1]) for sim, image in zip(sims, images)]
    return torch.stack(sims), torch.stack(maps)
