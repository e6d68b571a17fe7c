"""Out-of-distribution detection with WordNet texts (ConVis spec §2a): does a synset's text carry its concept?

The in-distribution (ID) and OOD sets are the images whose class synset descends (through ``hypernyms()``) from
an ID synset and an OOD synset. Each image's *whole-image* CLIP embedding is scored against three sets of texts
built from the vocabulary's hierarchy H, score = the highest cosine:

* ``id_definition``: the ID synset's gloss alone;
* ``hierarchy_definitions``: the glosses of the leaves of Sub(ID) in H;
* ``hierarchy_lemmas``: every lemma name of every synset of Sub(ID).

An image is flagged OOD when its score is low. The baselines are maximum-logit scores (MLS): a linear probe on the
CLIP embeddings of ID training images (the paper trains a head on ID training images, on ResNet-50 features), and
CLIP's zero-shot classifier over the ID classes. AUROC takes OOD as the positive class (scikit-learn's exact
``roc_auc_score``, where the reference integrated over 1,000 thresholds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from ..core.classifier import ZeroShotClassifier
from ..core.loading import ClipBundle
from ..core.precision import autocast
from ..convis.bundle_adapters import bundle_text_encoder
from ..convis.vocabulary import ConceptVocabulary

__all__ = [
    "OOD_TEXT_SCORES",
    "OODResult",
    "descends_from",
    "ood_texts",
    "encode_images",
    "text_scores",
    "linear_probe_scores",
    "zero_shot_scores",
    "ood_auroc",
    "run_ood_experiment",
]

#: The three WordNet text sets, in the order results are reported.
OOD_TEXT_SCORES = ("id_definition", "hierarchy_definitions", "hierarchy_lemmas")


def descends_from(synset: str, ancestor: str, vocabulary: ConceptVocabulary) -> bool:
    """True when *synset* is *ancestor* or has a ``hypernyms()`` path to it (in WordNet, not only in T)."""
    wn = vocabulary._reader(None)
    node, target = wn.synset(synset), wn.synset(ancestor)
    return node == target or target in node.closure(lambda s: s.hypernyms())


def _leaves(vocabulary: ConceptVocabulary, concept: str) -> list[str]:
    return [vocabulary.names[r] for r in vocabulary.subtree(concept) if not vocabulary.children(vocabulary.names[r])]


def ood_texts(vocabulary: ConceptVocabulary, id_synset: str) -> dict[str, list[str]]:
    """The texts of the three WordNet scores for one ID synset.

    Args:
        vocabulary: T with its hierarchy H (Sub and leaves are taken in H, as in the reference).
        id_synset: the ID concept, a member of T.

    Returns:
        ``{score name: texts}`` for :data:`OOD_TEXT_SCORES`; lemma names have underscores as spaces and appear once.
    """
    concept = vocabulary.resolve(id_synset)
    wn = vocabulary._reader(None)
    subtree = [vocabulary.names[r] for r in vocabulary.subtree(concept)]
    lemmas = dict.fromkeys(name.replace("_", " ") for s in subtree for name in wn.synset(s).lemma_names())
    return {
        "id_definition": [wn.synset(concept).definition()],
        "hierarchy_definitions": [wn.synset(s).definition() for s in _leaves(vocabulary, concept)],
        "hierarchy_lemmas": list(lemmas),
    }


@torch.no_grad()
def encode_images(bundle: ClipBundle, images: Iterable[torch.Tensor], batch_size: int = 64) -> torch.Tensor:
    """Unit-norm whole-image embeddings.

    Args:
        bundle: the model.
        images: normalised ``(3, H, W)`` tensors (e.g. ``bundle.preprocess(pil)``) or ``(n, 3, H, W)`` batches.
        batch_size: images per ``encode_image`` call.

    Returns:
        ``(N, E)`` float32 on the CPU.
    """
    rows, pending = [], []

    def flush() -> None:
        if pending:
            batch = torch.cat(pending).to(bundle.device, bundle.dtype)
            with autocast(bundle.device, bundle.precision):
                rows.append(F.normalize(bundle.model.encode_image(batch).float(), dim=-1).cpu())
            pending.clear()

    count = 0
    for image in images:
        batch = image[None] if image.ndim == 3 else image
        pending.append(batch)
        count += len(batch)
        if count >= batch_size:
            flush()
            count = 0
    flush()
    if not rows:
        raise ValueError("no images to embed")
    return torch.cat(rows)


def text_scores(bundle: ClipBundle, embeddings: torch.Tensor, texts: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Per image, the highest cosine to each text set.

    Args:
        bundle: the model (its text tower embeds the texts).
        embeddings: ``(N, E)`` unit-norm image embeddings.
        texts: ``{name: texts}``.

    Returns:
        ``{name: (N,)}`` float64.
    """
    encode = bundle_text_encoder(bundle)
    out = {}
    for name, items in texts.items():
        if not items:
            raise ValueError(f"the {name} text set is empty")
        text = F.normalize(encode(items), dim=-1).to(embeddings.device)
        out[name] = (embeddings @ text.T).max(dim=1).values.double().cpu().numpy()
    return out


