"""Throughput of Mutual Knowledge's ``explain``: a batch of B images at once vs one image at a time.

Both runs compute the same thing the same way (and the script checks that they agree): the visual concepts are
fitted jointly on the B images, then every image is explained. The batched run is one ``explain(images)`` call;
the loop is the reference's way, the joint fit once (``fit_concepts``) and then ``explain`` image by image
against it. A third run is that loop with the two steps the reference does its own way as well: its ``cv2`` loop
drawing the prompts and all 1000 Sinkhorn iterations (same results). The three, and the encoder passes that bound
them, are timed in rotation, and each ratio is the median of the per-round ratios (robust to other jobs sharing
the machine). Bank embeddings are computed (or read from the cache) when the method is built and are not timed.

A second table times the two steps that were vectorised, on the same B images: drawing the visual prompts of all
B x L concepts (tensor renderer vs the reference's ``cv2`` loop, identical pixels) and the descriptor matching
(Sinkhorn stopped on convergence vs the fixed 1000 iterations), with the iterations Sinkhorn used.

Default set-up: the shipped scene model (``load_clip("shapes")``), B = 8 generated two-object scenes, and a
WordNet descriptor bank for the 1000 ImageNet class names (D of the order of the paper's 4,229, so the top-500
intersection and the Sinkhorn problem have the paper's sizes).

    python benchmarks/bench_mutual.py [--model shapes] [--pretrained FILE]
        [--descriptors wordnet-imagenet|scenes|FILE.json]
        [--batch 8 or 8,32] [--repeats 3] [--devices cpu,cuda] [--precisions fp32,bf16] [--threads N or 1,2]
        [--metrics 36] [--no-stages]
        [--out benchmarks/results_mutual.md]

``--metrics N`` also reports the paper's concept metrics (Deletion, Insertion, AccDrop, AccInc) on N
single-object scenes (concepts fitted per scene), in importance order and in reversed order. ``--precisions``
gives one set of tables per precision (autocast around every forward pass, the encoder-only timings included).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import os
import platform
import statistics

import open_clip
import torch

from _tables import publish
from _timing import clock, device_precisions, median_clock

from captum_clip import ZeroShotClassifier, load_clip
from captum_clip.core.precision import autocast
from captum_clip.shipped import generate_scene, single_object_classnames, to_tensor
from captum_clip.shipped.zero_shot import ZERO_SHOT_TEMPLATES
from captum_clip.mutual import MutualConceptAttribution, load_descriptor_bank, wordnet_descriptor_bank
from captum_clip.evaluation.concept_metrics import concept_perturbation_curves, trapezoid_auc
from captum_clip.mutual.matching import match_descriptors
from captum_clip.mutual.results import ranked_concept_masks
from captum_clip.shipped.presets import scene_descriptor_bank


def descriptor_bank(name: str):
    if name == "wordnet-imagenet":
        return wordnet_descriptor_bank(list(open_clip.IMAGENET_CLASSNAMES))
    if name == "scenes":
        return scene_descriptor_bank()
    return load_descriptor_bank(name)


def scenes(bundle, seeds, n_objects: int):
    size = bundle.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean, std = bundle.image_mean_std
    drawn = [generate_scene(seed, image_size=size, n_objects=n_objects) for seed in seeds]
    return torch.cat([to_tensor(s.image, mean, std) for s in drawn]), drawn


def same(a, b) -> bool:
    return (a.concept_descriptors == b.concept_descriptors and a.text_descriptors == b.text_descriptors
            and abs(a.mi - b.mi) < 1e-9 and torch.equal(a.masks, b.masks))


@contextlib.contextmanager
def reference_steps(method):
    """The two steps the reference does its own way: prompts drawn with its ``cv2`` loop, and Sinkhorn run for
    all of its 1000 iterations (switched here, for this benchmark only)."""
    import captum_clip.mutual.attribution as attribution_module

    shipped = attribution_module.match_descriptors
    attribution_module.match_descriptors = functools.partial(shipped, sinkhorn_tol=None)
    method.concept_embeddings = functools.partial(method.concept_embeddings, renderer="opencv")
    try:
        yield
    finally:
        attribution_module.match_descriptors = shipped
        del method.concept_embeddings


def throughput(method, images, repeats: int, device: torch.device):
    """Every timing of the throughput tables, taken in rotation within each repeat so that their ratios come from
    the same stretch of a shared machine: the batched call, the loop, the loop with the reference's own steps, and
    the vision tower alone on the prompts each run encodes (in the passes each makes: the batch's and the per-image
    passes) and on the images (a vanilla ``encode_image``, the anchor).

    Returns ``(seconds, ratios, agree, batch_passes)``: median seconds per run; the medians of the per-repeat
    ratios ``loop`` and ``reference`` (to the batch) and ``bound`` (loop / (the batch's prompt passes + vanilla
    pass): the speed-up an ``explain`` with no cost beyond its encoder passes would reach); whether the three runs
    agree; and the sizes of the prompt passes the batch makes.
    """
    def batched():
        return method.explain(images)

    def loop():
        fitted = method.fit_concepts(images)
        return [method.explain(images[i:i + 1], reference_images=fitted)[0] for i in range(images.shape[0])]

    def reference_loop():
        with reference_steps(method):
            return loop()

    first = batched()  # also the warm-up
    agree = all(same(a, b) and same(a, c) for a, b, c in zip(first, loop(), reference_loop()))
    batch_prompts = recorded_encoder_inputs(method, batched)
    loop_prompts = recorded_encoder_inputs(method, loop)
    runs = {
        "reference": reference_loop, "loop": loop, "batched": batched,
        "prompt passes": lambda: [method.tower.encode(p) for p in batch_prompts],
        "loop prompt passes": lambda: [method.tower.encode(p) for p in loop_prompts],
        "vanilla": lambda: method.tower.encode(images),
    }
    times = {key: [] for key in runs}
    with torch.no_grad(), autocast(device, method.bundle.precision):
        for _ in range(repeats):
            for key, run in runs.items():
                times[key].append(clock(run, device))
    ratios = {
        "loop": [l / b for l, b in zip(times["loop"], times["batched"])],
        "reference": [r / b for r, b in zip(times["reference"], times["batched"])],
        "bound": [l / (p + v) for l, p, v in zip(times["loop"], times["prompt passes"], times["vanilla"])],
    }
    return ({key: statistics.median(values) for key, values in times.items()},
            {key: statistics.median(values) for key, values in ratios.items()}, agree, [len(p) for p in batch_prompts])


def recorded_encoder_inputs(method, run):
    """The prompt batches ``run()`` sends through the vision tower, in order (a benchmark-only wrapper)."""
    tower, batches = method.tower, []
    encode = tower.encode

    def recording(batch, *args, **kwargs):
        batches.append(batch.detach().clone())
        return encode(batch, *args, **kwargs)

    tower.encode = recording
    try:
        run()
    finally:
        del tower.encode
    return batches


def blas_threads(method, images, repeats: int, device: torch.device):
    """Batched ``explain`` as shipped and with numpy's BLAS left on its default threads (the limit switched off
    here only), and the median per-pair ratio."""
    import captum_clip.base.method as method_module

    shipped = method_module.single_threaded_blas

    def with_default_blas():
        method_module.single_threaded_blas = contextlib.nullcontext
        try:
            return method.explain(images)
        finally:
            method_module.single_threaded_blas = shipped

    times_own, times_default, ratios = [], [], []
    with_default_blas()
    for _ in range(repeats):
        t_default = clock(with_default_blas, device)
        t_own = clock(lambda: method.explain(images), device)
        times_own.append(t_own)
        times_default.append(t_default)
        ratios.append(t_default / t_own)
    return statistics.median(times_own), statistics.median(times_default), statistics.median(ratios)


def stage_times(method, images, repeats: int, device: torch.device):
    """The vectorised steps on the batch: prompt drawing as ``explain`` does it (tensor ops on the images' device,
    every prompt composed) against the reference's ``cv2`` loop, and matching (stop vs 1000)."""
    concepts = method.visual_concepts(images)
    ellipses, valid = method._prompt_ellipses(concepts)
    rows, cols = torch.nonzero(valid.to(images.device), as_tuple=True)
    n_pairs = len(rows)
    runs = {"torch": lambda: method._draw_prompts(images, ellipses, rows, cols, "torch")[:],
            "opencv": lambda: method._draw_prompts(images, ellipses, rows, cols, "opencv")}
    same_pixels = torch.equal(runs["torch"]().cpu(), torch.from_numpy(runs["opencv"]()))
    draw = {r: median_clock(run, device, repeats) for r, run in runs.items()}
    z, valid, _ = method.concept_embeddings(images, concepts)
    bank = method.bank_embeddings.to(images.device)
    scores, relevance = z @ bank.prompted.T, concepts.image_embeddings.to(images.device) @ bank.bare.T

    def match(tol):
        return match_descriptors(scores, relevance, valid, k=method.k, offset=method.offset, tau=method.tau,
                                 sinkhorn_iters=method.sinkhorn_iters, top=method.top,
                                 score_scale=method.score_scale, sinkhorn_tol=tol)

    fast, slow = match(1e-12), match(None)
    agree = torch.equal(fast.selected, slow.selected) and torch.equal(fast.dv_ids, slow.dv_ids)
    matching = {tol: median_clock(lambda tol=tol: match(tol), device, repeats) for tol in (1e-12, None)}
    iters = fast.sinkhorn_iters.tolist()
    return n_pairs, draw, same_pixels, matching, iters, agree


