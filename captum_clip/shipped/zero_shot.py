"""Zero-shot evaluation of a CLIP model on held-out single-object scenes.

Seed ranges keep evaluation honest: training scenes use seeds below
:data:`HELD_OUT_SEED_START` (see ``train_shapes.training_scene_seed``) and
evaluation scenes use seeds from it upwards, so no evaluated image was ever
trained on.  Progress checks during training use the separate validation
range from :data:`VALIDATION_SEED_START`, so the reported held-out numbers
never steered a training run.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..core.device import model_device
from ..core.loading import BUILTIN_TEMPLATES
from ..core.text import prompt_ensembles
from ..core.towers import vision_tower
from .scenes import CLIP_MEAN, CLIP_STD, COLORS, SHAPES, make_scenes, single_object_classnames, to_tensor

#: First seed of the held-out range; every training scene seed is smaller.
HELD_OUT_SEED_START = 1_000_000_000
#: First seed of the validation range used for progress checks while training.
VALIDATION_SEED_START = 1_500_000_000

#: Prompt templates, averaged per class as in CLIP's prompt ensembling (the shipped model's own).
ZERO_SHOT_TEMPLATES: tuple[str, ...] = BUILTIN_TEMPLATES["shapes"]

#: Colour-only class names ("red object") for the colour-only task.
COLOR_ONLY_NOUN = "object"




@torch.no_grad()
def image_features(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """Normalised (N, 3, H, W) images -> (N, D) unit-norm embeddings."""
    device = model_device(model)
    chunks = [model.encode_image(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    return F.normalize(torch.cat(chunks), dim=-1)


def _accuracy(features: torch.Tensor, class_features: torch.Tensor, labels: Sequence[int]) -> float:
    predictions = (features @ class_features.T).argmax(dim=-1).cpu()
    return (predictions == torch.as_tensor(labels)).float().mean().item()


def evaluate_zero_shot(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    n: int = 1000,
    seed: int = HELD_OUT_SEED_START,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> dict[str, float]:
    """Top-1 zero-shot accuracy on ``n`` single-object scenes with seeds ``seed .. seed + n - 1``.

    Returns:
        ``{"shape_color": ..., "shape": ..., "color": ...}`` in [0, 1]:
        36-way colour+shape classification ("red star"), 6-way shape-only
        ("star") and 6-way colour-only ("red object") classification, each
        with the prompt ensemble ``templates``.
    """
    was_training = model.training
    model.eval()
    scenes = make_scenes(n, seed=seed, image_size=vision_tower(model).native_image_size[0], n_objects=1)
    features = image_features(model, to_tensor([s.image for s in scenes], mean, std))

    joint_names = single_object_classnames()
    tasks = {
        "shape_color": (joint_names, [joint_names.index(s.objects[0]) for s in scenes]),
        "shape": (list(SHAPES), [SHAPES.index(s.shapes[0]) for s in scenes]),
        "color": ([f"{c} {COLOR_ONLY_NOUN}" for c in COLORS], [COLORS.index(s.colors[0]) for s in scenes]),
    }
    results = {
        task: _accuracy(features, prompt_ensembles(model, tokenizer, names, templates), labels)
        for task, (names, labels) in tasks.items()
    }
    model.train(was_training)
    return results


def main() -> None:
    """``python -m captum_clip.shipped.zero_shot [--n 1000]``: zero-shot accuracy of the shipped model."""
    import argparse
    import json

    from ..core.loading import load_clip

    parser = argparse.ArgumentParser(description="Held-out zero-shot accuracy of the shipped 'shapes' model.")
    parser.add_argument("--n", type=int, default=1000, help="held-out single-object scenes")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED_START)
    args = parser.parse_args()
    bundle = load_clip("shapes")
    accuracy = evaluate_zero_shot(bundle.model, bundle.tokenizer, n=args.n, seed=args.seed)
    print(json.dumps({"scenes": args.n, "seeds": [args.seed, args.seed + args.n - 1], **accuracy}, indent=2))


if __name__ == "__main__":
    main()