def linear_probe_scores(train_embeddings: torch.Tensor, train_labels: Sequence[int], embeddings: torch.Tensor,
                        seed: int = 0) -> np.ndarray:
    """MLS of a logistic-regression head trained on ID training embeddings.

    Args:
        train_embeddings: ``(M, E)`` ID training images.
        train_labels: ``(M,)`` their ID class indices (at least two classes).
        embeddings: ``(N, E)`` test images.
        seed: solver seed.

    Returns:
        ``(N,)`` maximum logit (decision value); with two classes the larger of ±margin.
    """
    labels = np.asarray(train_labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("the linear-probe baseline needs ID training images of at least two classes")
    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(train_embeddings.double().numpy(), labels)
    logits = probe.decision_function(embeddings.double().numpy())
    if logits.ndim == 1:  # binary: one margin m stands for the logits (0, m)
        logits = np.stack([np.zeros_like(logits), logits], axis=1)
    return logits.max(axis=1)


def zero_shot_scores(bundle: ClipBundle, embeddings: torch.Tensor, id_classnames: Sequence[str],
                     templates: Sequence[str] | None = None) -> np.ndarray:
    """MLS of CLIP's zero-shot classifier over the ID classes (prompt-ensembled class names).

    Args:
        bundle: the model.
        embeddings: ``(N, E)`` unit-norm image embeddings.
        id_classnames: the ID class names.
        templates: prompt templates (default: the classifier's).

    Returns:
        ``(N,)`` maximum logit.
    """
    classifier = ZeroShotClassifier(bundle, list(id_classnames), templates)
    return classifier.embedding_logits(embeddings).max(dim=1).values.double().cpu().numpy()


def ood_auroc(scores: np.ndarray, is_ood: np.ndarray) -> float:
    """AUROC of flagging OOD images by a *low* score (OOD = positive class)."""
    is_ood = np.asarray(is_ood, dtype=bool)
    if is_ood.all() or not is_ood.any():
        raise ValueError("AUROC needs both ID and OOD images")
    return float(roc_auc_score(is_ood, -np.asarray(scores, dtype=np.float64)))


@dataclass
class OODResult:
    """One ID/OOD pair.

    Attributes:
        id_synset: the ID concept.
        ood_synset: the OOD concept.
        n_id: ID test images.
        n_ood: OOD test images.
        auroc: ``{score name: AUROC}``: the three WordNet scores, then the MLS baselines that ran.
        n_texts: number of texts behind each WordNet score.
        id_classes: the ID class synsets seen.
        ood_classes: the OOD class synsets seen.
    """

    id_synset: str
    ood_synset: str
    n_id: int
    n_ood: int
    auroc: dict[str, float] = field(default_factory=dict)
    n_texts: dict[str, int] = field(default_factory=dict)
    id_classes: list[str] = field(default_factory=list)
    ood_classes: list[str] = field(default_factory=list)


def run_ood_experiment(
    bundle: ClipBundle,
    embeddings: torch.Tensor,
    class_synsets: Sequence[str],
    id_synset: str,
    ood_synset: str,
    vocabulary: ConceptVocabulary,
    *,
    train_embeddings: torch.Tensor | None = None,
    train_synsets: Sequence[str] | None = None,
    zero_shot: bool = True,
    templates: Sequence[str] | None = None,
) -> OODResult:
    """AUROC of the three WordNet scores and the MLS baselines for one ID/OOD pair.

    Args:
        bundle: the model.
        embeddings: ``(N, E)`` unit-norm embeddings of the test images (:func:`encode_images`).
        class_synsets: N class synsets; images under neither synset are left out.
        id_synset: the ID concept (a member of the vocabulary).
        ood_synset: the OOD concept.
        vocabulary: T and H.
        train_embeddings: ``(M, E)`` training images for the linear-probe MLS (skipped when None).
        train_synsets: their M class synsets (only ID classes are used).
        zero_shot: also report the zero-shot MLS over the ID classes (named by their first lemma).
        templates: zero-shot prompt templates.

    Returns:
        :class:`OODResult`.
    """
    id_synset, ood_synset = vocabulary.resolve(id_synset), vocabulary.resolve(ood_synset)
    if descends_from(id_synset, ood_synset, vocabulary) or descends_from(ood_synset, id_synset, vocabulary):
        raise ValueError(f"{id_synset} and {ood_synset} overlap: one descends from the other")
    memo: dict[tuple[str, str], bool] = {}

    def under(synset: str, ancestor: str) -> bool:
        if (synset, ancestor) not in memo:
            memo[synset, ancestor] = descends_from(synset, ancestor, vocabulary)
        return memo[synset, ancestor]

    is_id = np.array([under(s, id_synset) for s in class_synsets])
    is_ood = np.array([under(s, ood_synset) for s in class_synsets])
    keep = is_id | is_ood
    if not is_id.any() or not is_ood.any():
        raise ValueError(f"need images under both {id_synset} ({int(is_id.sum())}) and {ood_synset} "
                         f"({int(is_ood.sum())})")
    test, labels = embeddings[torch.from_numpy(keep)], is_ood[keep]
    texts = ood_texts(vocabulary, id_synset)
    result = OODResult(
        id_synset, ood_synset, int(is_id.sum()), int(is_ood.sum()),
        n_texts={k: len(v) for k, v in texts.items()},
        id_classes=sorted({s for s, i in zip(class_synsets, is_id) if i}),
        ood_classes=sorted({s for s, o in zip(class_synsets, is_ood) if o}),
    )
    for name, scores in text_scores(bundle, test, texts).items():
        result.auroc[name] = ood_auroc(scores, labels)
    if train_embeddings is not None:
        if train_synsets is None or len(train_synsets) != len(train_embeddings):
            raise ValueError("train_synsets must give one class synset per training embedding")
        train_id = [i for i, s in enumerate(train_synsets) if under(s, id_synset)]
        classes = sorted({train_synsets[i] for i in train_id})
        labels_train = [classes.index(train_synsets[i]) for i in train_id]
        result.auroc["mls_linear_probe"] = ood_auroc(
            linear_probe_scores(train_embeddings[train_id], labels_train, test), labels)
    if zero_shot:
        wn = vocabulary._reader(None)
        # Two ID classes can share a first lemma; the max logit needs each name once.
        names = list(dict.fromkeys(wn.synset(s).lemma_names()[0].replace("_", " ") for s in result.id_classes))
        result.auroc["mls_zero_shot"] = ood_auroc(zero_shot_scores(bundle, test, names, templates), labels)
    return result
