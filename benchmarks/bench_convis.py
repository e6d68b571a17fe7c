"""ConVis speed: the sweep against a bare batched forward pass and against the reference's way, in one run.

* **ours, 1 concept**: ``ConVisAttribution.attribute`` for one concept on one image, end to end (un-normalise,
  square, canvas, windows cut with tensor ops on the model's device, batched tensor resize, ``encode_image`` in
  batches of ``batch_size``, ranks and maps on the device). 730 windows with the reference geometry.
* **(a) one encode_image pass**: the same number of windows, already preprocessed (model-sized normalised
  tensors on the device), in one batched ``encode_image`` call: the model's bare cost for those windows. The
  goal is ours / (a) <= 1.25. Each image's ConVis call is timed right beside one such pass and the median of the
  ratios is reported, so drift on a shared machine cancels. The same windows at ConVis's batch size are shown too.
* **(b) original's way**: a re-enactment of the reference's ``grid_heatmap`` loop for one concept: all 1,800
  windows, one at a time, each with a full-canvas blurred mask pasted in PIL, PIL preprocessing and
  ``encode_image`` at batch size 1, then ranking and the subtree minimum in numpy. The reference repeats the
  whole sweep for every concept, so its 100-concept time is 100 × the one-concept time (printed as such).
* **ours, 100 concepts**: ``attribute_concepts`` (one rank matrix per image serves every concept).
* **text bank**: encoding the vocabulary's synset texts (no cache), texts/s.

Documented settings (what ``benchmarks/results_convis.md`` holds): the shipped scene model (lemma texts, scene
vocabulary), 2 scenes, 1 image the original's way, one torch thread, the CPU:

    python benchmarks/bench_convis.py --out benchmarks/results_convis.md

Other runs: ``--model ViT-B-16`` times that architecture with random weights (the same cost as trained ones;
``--text-bank random`` skips encoding ~7,000 glosses, which does not change the sweep's cost), ``--devices
cpu,cuda`` adds a table for a GPU where there is one, ``--precisions fp32,bf16`` one table per precision (autocast
around every forward pass, the anchor's and the original's way's included), ``--original-windows N`` times only
the first N windows of the original's loop and scales to 1,800 (marked "extrapolated"; the map check then needs
the full loop and is skipped).

    python benchmarks/bench_convis.py [--model shapes] [--devices cpu,cuda] [--precisions fp32] [--images 2]
                                      [--original-images 1] [--original-windows 1800] [--text-bank encode|random]
                                      [--threads 1] [--out benchmarks/results_convis.md]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from _tables import publish
from _timing import clock, device_precisions, sync

from captum_clip import load_clip
from captum_clip.convis import TextBank, WindowConfig, build_text_bank, default_vocabulary
from captum_clip.convis.attribution import ConVisAttribution
from captum_clip.convis.bundle_adapters import bundle_text_encoder
from captum_clip.convis.frames import normalised_to_uint8
from captum_clip.shipped.presets import SCENE_TEXT_SOURCE, SHAPE_SYNSETS, scene_vocabulary
from captum_clip.convis.windows import _padding, square_image, window_grid
from captum_clip.core.precision import autocast
from captum_clip.shipped import generate_scene, to_tensor
from captum_clip.shipped.zero_shot import HELD_OUT_SEED_START


def original_way_one_concept(bundle, text_embeddings: np.ndarray, subtree: list[int], image_224: np.ndarray,
                             config: WindowConfig = WindowConfig(), max_windows: int | None = None) -> np.ndarray:
    """The reference's grid sweep for one concept, window by window at batch size 1 (spec §1b-§1d).

    Args:
        max_windows: stop after this many windows (for an extrapolated timing); None: all of them.

    Returns:
        ``(224, 224)`` map, for a consistency check against the batched implementation (meaningless when
        *max_windows* cut the sweep short).
    """
    size, pad = config.canvas_size, config.pad
    canvas = Image.fromarray(np.array(_padding(size, config.pad_fill, config.noise_seed)))
    canvas.paste(Image.fromarray(image_224), (pad, pad))
    black = Image.new("RGB", (size, size))
    device = bundle.device
    rank_sum = np.zeros((size, size))
    done = 0
    for b in config.sizes:
        for y in range(0, size, config.stride):
            for x in range(0, size, config.stride):
                if max_windows is not None and done >= max_windows:
                    break
                mask = Image.new("L", (size, size), 255)
                ImageDraw.Draw(mask).rectangle((x, y, min(x + b, size) - 1, min(y + b, size) - 1), fill=0)
                mask = mask.filter(ImageFilter.GaussianBlur(radius=config.rim_blur))
                masked = canvas.copy()
                masked.paste(black, (0, 0), mask)
                crop = masked.crop((x, y, min(x + b, size) - 1, min(y + b, size) - 1))
                with torch.inference_mode(), autocast(device, bundle.precision):
                    embedding = bundle.model.encode_image(bundle.preprocess(crop)[None].to(device))
                v = F.normalize(embedding.float(), dim=-1)[0].cpu().numpy()
                z = text_embeddings @ v
                rank = np.argsort(np.argsort(z)[::-1])
                rank_sum[y : y + b, x : x + b] += rank[subtree].min()
                done += 1
    s = rank_sum[pad : pad + config.image_size, pad : pad + config.image_size]
    return 1 - (s - s.min()) / (s.max() - s.min())


def _images(bundle, count: int, seed: int) -> list[torch.Tensor]:
    """Held-out scenes at the model's input size, normalised (one tensor per image)."""
    size = int(np.atleast_1d(bundle.model.visual.image_size)[0])
    mean, std = bundle.image_mean_std
    return [to_tensor(generate_scene(seed + i, image_size=size).image[None], mean, std) for i in range(count)]


