"""A from-scratch open_clip CLIP: built from a config, with its patch and position embeddings initialised.

Used to train the shipped model. Unlike the rest of the core, these functions write into the model they are
given; only a training script calls them.
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from open_clip.pos_embed import get_2d_sincos_pos_embed


def create_model(config: dict) -> open_clip.CLIP:
    """A randomly initialised ``open_clip.CLIP`` from a config (``embed_dim``, ``vision_cfg``, ``text_cfg``)."""
    return open_clip.CLIP(**config)


def create_tokenizer(config: dict) -> open_clip.SimpleTokenizer:
    """open_clip's BPE tokenizer with the config's context length."""
    return open_clip.SimpleTokenizer(context_length=config["text_cfg"]["context_length"])


def init_positional_embedding(model: open_clip.CLIP) -> None:
    """Start the (learnable) image positional embedding from a 2-D sin-cos grid.

    A from-scratch ViT otherwise spends many steps discovering which patches
    are neighbours; shapes are relations between neighbouring patches.
    """
    embedding = model.visual.positional_embedding
    grid = model.visual.grid_size[0]
    sincos = get_2d_sincos_pos_embed(embedding.shape[1], grid, cls_token=True)
    with torch.no_grad():
        # Scaled to the magnitude of open_clip's random init (width ** -0.5 per entry).
        embedding.copy_(torch.from_numpy(sincos).float() * embedding.std() / sincos.std())


def init_patch_embedding(model: open_clip.CLIP, images: torch.Tensor, eps: float = 1e-2) -> None:
    """Start the patch embedding as PCA whitening of the patches of ``images`` ``(N, 3, H, W)`` (normalised).

    Whitened patches expose edges and their orientation from the first step;
    from a random projection a small ViT needs roughly twice the scenes to
    tell shapes apart.
    """
    conv = model.visual.conv1
    patch, width = conv.kernel_size[0], conv.out_channels
    # Half-overlapping windows give more samples for the covariance.
    patches = F.unfold(images, patch, stride=patch // 2).transpose(1, 2).reshape(-1, 3 * patch * patch)
    patches = patches - patches.mean(dim=0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    # eigh sorts ascending; keep the strongest components, as many as there are channels.
    n_components = min(width, patches.shape[1])
    top_values, top_vectors = eigenvalues.flip(0)[:n_components], eigenvectors.flip(1)[:, :n_components]
    whitening = (top_vectors / (top_values + eps).sqrt()).T
    with torch.no_grad():  # channels beyond the patch dimension keep their random init
        conv.weight[:n_components].copy_(whitening.reshape(n_components, 3, patch, patch))
