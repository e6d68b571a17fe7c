"""Functional access to open_clip vision towers.

This is the only module of ``captum_clip`` that knows how open_clip lays out a
``VisionTransformer`` or a ``ModifiedResNet``. Every method asks it for tokens,
per-block q/k/v, projections and the Grad-CAM layer, and never touches the
towers' internals itself.

Everything here is functional: the user's modules are *called* (so hooks that
Captum registers fire as usual) but never modified. In particular the
positional embedding is interpolated into a fresh tensor for every input size,
unlike the CLIP Surgery reference, which writes the resized table back into
the parameter and so makes results depend on call history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

#: CLIP Surgery replaces the last six blocks of every ViT ("surgery 7" in the reference).
SURGERY_DEPTH = 6

#: Tokens per encoder pass on a CPU, and the pass sizes without a token count and on an accelerator
#: (:meth:`VisionTower.images_per_pass`).
CPU_PASS_TOKENS = 1536
CPU_PASS_IMAGES = 16
ACCELERATOR_PASS_IMAGES = 256


@dataclass(frozen=True)
class QKV:
    """Per-head queries, keys and values, each ``(B, heads, L, head_dim)``."""

    q: Tensor
    k: Tensor
    v: Tensor


def vision_tower(model: nn.Module) -> "VisionTower":
    """Return the adapter for ``model.visual``.

    Args:
        model: an open_clip ``CLIP`` / ``CustomTextCLIP`` model.

    Returns:
        A :class:`ViTTower` or :class:`ResNetTower`.

    Raises:
        NotImplementedError: for towers other than open_clip's
            ``VisionTransformer`` and ``ModifiedResNet`` (timm, Hugging Face, ...).
    """
    visual = getattr(model, "visual", None)
    if isinstance(visual, VisionTransformer):
        return ViTTower(visual)
    if isinstance(visual, ModifiedResNet):
        return ResNetTower(visual)
    kind = type(visual).__name__ if visual is not None else "no `.visual` attribute"
    raise NotImplementedError(
        f"captum_clip supports open_clip VisionTransformer and ModifiedResNet vision towers; "
        f"this model's vision tower is {kind} ({type(visual).__module__}). "
        "timm and Hugging Face towers are not supported yet."
    )


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, length, width = x.shape
    return x.reshape(b, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    b, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(b, length, heads * head_dim)


def resize_positional_table(table: Tensor, native: Tuple[int, int], grid: Tuple[int, int]) -> Tensor:
    """Bilinearly resize the patch part of a ``(1 + gh*gw, D)`` positional table.

    The first row (CLS / mean token) is kept. ``align_corners=False`` as in the
    CLIP Surgery reference. Returns ``table`` itself when ``grid == native``.
    """
    if tuple(grid) == tuple(native):
        return table
    width = table.shape[-1]
    patch = table[1:].reshape(1, native[0], native[1], width).permute(0, 3, 1, 2)
    patch = F.interpolate(patch.float(), size=tuple(grid), mode="bilinear", align_corners=False)
    patch = patch.to(table.dtype).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], width)
    return torch.cat([table[:1], patch], dim=0)


class VisionTower:
    """Common interface of the supported vision towers.

    Token tensors are batch-first ``(B, 1 + gh*gw, ·)``; token 0 is the CLS token
    (ViT) or the mean token (ResNet attention pool); patch ``1 + r*gw + c`` is
    grid cell (r, c), row-major.
    """

    kind: str = ""
    #: Pixels per grid cell (patch size for ViT, total stride 32 for ResNet).
    cell_size: Tuple[int, int] = (1, 1)

    def __init__(self, visual: nn.Module):
        self.visual = visual

    @property
    def module(self) -> nn.Module:
        """The vision tower itself (e.g. to select its parameters)."""
        return self.visual

    # -- geometry ---------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        raise NotImplementedError

    @property
    def native_image_size(self) -> Tuple[int, int]:
        raise NotImplementedError

    def grid_shape(self, image_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Token grid ``(gh, gw)`` produced for an input of size ``image_hw``."""
        return image_hw[0] // self.cell_size[0], image_hw[1] // self.cell_size[1]

    def tokens_per_image(self, image_hw: Tuple[int, int]) -> Optional[int]:
        """Sequence length of one image of size ``image_hw`` through the blocks (None: not a token model)."""
        return None

    def images_per_pass(self, image_hw: Tuple[int, int], device: torch.device | str) -> int:
        """How many images of size ``image_hw`` one encoder pass should take on ``device``, for the methods that
        encode many images of their own (ConVis's windows, Mutual Knowledge's prompts).

        An accelerator takes :data:`ACCELERATOR_PASS_IMAGES`. A CPU runs faster per image in passes of about
        :data:`CPU_PASS_TOKENS` tokens than in one large pass, whose activations fall out of cache
        (``benchmarks/bench_encoder_passes.py``); a tower without tokens takes :data:`CPU_PASS_IMAGES`.
        """
        if torch.device(device).type != "cpu":
            return ACCELERATOR_PASS_IMAGES
        tokens = self.tokens_per_image(tuple(image_hw))
        return CPU_PASS_IMAGES if tokens is None else max(1, CPU_PASS_TOKENS // tokens)

    # -- forward passes ---------------------------------------------------------------
    def encode(self, images: Tensor) -> Tensor:
        """Vanilla pooled image embedding ``(B, E)`` at any input size (not normalised)."""
        raise NotImplementedError

    def dense_tokens(self, images: Tensor) -> Tensor:
        """Raw-CLIP dense tokens ``(B, 1 + gh*gw, E)``: every token through the output head."""
        raise NotImplementedError

    def surgery_tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        """CLIP Surgery tokens ``(B, 1 + gh*gw, E)`` and the vanilla pooled embedding ``(B, E)``.

        The pooled embedding comes out of the same pass, so a caller needing the
        predicted class pays no second forward.
        """
        raise NotImplementedError

    #: Facets :meth:`last_block_features` can return.
    FEATURE_FACETS = ("tokens", "keys")

    def last_block_features(self, images: Tensor, facet: str = "tokens") -> Tuple[Tensor, Tensor]:
        """Features of the last stage, one row per token, and the pooled embedding of the same pass.

        Mutual Knowledge decomposes these features into foreground and parts.

        Args:
            images: normalised images ``(B, 3, H, W)``.
            facet: ``"tokens"`` (the last stage's output, before any output head) or ``"keys"`` (the
                attention keys the final attention computes, without the key bias).

        Returns:
            ``(features, pooled)``: features ``(B, 1 + gh*gw, C)`` with token 0 the CLS / mean token, and the
            vanilla pooled embedding ``(B, E)`` (not normalised).
        """
        raise NotImplementedError

    @classmethod
    def _check_facet(cls, facet: str) -> None:
        if facet not in cls.FEATURE_FACETS:
            raise ValueError(f"facet must be one of {cls.FEATURE_FACETS}; got {facet!r}.")

    # -- Grad-CAM ---------------------------------------------------------------------
    @property
    def gradcam_layer(self) -> nn.Module:
        """The module whose activation Grad-CAM uses."""
        raise NotImplementedError

    #: Whether Grad-CAM reads the layer's input (True) or output (False).
    gradcam_on_input: bool = False

    def gradcam_activation(self, images: Tensor) -> Tensor:
        """The Grad-CAM layer's activation for ``images``, the same tensor :attr:`gradcam_layer` sees."""
        raise NotImplementedError

    def gradcam_head(self, activation: Tensor) -> Tensor:
        """The pooled embedding ``(B, E)`` from the Grad-CAM activation: the rest of :meth:`encode`, and only the
        part the pooled embedding needs (with CLS pooling, the CLS row of the last block)."""
        raise NotImplementedError

    def activation_to_grid(self, activation: Tensor, grid: Tuple[int, int]) -> Tensor:
        """Turn the Grad-CAM layer's activation (or its gradient) into ``(B, C, gh, gw)``."""
        raise NotImplementedError


class ViTTower(VisionTower):
    """Adapter for open_clip's ``VisionTransformer`` (batch-first, open_clip 3.x)."""

    kind = "vit"
    #: open_clip ``pool_type`` values supported: the CLS token, or the mean of the patch tokens.
    POOL_TYPES = ("tok", "avg")

    def __init__(self, visual: VisionTransformer):
        super().__init__(visual)
        if visual.attn_pool is not None or visual.pool_type not in self.POOL_TYPES:
            raise NotImplementedError(
                "captum_clip supports ViT towers that pool the CLS token or the patch mean (pool_type 'tok' or "
                f"'avg', no attentional pooler); this tower has pool_type={visual.pool_type!r} and "
                f"attn_pool={type(visual.attn_pool).__name__}."
            )
        for block in visual.transformer.resblocks:
            if not isinstance(block, ResidualAttentionBlock) or not isinstance(block.attn, nn.MultiheadAttention):
                raise NotImplementedError(
                    f"captum_clip supports open_clip ResidualAttentionBlock ViT blocks; this tower uses "
                    f"{type(block).__name__} with {type(getattr(block, 'attn', None)).__name__} attention."
                )
        self.cell_size = tuple(visual.patch_size)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.visual.transformer.resblocks

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def native_image_size(self) -> Tuple[int, int]:
        return tuple(self.visual.image_size)

    def positional_embedding(self, grid: Tuple[int, int]) -> Tensor:
        """Positional table ``(1 + gh*gw, D)`` for a ``grid``, resized from the native one."""
        return resize_positional_table(self.visual.positional_embedding, self.visual.grid_size, grid)

    def embed(self, images: Tensor) -> Tensor:
        """Patch + CLS embedding with positions and ``ln_pre``: ``(B, 1 + gh*gw, D)``."""
        v = self.visual
        x = v.conv1(images.to(self.dtype))
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(grid).to(x.dtype)
        return v.ln_pre(v.patch_dropout(x))

    def qkv(self, block: ResidualAttentionBlock, u: Tensor) -> QKV:
        """Per-head q, k, v of ``block`` for its normalised input ``u`` ``(B, L, D)``."""
        attn = block.attn
        q, k, v = F.linear(u, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        heads = attn.num_heads
        return QKV(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads))

    @staticmethod
    def attention_output(block: ResidualAttentionBlock, per_head: Tensor) -> Tensor:
        """Merge heads ``(B, H, L, d_h)`` and apply the block's ``out_proj`` and LayerScale."""
        return block.ls_1(block.attn.out_proj(_merge_heads(per_head)))

    @staticmethod
    def mlp_residual(block: ResidualAttentionBlock, x: Tensor) -> Tensor:
        return x + block.ls_2(block.mlp(block.ln_2(x)))

    def head(self, tokens: Tensor) -> Tensor:
        """``ln_post`` then ``proj`` on every token: ``(B, L, D) -> (B, L, E)``."""
        x = self.visual.ln_post(tokens)
        return x @ self.visual.proj if self.visual.proj is not None else x

    @property
    def pools_cls(self) -> bool:
        return self.visual.pool_type == "tok"

    def pool(self, x: Tensor) -> Tensor:
        """The pooled embedding ``(B, E)`` from the last block's output ``x`` ``(B, 1 + gh*gw, D)``.

        As open_clip: the CLS token, or the mean of the patch tokens, with ``ln_post`` before pooling (per
        token) or after it (``final_ln_after_pool``), then ``proj``.
        """
        v = self.visual
        if self.pools_cls:
            return self.head(x[:, 0])
        if v.final_ln_after_pool:
            pooled = v.ln_post(x[:, 1:].mean(dim=1))
            return pooled @ v.proj if v.proj is not None else pooled
        return self.head(x[:, 1:]).mean(dim=1)

    def encode(self, images: Tensor) -> Tensor:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.pool(x)

    def dense_tokens(self, images: Tensor) -> Tensor:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def surgery_tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.embed(images)
        first_surgery = max(len(self.blocks) - SURGERY_DEPTH, 0)
        for block in self.blocks[:first_surgery]:
            x = block(x)
        original, new = x, x
        surgery_blocks = self.blocks[first_surgery:]
        for index, block in enumerate(surgery_blocks):
            qkv = self.qkv(block, block.ln_1(original))
            # The v-v path: queries and keys both replaced by the values.
            new = new + self.attention_output(block, F.scaled_dot_product_attention(qkv.v, qkv.v, qkv.v))
            if index == len(surgery_blocks) - 1 and self.pools_cls:
                # Only the CLS token of the original path is used after the last block,
                # so its patch queries and MLP rows are skipped.
                original = original[:, :1]
                qkv = QKV(qkv.q[:, :, :1], qkv.k, qkv.v)
            original = original + self.attention_output(block, F.scaled_dot_product_attention(qkv.q, qkv.k, qkv.v))
            original = self.mlp_residual(block, original)
        tokens = self.head(torch.cat([original[:, :1], new[:, 1:]], dim=1))
        return tokens, (tokens[:, 0] if self.pools_cls else self.pool(original))

    def last_block_features(self, images: Tensor, facet: str = "tokens") -> Tuple[Tensor, Tensor]:
        """Last-block features of every token and the pooled embedding, from one pass.

        ``"tokens"``: the last block's output before ``ln_post``. ``"keys"``: ``ln_1(x) W_k^T`` of the last
        block's input x, with W_k the key rows of ``in_proj_weight`` and no ``in_proj_bias`` (as the Mutual
        Knowledge reference recomputes them). open_clip 3.x is batch-first, so no LND permutes are needed.

        Returns:
            ``(features, pooled)``: ``(B, 1 + gh*gw, width)`` and ``(B, E)``.
        """
        self._check_facet(facet)
        x = self.embed(images)
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        keys = None
        if facet == "keys":
            width = x.shape[-1]
            keys = F.linear(last.ln_1(x), last.attn.in_proj_weight[width:2 * width])
        x = last(x)
        return (x if keys is None else keys), self.pool(x)

    @property
    def gradcam_layer(self) -> nn.Module:
        # With CLS pooling the last block's *output* gives all-zero patch gradients (only
        # CLS is pooled); the input of its ln_1 still feeds every token into the CLS
        # attention. With patch-mean pooling the same layer works, so both use it.
        return self.blocks[-1].ln_1

    gradcam_on_input = True

    def gradcam_activation(self, images: Tensor) -> Tensor:
        x = self.embed(images)
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    def gradcam_head(self, activation: Tensor) -> Tensor:
        last = self.blocks[-1]
        if not self.pools_cls:
            return self.pool(last(activation))
        cls = activation[:, :1] + self.attention_output(last, self.cls_attention(last, last.ln_1(activation)))
        return self.pool(self.mlp_residual(last, cls))

    @staticmethod
    def cls_attention(block: ResidualAttentionBlock, u: Tensor) -> Tensor:
        """The CLS query's attention over the normalised tokens ``u`` ``(B, L, D)``: ``(B, H, 1, d_h)``.

        Equal to attending with the block's own keys and values, in another order: the CLS query is folded into
        the key weights, and the tokens are pooled by the attention before the value weights. Every token then
        meets the weights only through rank-``H`` products, so a backward to ``u`` costs ``O(L H D)`` per target
        instead of the ``O(L D^2)`` of the key and value projections (Grad-CAM's K targets share the forward and
        each pay one backward).
        """
        attn = block.attn
        heads = attn.num_heads
        w_q, w_k, w_v = attn.in_proj_weight.unflatten(0, (3, heads, -1)).unbind(0)  # (H, d_h, D) each
        q = torch.einsum("bD,hdD->bhd", u[:, 0], w_q)
        out_bias = None
        if attn.in_proj_bias is not None:
            # The key bias adds q.b_k to every token's score alike, which the softmax cancels; the value bias
            # passes through unchanged, since the attention weights sum to one.
            b_q, _, out_bias = attn.in_proj_bias.unflatten(0, (3, heads, -1)).unbind(0)  # (H, d_h) each
            q = q + b_q
        q = q * w_q.shape[1] ** -0.5
        scores = torch.einsum("blD,bhD->bhl", u, torch.einsum("bhd,hdD->bhD", q, w_k))
        pooled = torch.einsum("bhl,blD->bhD", scores.softmax(dim=-1), u)
        out = torch.einsum("bhD,hdD->bhd", pooled, w_v)
        if out_bias is not None:
            out = out + out_bias
        return out[:, :, None]

    def tokens_per_image(self, image_hw: Tuple[int, int]) -> Optional[int]:
        grid = self.grid_shape(image_hw)
        return 1 + grid[0] * grid[1]

    def activation_to_grid(self, activation: Tensor, grid: Tuple[int, int]) -> Tensor:
        patches = activation[:, 1:]
        return patches.transpose(1, 2).reshape(activation.shape[0], activation.shape[-1], grid[0], grid[1])


class ResNetTower(VisionTower):
    """Adapter for open_clip's ``ModifiedResNet`` (stem, layer1-4, attention pool)."""

    kind = "resnet"
    cell_size = (32, 32)

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def native_image_size(self) -> Tuple[int, int]:
        size = self.visual.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def pool(self) -> nn.Module:
        return self.visual.attnpool

    def grid_shape(self, image_hw: Tuple[int, int]) -> Tuple[int, int]:
        # The stride-2 stem conv rounds up; the five 2x average pools that follow round down.
        return tuple(((size + 1) // 2) // 16 for size in image_hw)

    def features(self, images: Tensor) -> Tensor:
        """Stem and layer1-4: ``(B, C, h, w)``."""
        v = self.visual
        x = v.stem(images.to(self.dtype))
        return v.layer4(v.layer3(v.layer2(v.layer1(x))))

    def positional_embedding(self, grid: Tuple[int, int]) -> Tensor:
        table = self.pool.positional_embedding
        side = int(round((table.shape[0] - 1) ** 0.5))
        return resize_positional_table(table, (side, side), grid)

    def pool_tokens(self, features: Tensor) -> Tensor:
        """Attention-pool input ``(B, 1 + h*w, C)``: mean token, then cells, plus positions."""
        x = features.flatten(2).transpose(1, 2)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)
        return x + self.positional_embedding(tuple(features.shape[-2:])).to(x.dtype)

    def _project(self, layer: nn.Linear, tokens: Tensor) -> Tensor:
        return _split_heads(F.linear(tokens, layer.weight, layer.bias), self.pool.num_heads)

    def qkv(self, tokens: Tensor) -> QKV:
        """Per-head q, k, v of the attention pool for ``tokens`` ``(B, L, C)``."""
        return QKV(self._project(self.pool.q_proj, tokens), self._project(self.pool.k_proj, tokens),
                   self._project(self.pool.v_proj, tokens))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return self.pool.c_proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))

    def encode(self, images: Tensor) -> Tensor:
        qkv = self.qkv(self.pool_tokens(self.features(images)))
        return self._attend(qkv.q[:, :, :1], qkv.k, qkv.v)[:, 0]

    def dense_tokens(self, images: Tensor) -> Tensor:
        # The reference's raw-CLIP baseline runs the original pool with every token as a query.
        qkv = self.qkv(self.pool_tokens(self.features(images)))
        return self._attend(qkv.q, qkv.k, qkv.v)

    def surgery_tokens(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        qkv = self.qkv(self.pool_tokens(self.features(images)))
        # q = k = v = v_proj(x): the reference builds its qkv weight from v_proj three times.
        tokens = self._attend(qkv.v, qkv.v, qkv.v)
        pooled = self._attend(qkv.q[:, :, :1], qkv.k, qkv.v)[:, 0]
        return tokens, pooled

    def last_block_features(self, images: Tensor, facet: str = "tokens") -> Tuple[Tensor, Tensor]:
        """layer4 features of every cell and the pooled embedding, from one pass.

        ``"tokens"``: the layer4 map before the attention pool (the last spatial map before pooling), as
        rows, with the cells' mean as token 0. ``"keys"``: the attention pool's keys ``k_proj(x)`` of its
        input tokens (mean token + cells + positions), without the key bias, mirroring the ViT keys.

        Returns:
            ``(features, pooled)``: ``(B, 1 + h*w, C)`` and ``(B, E)``.
        """
        self._check_facet(facet)
        features = self.features(images)
        tokens = self.pool_tokens(features)
        qkv = self.qkv(tokens)
        pooled = self._attend(qkv.q[:, :, :1], qkv.k, qkv.v)[:, 0]
        if facet == "keys":
            return F.linear(tokens, self.pool.k_proj.weight), pooled
        cells = features.flatten(2).transpose(1, 2)
        return torch.cat([cells.mean(dim=1, keepdim=True), cells], dim=1), pooled

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.visual.layer4

    def gradcam_activation(self, images: Tensor) -> Tensor:
        return self.features(images)

    def gradcam_head(self, activation: Tensor) -> Tensor:
        qkv = self.qkv(self.pool_tokens(activation))
        return self._attend(qkv.q[:, :, :1], qkv.k, qkv.v)[:, 0]

    gradcam_on_input = False

    def activation_to_grid(self, activation: Tensor, grid: Tuple[int, int]) -> Tensor:
        return activation
