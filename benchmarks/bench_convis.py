"""ConVis speed: this package's batched sweep next to the reference's way, on the same model and machine.

* **ours, 1 concept / 100 concepts**: ``ConVisAttribution`` on N images; the 730 windows that overlap the image are
  embedded in batches (tensor resize on the model's device) and one rank matrix per image serves every concept.
* **original's way**: a re-enactment of the reference's ``grid_heatmap`` loop for one concept: all 1,800 windows,
  one at a time, each with a full-canvas blurred mask pasted in PIL, PIL preprocessing and ``encode_image`` at batch
  size 1, then ranking and the subtree minimum in numpy. The reference (``generate_map(path, concept)``) repeats the
  whole sweep for every concept, so its 100-concept time is 100 × the measured one-concept time (printed as such).
* **text bank**: encoding the vocabulary's synset texts (no cache), texts/s.

Defaults: the shipped scene model (lemma texts, scene vocabulary), 2 scenes, 1 image the original's way, one torch
thread; a few minutes on a 2-core CPU. ``--model ViT-B-32`` times the paper's architecture (random weights: same
cost); ``--device cuda`` times a GPU (crops are still cut on the CPU; everything after runs on the device).

    python benchmarks/bench_convis.py [--model shapes] [--device cpu|cuda] [--images 2] [--original-images 1]
                                      [--threads 1] [--out benchmarks/results_convis.md]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from _timing import clock, sync

from captum_clip import load_clip
from captum_clip.convis import WindowConfig, build_text_bank, default_vocabulary
from captum_clip.convis.attribution import ConVisAttribution
from captum_clip.convis.bundle_adapters import bundle_text_encoder
from captum_clip.convis.frames import normalised_to_uint8
from captum_clip.shipped.presets import SCENE_TEXT_SOURCE, SHAPE_SYNSETS, scene_vocabulary
from captum_clip.convis.windows import _padding, square_image
from captum_clip.shipped import generate_scene, to_tensor
from captum_clip.shipped.zero_shot import HELD_OUT_SEED_START


def original_way_one_concept(bundle, text_embeddings: np.ndarray, subtree: list[int], image_224: np.ndarray,
                             config: WindowConfig = WindowConfig()) -> np.ndarray:
    """The reference's grid sweep for one concept, window by window at batch size 1 (spec §1b-§1d).

    Returns:
        ``(224, 224)`` map, for a consistency check against the batched implementation.
    """
    size, pad = config.canvas_size, config.pad
    canvas = Image.fromarray(np.array(_padding(size, config.pad_fill, config.noise_seed)))
    canvas.paste(Image.fromarray(image_224), (pad, pad))
    black = Image.new("RGB", (size, size))
    device = bundle.device
    rank_sum = np.zeros((size, size))
    for b in config.sizes:
        for y in range(0, size, config.stride):
            for x in range(0, size, config.stride):
                mask = Image.new("L", (size, size), 255)
                ImageDraw.Draw(mask).rectangle((x, y, min(x + b, size) - 1, min(y + b, size) - 1), fill=0)
                mask = mask.filter(ImageFilter.GaussianBlur(radius=config.rim_blur))
                masked = canvas.copy()
                masked.paste(black, (0, 0), mask)
                crop = masked.crop((x, y, min(x + b, size) - 1, min(y + b, size) - 1))
                with torch.inference_mode():
                    embedding = bundle.model.encode_image(bundle.preprocess(crop)[None].to(device))
                v = F.normalize(embedding.float(), dim=-1)[0].cpu().numpy()
                z = text_embeddings @ v
                rank = np.argsort(np.argsort(z)[::-1])
                rank_sum[y : y + b, x : x + b] += rank[subtree].min()
    s = rank_sum[pad : pad + config.image_size, pad : pad + config.image_size]
    return 1 - (s - s.min()) / (s.max() - s.min())


def _images(bundle, count: int, seed: int) -> list[torch.Tensor]:
    """Held-out scenes at the model's input size, normalised (one tensor per image)."""
    size = int(np.atleast_1d(bundle.model.visual.image_size)[0])
    mean, std = bundle.image_mean_std
    return [to_tensor(generate_scene(seed + i, image_size=size).image[None], mean, std) for i in range(count)]


