"""Train the small CLIP that ships as captum_clip's offline default model.

Contrastive training on freshly generated shape scenes (nothing is stored on
disk).  Run::

    python -m captum_clip.shipped.training --out DIR [--minutes M] [--seed S]

It writes ``DIR/shapes.json`` (an open_clip model config) and
``DIR/shapes.safetensors`` (float16 weights, every key of ``state_dict()``),
then reloads them and prints the held-out zero-shot accuracy.

Captions are augmented so that zero-shot prompts work: full descriptions in
random object order under several templates, descriptions of a subset of
the objects, and mentions of only a shape ("a star") or only a colour ("a
red object").  Every batch also carries one caption per class ("a red
star", "a star", "a red object"): they give each image hard negatives that
differ from its objects in one attribute only, which is what teaches shapes
quickly.  A caption can be true of many images in a batch, so the loss
treats every (image, caption) pair whose caption is true of the image as a
positive instead of only the diagonal.  A second term asks the zero-shot
questions directly: a softmax over each group of class captions ("which
colour+shape?", "which shape?", "which colour?", :func:`class_group_loss`).

Seeds: training scene ``k`` of run seed ``S`` has scene seed
``S * TRAIN_SEED_STRIDE + k``, always below the evaluation range that starts
at ``evaluate.HELD_OUT_SEED_START``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm

from ..core.scratch import create_model, create_tokenizer, init_patch_embedding, init_positional_embedding
from .zero_shot import HELD_OUT_SEED_START, VALIDATION_SEED_START, evaluate_zero_shot
from .scenes import COLORS, MAX_OBJECTS, SHAPES, Scene, generate_scene, join_phrases, to_tensor

#: open_clip model config of the shipped model (written as shapes.json).
MODEL_CONFIG: dict = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {
        "image_size": 64,
        "patch_size": 8,
        "width": 64,
        "layers": 6,
        "head_width": 16,
        "mlp_ratio": 4.0,
        "pool_type": "tok",
    },
    "text_cfg": {
        "context_length": 32,
        "vocab_size": 49408,
        "width": 64,
        "heads": 4,
        "layers": 4,
    },
}

TRAIN_SEED_STRIDE = 10_000_000
MAX_RUN_SEED = HELD_OUT_SEED_START // TRAIN_SEED_STRIDE - 1

CONFIG_FILENAME = "shapes.json"
WEIGHTS_FILENAME = "shapes.safetensors"

# "{}" receives a list of objects with articles, e.g. "a red star and a ring".
CAPTION_TEMPLATES: tuple[str, ...] = (
    "{}",
    "{}.",
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a rendering of {}.",
    "a scene with {}.",
    "there is {}.",
)
COLOR_ONLY_NOUNS: tuple[str, ...] = ("object", "shape", "thing")

# How captions describe their scene (probabilities of the caption kinds).
FULL_CAPTION_PROB = 0.6  # every object, colour and shape
SUBSET_CAPTION_PROB = 0.2  # some objects, colour and shape
# the remaining 0.2: some objects, each by its shape only or its colour only

# A mention is (colour or None, shape or None): what a caption says about one object.
Mention = tuple[str | None, str | None]


# --------------------------------------------------------------------------
# Captions and which captions are true of which images
# --------------------------------------------------------------------------


def mention_phrase(mention: Mention, rng: np.random.Generator) -> str:
    """Words for one mention with an article: "an orange star", "a star", "a red shape"."""
    color, shape = mention
    if shape is None:
        noun_phrase = f"{color} {COLOR_ONLY_NOUNS[rng.integers(len(COLOR_ONLY_NOUNS))]}"
    elif color is None:
        noun_phrase = shape
    else:
        noun_phrase = f"{color} {shape}"
    # Zero-shot templates write "a {}" even before vowels ("a orange star"),
    # so both articles must read the same to the model.
    article = "an" if noun_phrase[0] in "aeiou" and rng.random() < 0.5 else "a"
    return f"{article} {noun_phrase}"


def sample_mentions(scene: Scene, rng: np.random.Generator) -> list[Mention]:
    """Choose which objects a caption mentions and how (see the caption kind probabilities)."""
    objects = [(scene.colors[i], scene.shapes[i]) for i in rng.permutation(len(scene.shapes))]
    kind = rng.random()
    if kind < FULL_CAPTION_PROB:
        return objects
    chosen = objects[: rng.integers(1, len(objects) + 1)]
    if kind < FULL_CAPTION_PROB + SUBSET_CAPTION_PROB:
        return chosen
    return [(color, None) if rng.random() < 0.5 else (None, shape) for color, shape in chosen]


def caption_from_mentions(mentions: Sequence[Mention], rng: np.random.Generator) -> str:
    template = CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))]
    return template.format(join_phrases([mention_phrase(m, rng) for m in mentions]))


CLASS_GROUP_SIZES = (len(COLORS) * len(SHAPES), len(SHAPES), len(COLORS))


def class_mentions() -> list[list[Mention]]:
    """One single-mention caption per class: every colour+shape, every shape, every colour."""
    joint = [[(color, shape)] for color in COLORS for shape in SHAPES]
    return joint + [[(None, shape)] for shape in SHAPES] + [[(color, None)] for color in COLORS]


def _attribute_index(mention: Mention) -> int:
    """Column of a mention in the scene attribute table: colour+shape, then shape, then colour."""
    color, shape = mention
    if color is None:
        return len(COLORS) * len(SHAPES) + SHAPES.index(shape)
    if shape is None:
        return len(COLORS) * len(SHAPES) + len(SHAPES) + COLORS.index(color)
    return COLORS.index(color) * len(SHAPES) + SHAPES.index(shape)


def caption_truth(scenes: Sequence[Scene], mentions: Sequence[Sequence[Mention]]) -> torch.Tensor:
    """(B_images, B_captions) bool: caption j is true of image i (every mention is in the scene).

    Each caption's own scene makes it true, so ``truth[i, i]`` holds for the
    captions sampled from ``scenes[i]``.
    """
    # present[i, k]: scene i shows attribute k (a colour+shape object, a shape or a colour).
    present = np.zeros((len(scenes), len(COLORS) * len(SHAPES) + len(SHAPES) + len(COLORS)), dtype=bool)
    for i, scene in enumerate(scenes):
        for color, shape in zip(scene.colors, scene.shapes):
            for mention in ((color, shape), (None, shape), (color, None)):
                present[i, _attribute_index(mention)] = True
    truth = np.stack(
        [present[:, [_attribute_index(m) for m in caption]].all(axis=1) for caption in mentions], axis=1
    )
    return torch.from_numpy(truth)


def multi_positive_clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor, truth: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP cross-entropy whose targets spread evenly over all true pairs.

    Args:
        image_features: (B, D) unit-norm image embeddings.
        text_features: (C, D) unit-norm caption embeddings, C >= B.
        logit_scale: scalar temperature (already exponentiated).
        truth: (B, C) bool, ``truth[i, j]`` = caption j is true of image i;
            every image needs a true caption.  Captions true of no image
            (class captions absent from the batch) act only as negatives.
    """
    logits = logit_scale * image_features @ text_features.T
    truth = truth.float()
    image_to_text = F.cross_entropy(logits, truth / truth.sum(dim=1, keepdim=True))
    described = truth.sum(dim=0) > 0
    text_truth = truth.T[described]
    text_to_image = F.cross_entropy(logits.T[described], text_truth / text_truth.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


def class_group_loss(
    image_features: torch.Tensor,
    class_text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    class_truth: torch.Tensor,
    group_sizes: Sequence[int] = CLASS_GROUP_SIZES,
) -> torch.Tensor:
    """Zero-shot classification loss: image-to-caption cross-entropy within each class group.

    The class captions form consecutive groups (colour+shape, shape, colour,
    see :func:`class_mentions`); a softmax over one group asks exactly the
    question zero-shot classification asks, e.g. "which shape?", without the
    answer being drowned by captions that differ in colour.  Mean over groups.

    Args:
        image_features: (B, D) unit-norm image embeddings.
        class_text_features: (K, D) unit-norm class caption embeddings, K = sum(group_sizes).
        logit_scale: scalar temperature (already exponentiated).
        class_truth: (B, K) bool, class caption k is true of image i; every
            image has a true caption in every group.
    """
    logits = logit_scale * image_features @ class_text_features.T
    losses = []
    for group_logits, group_truth in zip(logits.split(list(group_sizes), dim=1), class_truth.split(list(group_sizes), dim=1)):
        targets = group_truth.float()
        losses.append(F.cross_entropy(group_logits, targets / targets.sum(dim=1, keepdim=True)))
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------


def training_scene_seed(run_seed: int, index: int) -> int:
    """Scene seed of the ``index``-th training scene of run ``run_seed`` (below the held-out range)."""
    scene_seed = run_seed * TRAIN_SEED_STRIDE + index
    if not 0 <= index < TRAIN_SEED_STRIDE or scene_seed >= HELD_OUT_SEED_START:
        raise ValueError(f"training scene {index} of run seed {run_seed} would leave the training seed range")
    return scene_seed


class SceneBatches(IterableDataset):
    """Batch ``step`` -> (images (B,3,H,W), tokens (C,L), truth (B,C)), a pure function of (seed, step).

    The C = B + K captions are one per scene followed by the K = 48 class
    captions (:func:`class_mentions`), each under a random template.

    With several DataLoader workers, worker ``w`` makes steps ``w, w + W, ...``;
    the loader's round-robin then yields them in step order, so the data does
    not depend on the number of workers.
    """

    def __init__(
        self,
        steps: int,
        batch_size: int,
        run_seed: int,
        image_size: int,
        single_object_fraction: float,
        tokenizer,
    ):
        self.steps = steps
        self.batch_size = batch_size
        self.run_seed = run_seed
        self.image_size = image_size
        self.single_object_fraction = single_object_fraction
        self.tokenizer = tokenizer

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.run_seed, step])
        n_objects = np.where(
            rng.random(self.batch_size) < self.single_object_fraction,
            1,
            rng.integers(2, MAX_OBJECTS + 1, size=self.batch_size),
        )
        first = step * self.batch_size
        scenes = [
            generate_scene(training_scene_seed(self.run_seed, first + j), self.image_size, int(n_objects[j]))
            for j in range(self.batch_size)
        ]
        mentions = [sample_mentions(scene, rng) for scene in scenes] + class_mentions()
        captions = [caption_from_mentions(m, rng) for m in mentions]
        images = to_tensor([scene.image for scene in scenes])
        return images, self.tokenizer(captions), caption_truth(scenes, mentions)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        worker = get_worker_info()
        start, stride = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for step in range(start, self.steps, stride):
            yield self.batch(step)