def concept_metrics(method, classifier, n_images: int, device):
    """Concept metrics on single-object scenes, importance order vs reversed order."""
    images, drawn = scenes(method.classifier.bundle, range(1000, 1000 + n_images), n_objects=1)
    images = images.to(device)
    labels = torch.tensor([classifier.class_index(s.objects[0]) for s in drawn], device=device)
    # Each scene is fitted on its own: the scenes share no class, and their backgrounds differ more than their
    # objects, so a joint fit would pick the background as "prominent".
    explanations = [method.explain(images[i:i + 1])[0] for i in range(images.shape[0])]
    masks = ranked_concept_masks(explanations, method.n_parts).to(device)
    # Reversed: the least important concept first (padding stays at the end).
    reversed_masks = masks.clone()
    for row, e in enumerate(explanations):
        reversed_masks[row, : e.n_concepts] = masks[row, : e.n_concepts].flip(0)
    target = torch.tensor([e.target for e in explanations], device=device)
    rows = []
    for order, ranked in (("importance", masks), ("reversed", reversed_masks)):
        deletion = concept_perturbation_curves(classifier, images, ranked, "deletion", target, labels)
        insertion = concept_perturbation_curves(classifier, images, ranked, "insertion", target, labels)
        rows.append((order, float(deletion.auc.mean()), float(insertion.auc.mean()),
                     float(trapezoid_auc(deletion.correct.float().mean(0))),
                     float(trapezoid_auc(insertion.correct.float().mean(0)))))
    with torch.no_grad():
        accuracy = float((classifier(images).argmax(-1) == labels).float().mean())
    return rows, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes", help="'shapes', an open_clip name or a config JSON")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint file (default: none / shipped)")
    parser.add_argument("--descriptors", default="wordnet-imagenet")
    parser.add_argument("--batch", default="8", help="images per batch, or a comma-separated list of sizes (the "
                        "stage table and --metrics use the last)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (tables for each)")
    parser.add_argument("--metrics", type=int, default=0, help="also report concept metrics on this many scenes")
    parser.add_argument("--no-stages", action="store_true", help="skip the table of the vectorised steps")
    parser.add_argument("--threads", default=None,
                        help="torch CPU threads, or a comma-separated list of counts timed one after the other "
                             "(default: torch's); 1 keeps a shared machine's timings stable")
    parser.add_argument("--out", default=None, help="also write the markdown tables here")
    args = parser.parse_args()
    thread_counts = [int(n) for n in args.threads.split(",")] if args.threads else [None]
    batches = [int(n) for n in args.batch.split(",")]

    bank = descriptor_bank(args.descriptors)
    machine = platform.processor() or platform.machine()
    # The 1-minute load average says whether other jobs shared the CPU while this ran.
    load = f", load average {os.getloadavg()[0]:.1f} at start" if hasattr(os, "getloadavg") else ""
    lines = [f"torch {torch.__version__}, open_clip {open_clip.__version__}, {machine}, "
             f"{os.cpu_count()} CPUs{load}; model `{args.model}`, bank `{args.descriptors}` "
             f"(D = {len(bank)}), paper hyper-parameters (L = 5, k = 500, at most 1000 Sinkhorn iterations, "
             "u = 50)", ""]
    for device, device_label, precision in device_precisions(args.devices, args.precisions):
        bundle = load_clip(args.model, pretrained=args.pretrained, device=device, precision=precision)
        classifier = ZeroShotClassifier(bundle, single_object_classnames(), templates=list(ZERO_SHOT_TEMPLATES))
        method = MutualConceptAttribution(classifier, bank)
        for b, threads in itertools.product(batches, thread_counts if device.type == "cpu" else [None]):
            images = scenes(bundle, range(b), n_objects=2)[0].to(device)
            if threads:
                torch.set_num_threads(threads)
            n = torch.get_num_threads()
            label = (f"{device_label}, {n} torch thread{'s' * (n > 1)}" if device.type == "cpu" else device_label) \
                + f", {precision}"
            seconds, ratios, agree, passes = throughput(method, images, args.repeats, device)
            n_prompts = sum(passes)
            in_passes = (f"one pass of {n_prompts}" if len(passes) == 1 else
                         f"{len(passes)} passes of {passes[0]}" if len(set(passes)) == 1 else
                         f"{len(passes)} passes of {min(passes)}-{max(passes)}")
            batched, loop, vanilla = seconds["batched"], seconds["loop"], seconds["vanilla"]
            prompt_passes, per_image = seconds["prompt passes"], seconds["loop prompt passes"]
            lines += [f"### explain throughput, {label}", "",
                      "| B | batched: images/s | one at a time: images/s | speed-up | one at a time, the "
                      "reference's steps: images/s | speed-up | same results |",
                      "|---:|---:|---:|---:|---:|---:|:---:|",
                      f"| {b} | {b / batched:.2f} | {b / loop:.2f} | {ratios['loop']:.2f}x | "
                      f"{b / seconds['reference']:.2f} | {ratios['reference']:.2f}x | {'yes' if agree else 'NO'} |",
                      "", f"(medians of {args.repeats} rounds after a warm-up, each round timing every run of these "
                      f"two tables in turn: {batched:.3f} s batched, {loop:.3f} s loop, {seconds['reference']:.3f} s "
                      "loop with the reference's steps, its `cv2` prompt loop and all 1000 Sinkhorn iterations; "
                      "a speed-up is the median of the per-round loop / batched ratios)", ""]
            lines += [f"### where the time goes, {label}", "",
                      "| run | seconds | of which: encoding the prompts | share |", "|---|---:|---:|---:|",
                      f"| batched `explain` | {batched:.3f} | {prompt_passes:.3f} ({in_passes}) | "
                      f"{prompt_passes / batched:.0%} |",
                      f"| one image at a time | {loop:.3f} | {per_image:.3f} ({b} passes) | "
                      f"{per_image / loop:.0%} |",
                      "", f"Batched `explain` costs {batched / vanilla:.1f}x one vanilla `encode_image` of the {b} "
                      f"images ({vanilla * 1e3:.1f} ms), the physical anchor; it has to encode {n_prompts // b} "
                      f"prompted images per image, after one forward of the images for their last-block features "
                      f"(about that vanilla pass). With no overhead beyond those passes, batching could reach "
                      f"at most **{ratios['bound']:.2f}x** the loop on this device (median per-round loop / "
                      f"(prompt passes + vanilla pass)).",
                      ""]
            if device.type == "cpu":
                own, default, slower = blas_threads(method, images, args.repeats, device)
                lines += [f"numpy's BLAS: batched `explain` takes {own:.3f} s as shipped (BLAS on one thread while "
                          f"a method runs) and {default:.3f} s with numpy's default BLAS threads "
                          f"({slower:.2f}x; median per-pair ratio).", ""]
        if not args.no_stages:
            n_pairs, draw, same_pixels, matching, iters, same_picks = stage_times(method, images, args.repeats,
                                                                                  device)
            lines += [f"### vectorised steps on the {b} images, {label}", "",
                      "| step | vectorised | reference way | ratio | notes |", "|---|---:|---:|---:|---|",
                      f"| visual prompts of {n_pairs} concepts (x3) | {draw['torch'] * 1e3:.1f} ms (tensor) | "
                      f"{draw['opencv'] * 1e3:.1f} ms (cv2 loop) | {draw['opencv'] / draw['torch']:.2f}x | "
                      f"identical pixels: {'yes' if same_pixels else 'NO'} |",
                      f"| descriptor matching (Sinkhorn) | {matching[1e-12] * 1e3:.1f} ms (stop at 1e-12) | "
                      f"{matching[None] * 1e3:.1f} ms (1000 iterations) | {matching[None] / matching[1e-12]:.2f}x | "
                      f"iterations used {min(iters)}-{max(iters)}; same picks: {'yes' if same_picks else 'NO'} |",
                      "", f"(median of {args.repeats} runs after a warm-up)", ""]
        if args.metrics:
            rows, accuracy = concept_metrics(method, classifier, args.metrics, device)
            lines += [f"### concept metrics, {args.metrics} single-object scenes (zero-shot top-1 {accuracy:.2f}), "
                      f"{label}", "",
                      "| concept order | Deletion ↓ | Insertion ↑ | AccDrop ↓ | AccInc ↑ |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {o} | {d:.3f} | {i:.3f} | {ad:.3f} | {ai:.3f} |" for o, d, i, ad, ai in rows]
            lines.append("")
    table = "\n".join(lines)
    publish(table, args.out)


if __name__ == "__main__":
    main()