def run(args: argparse.Namespace) -> tuple[str, list[tuple[str, str, str]]]:
    device = torch.device(args.device)
    bundle = load_clip(args.model, pretrained=args.pretrained, device=device)
    scene_model = args.model == "shapes"
    vocabulary = scene_vocabulary() if scene_model else default_vocabulary().extended(list(SHAPE_SYNSETS.values()))
    text_source = SCENE_TEXT_SOURCE if scene_model else "definition"
    size = int(np.atleast_1d(bundle.model.visual.image_size)[0])
    vision = sum(p.numel() for p in bundle.model.visual.parameters()) / 1e6
    what = (f"model {args.model} ({size} px input, {vision:.1f}M vision parameters), |T| = {len(vocabulary)} "
            f"synsets, text source '{text_source}'")
    rows = []

    # Text bank: encode every synset text, no cache.
    seconds = clock(lambda: build_text_bank(vocabulary, bundle_text_encoder(bundle), model_fingerprint="bench",
                                             text_source=text_source, use_cache=False), device)
    rows.append(("text bank (no cache)", f"{len(vocabulary)} texts ({text_source}), chunks of 256",
                 f"{len(vocabulary) / seconds:.0f} texts/s ({seconds:.1f} s)"))

    with tempfile.TemporaryDirectory() as cache:
        method = ConVisAttribution(bundle, vocabulary, text_source=text_source, batch_size=args.batch_size,
                                   cache_dir=cache)
        method.text_bank  # encode outside the timed region
        images = _images(bundle, args.images, args.seed)
        concept = SHAPE_SYNSETS["circle"]
        rng = np.random.default_rng(0)
        many = [vocabulary.names[i] for i in rng.choice(len(vocabulary), args.concepts, replace=False)]
        method.attribute(images[0].to(device), target=concept)  # warm-up (allocator, kernels)
        one = sum(clock(lambda x=x: method.attribute(x.to(device), target=concept), device) for x in images)
        hundred = sum(clock(lambda x=x: method.attribute_concepts(x.to(device), many), device) for x in images)
        windows = len(method.mapper.boxes)
        rows.append(("ours, 1 concept", f"{windows} windows, batch {method.batch_size}, tensor resize",
                     f"{len(images) / one:.3f} images/s ({one / len(images):.2f} s/image)"))
        rows.append((f"ours, {args.concepts} concepts", "one rank matrix per image",
                     f"{len(images) / hundred:.3f} images/s ({hundred / len(images):.2f} s/image)"))

        embeddings = method.text_bank.embeddings.numpy()
        subtree = vocabulary.subtree(concept)
        original = 0.0
        reference_map = None
        for x in images[: args.original_images]:
            image_224 = square_image(normalised_to_uint8(x, *bundle.image_mean_std)[0])
            start = time.perf_counter()
            reference_map = original_way_one_concept(bundle, embeddings, subtree, image_224)
            sync(device)
            original += time.perf_counter() - start
        n_original = args.original_images
        rows.append(("original's way, 1 concept", "1,800 windows, batch size 1, PIL per window",
                     f"{n_original / original:.4f} images/s ({original / n_original:.1f} s/image)"))
        rows.append((f"original's way, {args.concepts} concepts", f"{args.concepts} × the 1-concept sweep (computed)",
                     f"{n_original / (original * args.concepts):.6f} images/s "
                     f"({original * args.concepts / n_original:.0f} s/image)"))
        rows.append(("speed-up, 1 concept", "ours / original's way",
                     f"{(original / n_original) / (one / len(images)):.1f}×"))
        rows.append((f"speed-up, {args.concepts} concepts", "ours / original's way",
                     f"{(original * args.concepts / n_original) / (hundred / len(images)):.0f}×"))

        # Same pixels as the original's crops (PIL preprocess): the maps must agree.
        pil = ConVisAttribution(bundle, vocabulary, text_source=text_source, resize="pil", cache_dir=cache)
        ours = pil.concept_maps(images[args.original_images - 1].to(device), [concept])[0].maps[0].numpy()
        rows.append(("check: original vs ours (resize='pil')", "max |map difference|, last timed image",
                     f"{np.abs(ours - reference_map).max():.2e}"))
    return what, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes", help="shapes (shipped) or an open_clip model name / config")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=2, help="images timed with our implementation")
    parser.add_argument("--original-images", type=int, default=1, help="images timed the original's way")
    parser.add_argument("--concepts", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per forward pass (default: ConVisAttribution's, 16 on a CPU, 256 on a GPU)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED_START)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for both ways (1: on a shared 2-core machine, 2 threads made the "
                             "batch-size-1 forward 8x slower and the batched one 2x slower, from OpenMP contention)")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not 1 <= args.original_images <= args.images:
        parser.error("--original-images must be between 1 and --images")

    what, rows = run(args)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine()
    header = (f"ConVis speed: {what}; {args.device} ({device}, torch threads: {torch.get_num_threads()}), "
              f"torch {torch.__version__}, open_clip {open_clip.__version__}; {args.images} held-out scene(s) "
              f"(first seed {args.seed}), {args.original_images} the original's way; reference window geometry "
              "(sizes 128 and 64, stride 16, on the 224 px squared image).")
    table = [header, "", "| measurement | setting | result |", "|---|---|---|"]
    table += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    text = "\n".join(table)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