# --------------------------------------------------------------------------
# Model, optimiser, saving
# --------------------------------------------------------------------------


def model_config(pool_type: str = MODEL_CONFIG["vision_cfg"]["pool_type"],
                 vision_layers: int = MODEL_CONFIG["vision_cfg"]["layers"]) -> dict:
    """:data:`MODEL_CONFIG` with the image tower pooling ``pool_type`` (``"tok"``: CLS, ``"avg"``: patch mean)
    and ``vision_layers`` transformer blocks."""
    config = json.loads(json.dumps(MODEL_CONFIG))
    config["vision_cfg"]["pool_type"] = pool_type
    config["vision_cfg"]["layers"] = vision_layers
    return config


def _decays(name: str, parameter: torch.nn.Parameter) -> bool:
    # open_clip's rule: no weight decay on gains, biases, norms and the temperature.
    return parameter.ndim >= 2 and not any(key in name for key in ("ln", "bn", "bias", "logit_scale"))


def create_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if _decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not _decays(n, p)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warmup to 1, then cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def save_model(model: torch.nn.Module, config: dict, out_dir: Path) -> tuple[Path, Path]:
    """Write the config and float16 weights (every state_dict key) -> (config path, weights path)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path, weights_path = out_dir / CONFIG_FILENAME, out_dir / WEIGHTS_FILENAME
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    # float16 halves the file; the 49408-row token embedding dominates it.
    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights_path), metadata={"format": "pt"})
    return config_path, weights_path


def load_model(config_path: Path, weights_path: Path) -> torch.nn.Module:
    """Build a float32 model from a config and (float16) safetensors weights, strictly."""
    model = create_model(json.loads(Path(config_path).read_text()))
    model.load_state_dict(load_file(str(weights_path)), strict=True)
    return model.eval()


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def train(args: argparse.Namespace) -> dict:
    """Train, save and evaluate; returns a summary dict (also printed by :func:`main`)."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    config = model_config(args.pool_type, args.vision_layers)
    model = create_model(config)
    init_positional_embedding(model)
    image_size = config["vision_cfg"]["image_size"]
    init_patch_embedding(
        model, to_tensor([generate_scene(training_scene_seed(args.seed, i), image_size).image for i in range(256)])
    )
    model = model.to(device).train()
    tokenizer = create_tokenizer(MODEL_CONFIG)
    optimizer = create_optimizer(model, args.lr, args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(args.warmup, args.steps))
    batches = SceneBatches(
        args.steps, args.batch_size, args.seed, image_size, args.single_object_fraction, tokenizer
    )
    loader = DataLoader(batches, batch_size=None, num_workers=args.workers)

    start = time.monotonic()
    deadline = start + 60 * args.minutes
    steps_done = 0
    progress = tqdm(loader, total=args.steps, desc="train", dynamic_ncols=True)
    for images, tokens, truth in progress:
        image_features, text_features, logit_scale = model(images.to(device), tokens.to(device))
        truth = truth.to(device)
        n_scenes = len(images)
        loss = multi_positive_clip_loss(image_features, text_features, logit_scale, truth)
        loss = loss + args.class_loss_weight * class_group_loss(
            image_features, text_features[n_scenes:], logit_scale, truth[:, n_scenes:]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():  # as open_clip: keep the temperature at most 100
            model.logit_scale.clamp_(0, math.log(100))
        steps_done += 1
        progress.set_postfix(loss=f"{loss.item():.3f}", scale=f"{logit_scale.item():.1f}")
        if args.eval_every and steps_done % args.eval_every == 0:
            accuracy = evaluate_zero_shot(model, tokenizer, n=200, seed=VALIDATION_SEED_START)
            progress.write(f"step {steps_done} validation: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
        if time.monotonic() > deadline:
            progress.write(f"time budget of {args.minutes} min reached after {steps_done}/{args.steps} steps")
            break
    progress.close()
    train_seconds = time.monotonic() - start

    config_path, weights_path = save_model(model, config, Path(args.out))
    # Evaluate what ships: the float16 file reloaded into a float32 model.
    shipped = load_model(config_path, weights_path).to(device)
    accuracy = evaluate_zero_shot(shipped, tokenizer, n=args.eval_scenes, seed=HELD_OUT_SEED_START)
    return {
        "steps": steps_done,
        "scenes_seen": steps_done * args.batch_size,
        "train_seconds": round(train_seconds, 1),
        "held_out_scenes": args.eval_scenes,
        "held_out_seeds": [HELD_OUT_SEED_START, HELD_OUT_SEED_START + args.eval_scenes - 1],
        "zero_shot_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "weights": str(weights_path),
        "weights_bytes": weights_path.stat().st_size,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for shapes.json and shapes.safetensors")
    parser.add_argument("--minutes", type=float, default=19.5,
                        help="stop training (and save) after this long, even before --steps")
    parser.add_argument("--seed", type=int, default=0, help=f"run seed, 0..{MAX_RUN_SEED}")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=1,
                        help="DataLoader processes generating scenes (1 overlaps generation with the training step)")
    parser.add_argument("--steps", type=int, default=2000, help="optimiser steps (the cosine schedule length)")
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=50, help="linear warmup steps")
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--single-object-fraction", type=float, default=0.4,
                        help="share of training scenes holding one object (the rest hold 2 or 3)")
    parser.add_argument("--vision-layers", type=int, default=MODEL_CONFIG["vision_cfg"]["layers"],
                        help="transformer blocks of the image tower")
    parser.add_argument("--pool-type", choices=("tok", "avg"), default=MODEL_CONFIG["vision_cfg"]["pool_type"],
                        help="image embedding: the CLS token (tok) or the mean of the patch tokens (avg)")
    parser.add_argument("--class-loss-weight", type=float, default=0.3,
                        help="weight of the per-group zero-shot classification loss (0: contrastive only)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="also print validation accuracy on 200 scenes every this many steps (0: never)")
    parser.add_argument("--eval-scenes", type=int, default=1000, help="held-out single-object scenes to evaluate")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= MAX_RUN_SEED:
        parser.error(f"--seed must be in 0..{MAX_RUN_SEED}")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    wall_start = time.monotonic()
    summary = train(args)
    summary["wall_seconds"] = round(time.monotonic() - wall_start, 1)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
