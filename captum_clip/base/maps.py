"""From per-token scores to maps: per-map min-max, token grid, upsampling to the input frame."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def minmax(scores: Tensor, dim: int) -> Tensor:
    """Min-max normalise ``scores`` along ``dim`` (CLIP Surgery's ``get_similarity_map``).

    The reference has no epsilon and returns NaN for a constant map; here a
    constant map becomes all zeros, so downstream metrics get a usable array.
    """
    low = scores.amin(dim=dim, keepdim=True)
    span = scores.amax(dim=dim, keepdim=True) - low
    return torch.where(span > 0, (scores - low) / span.clamp_min(torch.finfo(scores.dtype).tiny), 0.0)


def patch_scores_to_grid(token_scores: Tensor, grid: Tuple[int, int]) -> Tensor:
    """``(B, 1 + gh*gw, K)`` per-token scores -> ``(B, K, gh, gw)`` patch grid (token 0 dropped)."""
    patches = token_scores[:, 1:]
    if patches.shape[1] != grid[0] * grid[1]:
        raise RuntimeError(f"{patches.shape[1]} patch tokens do not form a {grid[0]}x{grid[1]} grid.")
    return patches.transpose(1, 2).reshape(token_scores.shape[0], -1, grid[0], grid[1])


def upsample_to_input(grid_maps: Tensor, image_hw: Tuple[int, int], cell_size: Tuple[int, int]) -> Tensor:
    """Bilinearly upsample ``(B, K, gh, gw)`` maps to the input frame ``(B, K, H, W)``.

    ``align_corners=False`` as in the reference. When the input is not a
    multiple of the cell size, the grid covers only the top-left
    ``gh*cell x gw*cell`` pixels (the patch convolution drops the rest); the map
    is placed there and its border row/column is repeated over the remainder.
    """
    covered = (grid_maps.shape[-2] * cell_size[0], grid_maps.shape[-1] * cell_size[1])
    covered = (min(covered[0], image_hw[0]), min(covered[1], image_hw[1]))
    maps = F.interpolate(grid_maps, size=covered, mode="bilinear", align_corners=False)
    if covered != tuple(image_hw):
        maps = F.pad(maps, (0, image_hw[1] - covered[1], 0, image_hw[0] - covered[0]), mode="replicate")
    return maps
