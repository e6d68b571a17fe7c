"""The papers' evaluation protocols, each turning one batch into per-image rows and rows into metrics.

A protocol's :meth:`Protocol.score` explains one batch with one method and returns one row per (image, query):
the CSV values and the sufficient statistics (``stats``) its metrics are computed from. :meth:`Protocol.summarise`
reduces rows to metrics under ``(1 + R, n_rows)`` weights: row 0 all ones (the estimate), the others bootstrap
resamplings of the images (the standard errors). Scoring itself is in :mod:`.protocol_scores` and
:mod:`.convis_wsol`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from ..base.method import ClipAttribution
from ..core.classifier import ZeroShotClassifier
from . import protocol_scores as scores
from .convis_wsol import max_box_accuracy_stats, summarise_box_accuracy
from .datasets import EvalDataset
from .datasets.base import IGNORE

Rows = List[Dict[str, Any]]


@dataclass
class Method:
    """A method of the run, with the ``attribute`` options its spec gave (e.g. ``ig:n_steps=16``)."""

    attribution: Any
    attribute_kwargs: Dict[str, Any]
    #: The registry name and constructor options, for protocols that rebuild it (Quantus's explain funcs).
    name: str = ""
    options: Dict[str, Any] = None
    #: The trained model's classifier, whose prediction is the target of a random-weights row too (so that
    #: both rows explain the same class).
    reference: Optional[ZeroShotClassifier] = None
    #: Called as ``recorder(items, targets, maps)`` with every map the protocol computes (the report's examples,
    #: :class:`~.records.MapRecorder`); None records nothing.
    recorder: Optional[Callable[[Sequence[int], Sequence[int], torch.Tensor], None]] = None

    @torch.no_grad()
    def predicted(self, images: torch.Tensor) -> List[int]:
        """The class the trained model predicts for each image (the target of ``target=predicted``)."""
        return (self.reference or self.classifier)(images).argmax(dim=-1).tolist()

    @property
    def classifier(self) -> ZeroShotClassifier:
        return self.attribution.classifier

    def maps(self, images: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        """``(Q, H, W)`` maps, one per (image, target) pair, from one batched ``attribute`` call."""
        maps = self._attribute(images, targets)
        self._record(range(len(targets)), targets, maps)
        return maps

    def _attribute(self, images: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
        with torch.set_grad_enabled(_needs_gradients(self.attribution)):
            maps = self.attribution.attribute(images, target=list(targets), **self.attribute_kwargs)
        return maps[:, 0].float()

    def _record(self, items: Sequence[int], targets: Sequence[int], maps: torch.Tensor) -> None:
        if self.recorder is not None:
            self.recorder(items, targets, maps)

    def query_maps(self, images: torch.Tensor, items: Sequence[int], targets: Sequence[int]) -> torch.Tensor:
        """``(Q, H, W)`` maps of the pairs ``(images[items[q]], targets[q])``.

        A method with its own ``attribute_all`` (one pass for Surgery and raw CLIP, one shared forward for
        Grad-CAM, one window sweep for ConVis) answers every target of the batch at once and the pairs are picked
        from it; the others explain each pair.
        """
        if type(self.attribution)._attribute_all is ClipAttribution._attribute_all:
            maps = self._attribute(images[list(items)], targets)
        else:
            union = sorted(set(targets))
            with torch.set_grad_enabled(_needs_gradients(self.attribution)):
                every = self.attribution.attribute_all(images, targets=union, **self.attribute_kwargs)
            column = torch.as_tensor([union.index(t) for t in targets], device=every.device)
            maps = every[torch.as_tensor(list(items), device=every.device), column].float()
        self._record(items, targets, maps)
        return maps


def _needs_gradients(attribution) -> bool:
    from captum.attr import GradientAttribution

    return isinstance(attribution, GradientAttribution)


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ values) / total


class Protocol:
    """Base of the protocols; a subclass sets the class attributes and implements score and summarise."""

    name = ""
    #: What the dataset must provide: ``"masks"``, ``"boxes"``, ``"labels"``.
    needs: Sequence[str] = ()
    main_metric = ""
    higher_is_better = True
    #: Summary values that are settings, not scores (no better direction), e.g. the threshold a sweep picked.
    undirected: Sequence[str] = ()
    #: Per-image CSV columns (besides stem, query, method).
    columns: Sequence[str] = ()
    #: Options and their defaults; anything else is refused.
    defaults: Dict[str, Any] = {}

    def __init__(self, **options) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.name} takes the options {sorted(self.defaults) or 'none'}; got {unknown}.")
        self.options = {**self.defaults, **options}

    def check(self, dataset: EvalDataset) -> None:
        for need in self.needs:
            if not getattr(dataset, f"has_{need}"):
                raise ValueError(f"the {self.name} protocol needs {need}, and the {dataset.kind} dataset at "
                                 f"{dataset.root} has none.")

    def label_set(self, dataset: EvalDataset) -> List[str]:
        return list(dataset.classnames)

    def score(self, method: Method, batch: Dict[str, Any]) -> Rows:
        raise NotImplementedError

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def direction(self, metric: str) -> Optional[bool]:
        """Whether a higher ``metric`` (a key of :meth:`summarise`) is better; None for a setting."""
        return None if metric in self.undirected else self.higher_is_better

    def truth(self, batch: Dict[str, Any], item: int, target: int) -> np.ndarray:
        """``(H, W)`` bool: what this protocol scores a map of class ``target`` (a label-set index) on image
        ``item`` against, for the report's outline. By default the class's mask, else its boxes."""
        mask = batch["mask"][item]
        if mask is not None:
            return (mask == target + 1).cpu().numpy()
        return _box_truth(batch, item, target)


def _box_truth(batch: Dict[str, Any], item: int, target: int) -> np.ndarray:
    """The boxes of class ``target`` on image ``item`` as one ``(H, W)`` bool mask (all False without boxes)."""
    truth = np.zeros(tuple(batch["image"].shape[-2:]), dtype=bool)
    boxes = batch["boxes"][item]
    if boxes is not None:
        for x0, y0, x1, y1 in boxes[batch["box_labels"][item] == target + 1].round().long().clamp(min=0).tolist():
            truth[y0:y1, x0:x1] = True
    return truth


def _class_queries(batch: Dict[str, Any], skip_difficult: bool = True):
    """``(items, classes)``: one query per (image, class present), without classes seen only as difficult."""
    items, classes = [], []
    for item, present in enumerate(batch["classes"]):
        labels, difficult = batch["box_labels"][item], batch["difficult"][item]
        for c in present:
            if skip_difficult and len(labels) and bool((labels == c).any()) and bool(difficult[labels == c].all()):
                continue
            items.append(item)
            classes.append(c)
    return items, classes


def _query_maps(method: Method, batch: Dict[str, Any], skip_difficult: bool = True):
    """``(items, classes, maps (Q, H, W))`` for the class queries of a batch, or None when it has none."""
    items, classes = _class_queries(batch, skip_difficult)
    if not items:
        return None
    return items, classes, method.query_maps(batch["image"], items, [c - 1 for c in classes])


class PointingGame(Protocol):
    """The Pointing Game (Zhang et al. 2016) as TorchRay implements it: one query per (image, class present);
    a hit when the map's first maximum lies closer than ``tolerance`` pixels to that class's mask (15 px at
    224 px, scaled to the input; ``ties="any"`` takes any maximal pixel, as Quantus does). Classes seen only as
    VOC ``difficult`` objects are not queried; a query whose maximum falls on an ignore pixel (255) is skipped.
    Reports the mean over classes of the per-class hit rate, and the overall hit rate."""

    name = "pointing"
    needs = ("masks",)
    main_metric = "pointing"
    columns = ("class", "hit", "skipped")
    defaults = {"tolerance": None, "ties": "first"}

    def score(self, method: Method, batch) -> Rows:
        queries = _query_maps(method, batch)
        if queries is None:
            return []
        items, classes, maps = queries
        masks = torch.stack([batch["mask"][i] for i in items]).to(maps.device)
        size = min(maps.shape[-2:])
        tolerance = self.options["tolerance"]
        tolerance = scores.scaled_tolerance(size) if tolerance is None else float(tolerance)
        truth = masks == torch.as_tensor(classes, device=masks.device).view(-1, 1, 1)
        hits = scores.pointing_hits(maps, truth, tolerance, ties=self.options["ties"])
        peak = maps.flatten(1).argmax(dim=1)
        skipped = (masks.flatten(1).gather(1, peak[:, None])[:, 0] == IGNORE) & ~hits
        return [{"stem": batch["stem"][i], "query": method.classifier.classnames[c - 1], "class": c,
                 "hit": int(h), "skipped": int(s)}
                for i, c, h, s in zip(items, classes, hits.tolist(), skipped.tolist())]

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        kept = np.array([not r["skipped"] for r in rows])
        hits = np.array([r["hit"] for r in rows], dtype=np.float64)[kept]
        classes = np.array([r["class"] for r in rows])[kept]
        w = weights[:, kept]
        one_hot = (classes[:, None] == np.unique(classes)[None, :]).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = (w @ (one_hot * hits[:, None])) / (w @ one_hot)
        return {"pointing": np.nanmean(per_class, axis=1), "pointing_overall": _weighted_mean(hits, w)}


class CAMSegmentation(Protocol):
    """CAM segmentation (CLIP Surgery and the WSSS literature): maps for the classes present, each min-max
    normalised; a pixel takes the argmax class where the maximum reaches ``threshold``, else background; one
    confusion matrix over the dataset; mIoU over background and the classes. ``threshold="sweep"`` reports the
    best of 0.05, 0.10, ..., 0.95 and which it was."""

    name = "cam-miou"
    needs = ("masks",)
    main_metric = "miou"
    undirected = ("threshold",)
    columns = ("classes",)
    defaults = {"threshold": 0.5}
    SWEEP = tuple(round(0.05 * i, 2) for i in range(1, 20))

    def _thresholds(self) -> np.ndarray:
        threshold = self.options["threshold"]
        if threshold == "sweep":
            return np.asarray(self.SWEEP)
        threshold = float(threshold)
        if not 0 <= threshold <= 1:
            raise ValueError(f"cam-miou's threshold must lie in [0, 1] or be 'sweep'; got {threshold}.")
        return np.asarray([threshold])

    def score(self, method: Method, batch) -> Rows:
        queries = _query_maps(method, batch, skip_difficult=False)
        if queries is None:
            return []
        items, classes, maps = queries
        rows = []
        n_classes = len(method.classifier.classnames)
        thresholds = torch.as_tensor(self._thresholds(), dtype=torch.float32)
        for item in sorted(set(items)):
            mine = [q for q, i in enumerate(items) if i == item]
            confusion = scores.cam_confusion(maps[mine], torch.as_tensor([classes[q] for q in mine]),
                                             batch["mask"][item].to(maps.device), n_classes, thresholds)
            rows.append({"stem": batch["stem"][item], "query": "classes present",
                         "classes": " ".join(str(classes[q]) for q in mine),
                         "stats": _sparse(confusion.cpu().numpy())})
        return rows

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        thresholds = self._thresholds()
        size = int(rows[0]["stats"]["shape"][-1])
        estimate = _dense_sum([r["stats"] for r in rows], weights[:1], len(thresholds), size)[0]
        mious = np.array([scores.miou_from_confusion(torch.as_tensor(c))[0] for c in estimate])
        best = int(np.nanargmax(mious))
        at_best = _dense_sum([r["stats"] for r in rows], weights, len(thresholds), size, only=best)
        values = np.array([scores.miou_from_confusion(torch.as_tensor(c[0]))[0] for c in at_best])
        return {"miou": values, "threshold": np.asarray([thresholds[best]])}


def _sparse(confusion: np.ndarray) -> Dict[str, Any]:
    index = np.flatnonzero(confusion)
    return {"shape": list(confusion.shape), "index": index.tolist(), "count": confusion.reshape(-1)[index].tolist()}


def _dense_sum(stats: List[Dict[str, Any]], weights: np.ndarray, n_thresholds: int, size: int,
               only: Optional[int] = None) -> np.ndarray:
    """``(R, T', K+1, K+1)`` weighted sums of the rows' sparse confusions (T' = 1 with ``only``)."""
    per_threshold = size * size
    index = np.concatenate([np.asarray(s["index"], dtype=np.int64) for s in stats])
    count = np.concatenate([np.asarray(s["count"], dtype=np.float64) for s in stats])
    row = np.repeat(np.arange(len(stats)), [len(s["index"]) for s in stats])
    if only is not None:
        keep = index // per_threshold == only
        index, count, row = index[keep] - only * per_threshold, count[keep], row[keep]
        n_thresholds = 1
    cells = n_thresholds * per_threshold
    out = np.stack([np.bincount(index, weights=count * w[row], minlength=cells) for w in weights])
    return out.reshape(len(weights), n_thresholds, size, size)


class BinarySegmentation(Protocol):
    """ImageNet-Segmentation (Chefer et al. 2021, TextSpan): the map of the predicted class (or the ground
    truth with ``target="gt"``), negatives clipped, min-max normalised and thresholded at its mean, against the
    foreground mask. Reports pixel accuracy, mIoU (background and foreground) and the mAP of the soft map."""

    name = "segmentation"
    needs = ("masks",)
    main_metric = "miou"
    columns = ("pixel_accuracy", "iou_foreground", "ap")
    defaults = {"target": "predicted", "label_set": None}

    def label_set(self, dataset: EvalDataset) -> List[str]:
        choice = self.options["label_set"]
        if choice == "imagenet" or (choice is None and dataset.kind == "imagenet-seg"):
            # ImageNet-Segmentation has no labels: its maps explain the predicted ImageNet class.
            from torchvision.models._meta import _IMAGENET_CATEGORIES

            return list(_IMAGENET_CATEGORIES)
        return list(dataset.classnames)

    def check(self, dataset: EvalDataset) -> None:
        super().check(dataset)
        if self.options["target"] not in ("predicted", "gt"):
            raise ValueError(f"segmentation's target is 'predicted' or 'gt'; got {self.options['target']!r}.")
        if self.options["target"] == "gt" and not dataset.has_labels:
            raise ValueError(f"target=gt needs image labels, and the {dataset.kind} dataset has none; use the "
                             "predicted class.")

    def score(self, method: Method, batch) -> Rows:
        images = batch["image"]
        if self.options["target"] == "gt":
            targets = [label - 1 for label in batch["label"]]
        else:
            targets = method.predicted(images)
        maps = method.maps(images, targets)
        truth = torch.stack([(m != 0) & (m != IGNORE) for m in batch["mask"]]).to(maps.device)
        stats = scores.binary_segmentation_stats(maps, truth)
        rows = []
        for i, stem in enumerate(batch["stem"]):
            mine = {k: v[i].tolist() for k, v in stats.items()}
            union = np.asarray(mine["union"], dtype=np.float64)
            inter = np.asarray(mine["intersection"], dtype=np.float64)
            rows.append({"stem": stem, "query": method.classifier.classnames[targets[i]],
                         "pixel_accuracy": mine["correct"] / max(mine["labeled"], 1),
                         "iou_foreground": inter[1] / union[1] if union[1] else math.nan,
                         "ap": mine["ap"], "stats": mine})
        return rows

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        correct = np.array([r["stats"]["correct"] for r in rows], dtype=np.float64)
        labeled = np.array([r["stats"]["labeled"] for r in rows], dtype=np.float64)
        inter = np.array([r["stats"]["intersection"] for r in rows], dtype=np.float64)
        union = np.array([r["stats"]["union"] for r in rows], dtype=np.float64)
        ap = np.array([r["stats"]["ap"] for r in rows], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            miou = ((weights @ inter) / (weights @ union)).mean(axis=1)
        finite = np.isfinite(ap)
        return {"pixel_accuracy": (weights @ correct) / (weights @ labeled), "miou": miou,
                "map": _weighted_mean(ap[finite], weights[:, finite])}

    def truth(self, batch: Dict[str, Any], item: int, target: int) -> np.ndarray:
        # The map of the explained class is scored against the whole foreground, whatever the class.
        mask = batch["mask"][item]
        return ((mask != 0) & (mask != IGNORE)).cpu().numpy()


class BoxLocalisation(Protocol):
    """WSOL as ConVis reports it: MaxBoxAcc (the largest connected component at thresholds 0, 0.01, ..., 0.99
    gives a box, a hit is IoU > 0.5) and MaxBoxAccV2 (Choe et al. 2020: thresholds in steps of 0.001, boxes of
    all components, IoU in {0.3, 0.5, 0.7}). One query per (image, class with boxes): the image's label on CUB."""

    name = "wsol"
    needs = ("boxes",)
    main_metric = "maxboxacc"
    columns = ("class",)
    defaults = {}

    def score(self, method: Method, batch) -> Rows:
        items, classes = [], []
        for item, labels in enumerate(batch["box_labels"]):
            for c in sorted({int(c) for c in labels.tolist()}):
                items.append(item)
                classes.append(c)
        if not items:
            return []
        maps = method.query_maps(batch["image"], items, [c - 1 for c in classes])
        rows = []
        for q, (item, c) in enumerate(zip(items, classes)):
            boxes = batch["boxes"][item][batch["box_labels"][item] == c].numpy()
            stats = max_box_accuracy_stats(maps[q].cpu().numpy(), boxes)
            rows.append({"stem": batch["stem"][item], "query": method.classifier.classnames[c - 1], "class": c,
                         "stats": {k: np.asarray(v).astype(np.uint8).tolist() for k, v in stats.items()}})
        return rows

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        stats = {key: np.stack([np.asarray(r["stats"][key], dtype=np.float64) for r in rows])
                 for key in rows[0]["stats"]}
        return summarise_box_accuracy(stats, weights)

    def truth(self, batch: Dict[str, Any], item: int, target: int) -> np.ndarray:
        return _box_truth(batch, item, target)  # boxes are what it scores, even where masks exist


class Perturbation(Protocol):
    """Deletion or insertion as Grad-ECLIP's code does it: 100 steps, each replacing area/200 pixels (in order
    of relevance) with uniform random RGB (deletion), or copying them into a black image (insertion, as the
    reference's ``np.zeros``); the zero-shot top-1 correctness of the target at the intact image and every 10
    steps; the trapezoid AUC of that curve on [0, 1]. The target is the ground
    truth where the dataset has labels (``target="gt"``, the default there), else the predicted class."""

    main_metric = "auc"
    columns = ("auc",)
    defaults = {"target": None, "seed": 0}

    def score(self, method: Method, batch) -> Rows:
        images = batch["image"]
        target = self.options["target"] or ("gt" if batch["label"][0] is not None else "predicted")
        classifier = method.classifier
        if target == "gt":
            targets = [label - 1 for label in batch["label"]]
        else:
            targets = method.predicted(images)
        maps = method.maps(images, targets)
        mean, std = classifier.bundle.image_mean_std
        generator = torch.Generator().manual_seed(int(self.options["seed"]))
        perturbed = scores.perturbation_inputs(images, maps, mean, std, mode=self.name, generator=generator)
        n, steps = perturbed.shape[:2]
        with torch.no_grad():
            predictions = classifier(perturbed.flatten(0, 1)).argmax(dim=-1).view(n, steps)
        correct = (predictions == torch.as_tensor(targets, device=predictions.device)[:, None]).double()
        auc = scores.curve_auc(correct)
        return [{"stem": stem, "query": classifier.classnames[t], "auc": float(a),
                 "stats": {"curve": c.tolist()}}
                for stem, t, a, c in zip(batch["stem"], targets, auc.tolist(), correct.cpu())]

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        return {"auc": _weighted_mean(np.array([r["auc"] for r in rows], dtype=np.float64), weights)}


class Deletion(Perturbation):
    __doc__ = Perturbation.__doc__
    name = "deletion"
    higher_is_better = False


class Insertion(Perturbation):
    __doc__ = Perturbation.__doc__
    name = "insertion"


class MutualInformation(Protocol):
    """Mutual Knowledge's MI between the visual and the textual concepts of the explained class, and the AUC of
    its dynamics as visual descriptors are removed, averaged over the dataset (the paper reports ImageNet val).
    Only Mutual Knowledge methods have these; the target is the label where the dataset has one, else the
    prediction."""

    name = "mutual-mi"
    main_metric = "mi"
    columns = ("mi", "auc")
    defaults = {}

    def score(self, method: Method, batch) -> Rows:
        from ..mutual import MutualConceptAttribution

        if not isinstance(method.attribution, MutualConceptAttribution):
            return []
        labels = batch["label"]
        target = [label - 1 for label in labels] if labels[0] is not None else None
        explanations = method.attribution.explain(batch["image"], target=target)
        return [{"stem": stem, "query": e.target_name, "mi": e.mi, "auc": e.auc}
                for stem, e in zip(batch["stem"], explanations)]

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        return {name: _weighted_mean(np.array([r[name] for r in rows], dtype=np.float64), weights)
                for name in ("mi", "auc")}


class QuantusGrid(Protocol):
    """The methods x Quantus metrics grid of ``captum-clip benchmark`` on any dataset with masks: one query per
    (image, class present), that class's mask as ``s_batch``, each metric with the benchmark's settings scaled to
    the image (``metrics`` option: comma-separated names, default the localisation metrics). Scores are averaged
    over queries; Quantus's fixes of :mod:`.quantus_fixes` apply."""

    name = "quantus"
    needs = ("masks",)
    defaults = {"metrics": None}

    def __init__(self, **options) -> None:
        from .benchmark import ALL_METRICS, CONCEPT, HIGHER_IS_BETTER, LOCALISATION

        super().__init__(**options)
        names = self.options["metrics"]
        self.metrics = list(LOCALISATION) if not names else [m.strip() for m in str(names).split(",") if m.strip()]
        unknown = [m for m in self.metrics if m not in ALL_METRICS or m in CONCEPT]
        if unknown:
            raise ValueError(f"unknown Quantus metric {unknown[0]!r}; choose from "
                             f"{', '.join(m for m in ALL_METRICS if m not in CONCEPT)}.")
        self.main_metric = self.metrics[0]
        self.higher_is_better = HIGHER_IS_BETTER[self.main_metric]
        self.columns = ("class", *self.metrics)

    def direction(self, metric: str) -> Optional[bool]:
        from .benchmark import HIGHER_IS_BETTER

        return HIGHER_IS_BETTER.get(metric)  # each Quantus metric has its own

    def score(self, method: Method, batch) -> Rows:
        from .benchmark import TOLERANT, metric_settings, pointing_tolerance, seeded_numpy, tolerant_masks
        from .quantus_adapters import make_explain_func
        from .quantus_fixes import evaluate_metric, make_metric

        queries = _query_maps(method, batch)
        if queries is None:
            return []
        items, classes, maps = queries
        images = batch["image"][items]
        masks = torch.stack([batch["mask"][i] == c for i, c in zip(items, classes)]).float()[:, None].numpy()
        x, y, a = images.cpu().numpy(), np.asarray([c - 1 for c in classes]), maps[:, None].cpu().numpy()
        explain = make_explain_func(method.name, attribute_kwargs=method.attribute_kwargs or None,
                                    **(method.options or {}))
        image_hw = tuple(x.shape[-2:])
        values = {}
        for name in self.metrics:
            quantus_name = TOLERANT.get(name, name)
            s = tolerant_masks(masks, pointing_tolerance(image_hw)) if name in TOLERANT else masks
            metric = make_metric(quantus_name, **metric_settings(quantus_name, image_hw))
            # Quantus draws from numpy's global generator; a seed from the batch's images makes a batch score the
            # same whichever rank computes it.
            with seeded_numpy(zlib.crc32("/".join(batch["stem"]).encode())):
                values[name] = np.asarray(evaluate_metric(metric, method.classifier, x, y, s_batch=s, a_batch=a,
                                                          explain_func=explain, device=str(images.device)),
                                          dtype=np.float64)
        return [{"stem": batch["stem"][i], "query": method.classifier.classnames[c - 1], "class": c,
                 **{name: float(values[name][q]) for name in self.metrics}}
                for q, (i, c) in enumerate(zip(items, classes))]

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        out = {}
        for name in self.metrics:
            values = np.array([r[name] for r in rows], dtype=np.float64)
            finite = np.isfinite(values)
            out[name] = _weighted_mean(values[finite], weights[:, finite])
        return out


class ConVisOOD(Protocol):
    """ConVis's OOD experiment on ImageNet-style wnid folders: images whose class synset descends from
    ``id_synset`` are ID, from ``ood_synset`` OOD (others are left out). Each image's embedding is scored by its
    highest cosine to the three WordNet text sets of ConVis (:data:`.convis_ood.OOD_TEXT_SCORES`, from the
    method's vocabulary) and by the zero-shot maximum logit over the ID classes; AUROC flags OOD by a low score.
    Only ConVis methods have rows."""

    name = "convis-ood"
    needs = ("labels",)
    main_metric = "hierarchy_definitions"
    columns = ("is_ood", "id_definition", "hierarchy_definitions", "hierarchy_lemmas", "zero_shot")
    defaults = {"id_synset": None, "ood_synset": None}

    def check(self, dataset: EvalDataset) -> None:
        super().check(dataset)
        if dataset.kind != "imagenet":
            raise ValueError(f"convis-ood reads the WordNet ID of each class folder, so it runs on --dataset imagenet "
                             f"(wnid folders); got {dataset.kind}.")
        if not self.options["id_synset"] or not self.options["ood_synset"]:
            raise ValueError("convis-ood needs --option id_synset=... and --option ood_synset=... (WordNet noun "
                             "synsets, e.g. bird.n.01 and dog.n.01).")
        from ..wordnet import load_wordnet

        wordnet = load_wordnet()
        self._synsets = {wnid: wordnet.synset_from_pos_and_offset("n", int(wnid[1:])) for wnid in dataset.wnids}
        ancestor_id, ancestor_ood = (wordnet.synset(self.options[k]) for k in ("id_synset", "ood_synset"))
        self._kind = {}
        for wnid, synset in self._synsets.items():
            above = set(synset.closure(lambda s: s.hypernyms())) | {synset}
            is_id, is_ood = ancestor_id in above, ancestor_ood in above
            if is_id != is_ood:  # a class under both (or neither) is not a test of the two
                self._kind[wnid] = int(is_ood)
        self._id_classes = [dataset.classnames[k] for k, wnid in enumerate(dataset.wnids) if self._kind.get(wnid) == 0]
        if not self._id_classes or 1 not in self._kind.values():
            raise ValueError(f"no class folder descends from {self.options['id_synset']} and none from "
                             f"{self.options['ood_synset']} alone: AUROC needs both ID and OOD images.")
        self._texts: Dict[int, Any] = {}

    def _text_sets(self, method: Method):
        from .convis_ood import ood_texts

        if id(method) not in self._texts:
            bundle = method.attribution.bundle
            texts = ood_texts(method.attribution.vocabulary, self.options["id_synset"])
            zero_shot = ZeroShotClassifier(bundle, self._id_classes)
            self._texts[id(method)] = (texts, zero_shot)
        return self._texts[id(method)]

    def score(self, method: Method, batch) -> Rows:
        from ..convis.attribution import ConVisAttribution
        from .convis_ood import text_scores

        if not isinstance(method.attribution, ConVisAttribution):
            return []
        keep = [i for i, stem in enumerate(batch["stem"]) if stem.split("/")[0] in self._kind]
        if not keep:
            return []
        texts, zero_shot = self._text_sets(method)
        with torch.no_grad():
            embeddings = method.classifier.image_features(batch["image"][keep])
            scores_by_text = text_scores(method.attribution.bundle, embeddings, texts)
            logits = zero_shot.embedding_logits(embeddings)
            scores_by_text["zero_shot"] = logits.max(dim=1).values.double().cpu().numpy()
        return [{"stem": batch["stem"][i], "query": self.options["id_synset"],
                 "is_ood": self._kind[batch["stem"][i].split("/")[0]],
                 **{name: float(values[q]) for name, values in scores_by_text.items()}}
                for q, i in enumerate(keep)]

    def summarise(self, rows: Rows, weights: np.ndarray) -> Dict[str, np.ndarray]:
        from sklearn.metrics import roc_auc_score

        is_ood = np.array([r["is_ood"] for r in rows], dtype=bool)
        out = {}
        for name in self.columns[1:]:
            scores_ = -np.array([r[name] for r in rows], dtype=np.float64)
            out[name] = np.array([roc_auc_score(is_ood, scores_, sample_weight=w)
                                  if (w[is_ood] > 0).any() and (w[~is_ood] > 0).any() else math.nan
                                  for w in weights])
        return out


PROTOCOLS = {protocol.name: protocol for protocol in (PointingGame, CAMSegmentation, BinarySegmentation,
                                                      BoxLocalisation, Deletion, Insertion, MutualInformation,
                                                      QuantusGrid, ConVisOOD)}