def _random_text_bank(bundle, vocabulary, text_source: str) -> TextBank:
    """Unit-norm random rows in place of the encoded texts: the sweep's cost does not depend on their values."""
    with torch.inference_mode():
        dim = bundle.model.encode_text(bundle.tokenizer(["a"]).to(bundle.device)).shape[-1]
    rows = torch.randn(len(vocabulary), dim, generator=torch.Generator().manual_seed(0))
    return TextBank(F.normalize(rows, dim=-1), vocabulary.digest(), text_source, "bench/random")


def _rate(images: float, seconds: float) -> str:
    return f"{images / seconds:.3g} images/s ({seconds / images:.3g} s/image)"


def run(args: argparse.Namespace, device: torch.device, precision: str = "fp32"
        ) -> tuple[str, list[tuple[str, str, str]]]:
    bundle = load_clip(args.model, pretrained=args.pretrained, device=device, precision=precision)
    scene_model = args.model == "shapes"
    vocabulary = scene_vocabulary() if scene_model else default_vocabulary().extended(list(SHAPE_SYNSETS.values()))
    text_source = SCENE_TEXT_SOURCE if scene_model else "definition"
    size = int(np.atleast_1d(bundle.model.visual.image_size)[0])
    vision = sum(p.numel() for p in bundle.model.visual.parameters()) / 1e6
    weights = "shipped weights" if scene_model else ("random weights" if args.pretrained is None else args.pretrained)
    what = (f"model {args.model} ({weights}, {size} px input, {vision:.1f}M vision parameters), |T| = "
            f"{len(vocabulary)} synsets, text source '{text_source}'"
            + (" (random text bank: encoding skipped)" if args.text_bank == "random" else ""))
    rows = []

    with tempfile.TemporaryDirectory() as cache:
        method = ConVisAttribution(bundle, vocabulary, text_source=text_source, batch_size=args.batch_size,
                                   cache_dir=cache, progress=False)
        if args.text_bank == "random":
            method._bank = _random_text_bank(bundle, vocabulary, text_source)  # benchmark only: no encoding
        else:
            # Text bank: encode every synset text, no cache.
            seconds = clock(lambda: build_text_bank(vocabulary, bundle_text_encoder(bundle), model_fingerprint="bench",
                                                     text_source=text_source, use_cache=False), device)
            rows.append(("text bank (no cache)", f"{len(vocabulary)} texts ({text_source}), chunks of 256",
                         f"{len(vocabulary) / seconds:.0f} texts/s ({seconds:.1f} s)"))
            method.text_bank  # encode (into the temporary cache) outside the timed region
        images = [x.to(device) for x in _images(bundle, args.images, args.seed)]
        concept = SHAPE_SYNSETS["circle"]
        windows = len(method.mapper.boxes)
        # (a): the same number of windows, preprocessed, straight into encode_image.
        generator = torch.Generator().manual_seed(0)
        batch = torch.randn(windows, 3, *bundle.input_size, generator=generator).to(device, bundle.dtype)

        def one_pass():
            with torch.inference_mode(), autocast(device, precision):
                return bundle.model.encode_image(batch)

        def same_batches():
            with torch.inference_mode(), autocast(device, precision):
                for start in range(0, windows, method.batch_size):
                    bundle.model.encode_image(batch[start : start + method.batch_size])

        method.attribute(images[0], target=concept)  # warm-up (allocator, kernels, caches)
        one_pass()
        ours, bare, ratios = [], [], []
        for x in images:
            base = clock(one_pass, device)
            took = clock(lambda x=x: method.attribute(x, target=concept), device)
            ours.append(took)
            bare.append(base)
            ratios.append(took / base)
        batched = statistics.median(clock(same_batches, device) for _ in images)
        one, base = statistics.median(ours), statistics.median(bare)
        many = [vocabulary.names[i] for i in np.random.default_rng(0).choice(len(vocabulary), args.concepts,
                                                                             replace=False)]
        hundred = statistics.median(clock(lambda x=x: method.attribute_concepts(x, many), device) for x in images)
        ratio = statistics.median(ratios)
        rows.append(("ours, 1 concept", f"{windows} windows, batch {method.batch_size}, tensor resize, "
                                        f"median of {len(images)}", _rate(1, one)))
        rows.append(("(a) one encode_image pass", f"the same {windows} windows, preprocessed, one batch",
                     f"{base:.3g} s"))
        rows.append(("(a') encode_image, same batches", f"the same {windows} windows in batches of "
                                                        f"{method.batch_size}", f"{batched:.3g} s"))
        rows.append(("**ratio ours / (a)**", "goal: at most 1.25 (median of per-image ratios)", f"**{ratio:.2f}**"))
        rows.append(("ratio ours / (a')", "what the sweep adds to the bare forward passes", f"{one / batched:.2f}"))
        rows.append((f"ours, {args.concepts} concepts", "one rank matrix per image", _rate(1, hundred)))

        embeddings = method.text_bank.embeddings.numpy()
        subtree = vocabulary.subtree(concept)
        total = len(window_grid(WindowConfig()).boxes)  # 1,800
        sample = None if args.original_windows >= total else args.original_windows
        original, reference_map = 0.0, None
        for x in images[: args.original_images]:
            image_224 = square_image(normalised_to_uint8(x, *bundle.image_mean_std)[0])
            start = time.perf_counter()
            reference_map = original_way_one_concept(bundle, embeddings, subtree, image_224, max_windows=sample)
            sync(device)
            original += time.perf_counter() - start
        per_image = original / args.original_images * (1 if sample is None else total / sample)
        how = "measured" if sample is None else f"extrapolated from {sample} windows"
        rows.append(("(b) original's way, 1 concept", f"{total:,} windows, batch size 1, PIL per window ({how})",
                     _rate(1, per_image)))
        rows.append((f"original's way, {args.concepts} concepts", f"{args.concepts} × the 1-concept sweep (computed)",
                     _rate(1, per_image * args.concepts)))
        rows.append(("**speed-up (b) / ours, 1 concept**", "original's way / ours", f"**{per_image / one:.1f}×**"))
        rows.append((f"speed-up, {args.concepts} concepts", "original's way / ours",
                     f"{per_image * args.concepts / hundred:.0f}×"))

        if sample is None:
            # Same pixels as the original's crops (PIL preprocess): the maps must agree.
            pil = ConVisAttribution(bundle, vocabulary, text_source=text_source, resize="pil", cache_dir=cache,
                                    progress=False)
            pil._bank = method.text_bank
            ours_map = pil.concept_maps(images[args.original_images - 1], [concept])[0].maps[0].cpu().numpy()
            rows.append(("check: original vs ours (resize='pil')", "max |map difference|, last timed image",
                         f"{np.abs(ours_map - reference_map).max():.2e}"))
    return what, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes", help="shapes (shipped) or an open_clip model name / config")
    parser.add_argument("--pretrained", default=None, help="None: random weights for an open_clip name")
    parser.add_argument("--devices", default="cpu", help="comma-separated, e.g. cpu,cuda (CUDA skipped where absent)")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (one table each)")
    parser.add_argument("--images", type=int, default=2, help="images timed with our implementation")
    parser.add_argument("--original-images", type=int, default=1, help="images timed the original's way")
    parser.add_argument("--original-windows", type=int, default=1800,
                        help="windows of the original's loop actually run (fewer: the time is extrapolated)")
    parser.add_argument("--concepts", type=int, default=100)
    parser.add_argument("--text-bank", choices=("encode", "random"), default="encode",
                        help="random: unit-norm random rows instead of encoding the synset texts")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="windows per forward pass (default: ConVisAttribution's, the tower's pass size for "
                             "the device)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED_START)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for both ways (1: on a shared 2-core machine, 2 threads made the "
                             "batch-size-1 forward 8x slower and the batched one 2x slower, from OpenMP contention)")
    parser.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not 1 <= args.original_images <= args.images:
        parser.error("--original-images must be between 1 and --images")
    if args.original_windows < 1:
        parser.error("--original-windows must be positive")

    sections = []
    for device, label, precision in device_precisions(args.devices, args.precisions):
        what, rows = run(args, device, precision)
        name = label if device.type == "cuda" else platform.machine()
        header = (f"ConVis speed: {what}; {device.type} ({name}, torch threads: {torch.get_num_threads()}), "
                  f"{precision}, torch {torch.__version__}, open_clip {open_clip.__version__}; {args.images} held-out "
                  f"scene(s) (first seed {args.seed}), {args.original_images} the original's way; reference window "
                  "geometry (sizes 128 and 64, stride 16, on the 224 px squared image).")
        sections += [header, "", "| measurement | setting | result |", "|---|---|---|"]
        sections += [f"| {a} | {b} | {c} |" for a, b, c in rows] + [""]
    publish("\n".join(sections), args.out)


if __name__ == "__main__":
    main()
