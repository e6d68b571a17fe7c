"""The concept vocabulary T and its hyponym hierarchy H (ConVis spec §1a).

T is a set of WordNet noun synsets closed under ``hypernyms()``; H holds every hypernym → hyponym link between
members of T. A concept c is explained through Sub(c) = {c} ∪ its descendants in H: a window counts as showing
"animal" when any animal synset in T ranks high.

Three ways to build T:

* :meth:`ConceptVocabulary.from_words`: every noun sense of every word of a list, closed under hypernyms (the
  reference's construction; with the paper's ``physical_objects.txt`` it gives its 7,080 synsets).
* :meth:`ConceptVocabulary.from_synsets`: an explicit synset list, closed under hypernyms, keeping the given
  order (so a saved vocabulary, such as the reference's ``h_list``, can be reloaded row for row).
* :func:`default_vocabulary`: the project's built-in vocabulary, see :data:`DEFAULT_VOCABULARY_RULE`.

Instance links (``instance_hypernyms()``: named places, people, ...) are not part of H, as in the reference: a
word sense reachable only through them contributes nothing.

A concept outside T raises a ``ValueError``; :meth:`ConceptVocabulary.extended` is the explicit way to add one
(which changes |T| and therefore every rank).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Union

import torch
from nltk.corpus.reader.wordnet import Synset, WordNetCorpusReader, WordNetError

from ..wordnet import load_wordnet, sense_tag_counts

__all__ = [
    "ROOT_SYNSET",
    "DEFAULT_VOCABULARY_RULE",
    "ConceptVocabulary",
    "ConceptLike",
    "default_vocabulary",
    "read_word_list",
]

#: The single root of WordNet's noun hierarchy; every synset of T descends from it.
ROOT_SYNSET = "entity.n.01"

#: The built-in vocabulary's rule, in words. Deterministic for WordNet 3.0 (nltk's package and Debian's are the
#: same database): 5,841 seed synsets, |T| = 7,156.
DEFAULT_VOCABULARY_RULE = (
    "Every noun synset reachable from physical_entity.n.01 through hyponyms() (instances excluded) whose lemmas "
    "were sense-tagged at least once in WordNet's semantic-concordance counts (cntlist.rev, the numbers behind "
    "Lemma.count()), closed under hypernyms(). Attested senses of physical things keep everyday objects, animals, "
    "foods and materials (cat.n.01, cup.n.01, banana.n.02, tiger.n.02) and leave out rare taxonomic and "
    "technical entries."
)

_DEFAULT_SUBTREE_ROOT = "physical_entity.n.01"
_DEFAULT_MIN_TAG_COUNT = 1

ConceptLike = Union[str, Synset]

_SYNSET_NAME = re.compile(r"^(?P<lemma>.+)\.(?P<pos>[nvasr])\.(?P<sense>\d+)$")
_POS_WORDS = {"v": "a verb", "a": "an adjective", "s": "an adjective (satellite)", "r": "an adverb"}


def read_word_list(path: str | os.PathLike) -> list[str]:
    """Read a word list, one word per line (the format of the paper's ``physical_objects.txt``).

    Args:
        path: a UTF-8 text file; blank lines are skipped and surrounding whitespace is stripped.

    Returns:
        The words in file order.
    """
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def _hypernym_closure(seeds: Iterable[Synset]) -> set[Synset]:
    closed: set[Synset] = set()
    stack = list(seeds)
    while stack:
        synset = stack.pop()
        if synset not in closed:
            closed.add(synset)
            stack.extend(synset.hypernyms())
    return closed


def _in_hierarchy(synset: Synset) -> bool:
    # Only the root has no hypernyms() among the synsets H can hold; any other such noun is an instance.
    return synset.name() == ROOT_SYNSET or bool(synset.hypernyms())


def _require_in_hierarchy(synset: Synset) -> None:
    if not _in_hierarchy(synset):
        raise ValueError(
            f"{synset.name()!r} is an instance synset (a named entity linked to WordNet only through "
            "instance_hypernyms()); ConVis concepts are classes in the hypernym hierarchy, such as "
            f"{sorted(h.name() for h in synset.instance_hypernyms())}"
        )


class ConceptVocabulary:
    """A hypernym-closed set of noun synsets (T), its hierarchy (H) and concept closures (Sub).

    Build it with :meth:`from_words`, :meth:`from_synsets` or :func:`default_vocabulary` rather than directly.

    Args:
        names: synset names, unique; their order is the row order of the text bank and of every rank vector.
        edges: ``(parent_index, child_index)`` pairs, hypernym → hyponym, between rows of *names*.
        source: a short human-readable description of how T was built (used in error messages).
        wordnet: the reader T came from; the default for every later WordNet lookup (glosses, aliases, error
            hints), so a vocabulary never mixes two WordNet copies. ``None``: :func:`load_wordnet`.
    """

    def __init__(
        self,
        names: Sequence[str],
        edges: Iterable[tuple[int, int]],
        source: str = "",
        wordnet: WordNetCorpusReader | None = None,
    ) -> None:
        self._names = tuple(names)
        self._index = {name: i for i, name in enumerate(self._names)}
        if len(self._index) != len(self._names):
            raise ValueError("synset names in a vocabulary must be unique")
        self._edges = tuple(sorted({(int(p), int(c)) for p, c in edges}))
        self._children: list[list[int]] = [[] for _ in self._names]
        self._parents: list[list[int]] = [[] for _ in self._names]
        for parent, child in self._edges:
            self._children[parent].append(child)
            self._parents[child].append(parent)
        self.source = source
        self._wordnet = wordnet

    def _reader(self, wordnet: WordNetCorpusReader | None) -> WordNetCorpusReader:
        if wordnet is not None:
            return wordnet
        return self._wordnet if self._wordnet is not None else load_wordnet()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_words(
        cls,
        words: Iterable[str],
        *,
        join_spaces: bool = True,
        wordnet: WordNetCorpusReader | None = None,
    ) -> ConceptVocabulary:
        """T = the hypernym closure of every noun sense of every word (no disambiguation).

        Args:
            words: lemma names such as ``"cat"``, ``"ice cream"``, ``"dune_buggy"``.
            join_spaces: look multi-word entries up with underscores (WordNet's spelling). The reference passes
                words unchanged, so its two multi-word entries ("creme brulee", "dune buggy") find no synset;
                ``False`` reproduces its 7,080-synset T exactly.
            wordnet: a WordNet reader; default :func:`~captum_clip.wordnet.load_wordnet`.

        Returns:
            The vocabulary, rows sorted by synset name.

        Raises:
            ValueError: when no word has a noun sense in the hierarchy.
        """
        wn = wordnet if wordnet is not None else load_wordnet()
        seeds = []
        for word in words:
            lemma = word.strip().replace(" ", "_") if join_spaces else word
            if lemma:
                seeds.extend(s for s in wn.synsets(lemma, pos="n") if _in_hierarchy(s))
        if not seeds:
            raise ValueError("none of the words has a noun sense in WordNet's hypernym hierarchy")
        closed = _hypernym_closure(seeds)
        return cls._from_closed(sorted(s.name() for s in closed), closed, source="a word list", wordnet=wn)

    @classmethod
    def from_synsets(
        cls,
        synsets: Iterable[ConceptLike],
        *,
        wordnet: WordNetCorpusReader | None = None,
        source: str = "a synset list",
    ) -> ConceptVocabulary:
        """T = the given noun synsets plus their hypernyms, in the given order.

        Args:
            synsets: synset names (``"cat.n.01"``) or nltk ``Synset`` objects.
            wordnet: a WordNet reader; default :func:`~captum_clip.wordnet.load_wordnet`.
            source: description used in error messages.

        Returns:
            The vocabulary: the given synsets first, in order, then any missing hypernyms sorted by name.

        Raises:
            ValueError: for an empty list, a name that is not a WordNet noun synset, or an instance synset.
        """
        wn = wordnet if wordnet is not None else load_wordnet()
        given = [_lookup_noun_synset(item, wn) for item in synsets]
        if not given:
            raise ValueError("a vocabulary needs at least one synset")
        for synset in given:
            _require_in_hierarchy(synset)
        closed = _hypernym_closure(given)
        order = list(dict.fromkeys(s.name() for s in given))
        listed = set(order)
        order += sorted(s.name() for s in closed if s.name() not in listed)
        return cls._from_closed(order, closed, source=source, wordnet=wn)

    @classmethod
    def _from_closed(
        cls, names: Sequence[str], closed: set[Synset], source: str, wordnet: WordNetCorpusReader
    ) -> ConceptVocabulary:
        index = {name: i for i, name in enumerate(names)}
        edges = [
            (index[parent.name()], index[child.name()]) for child in closed for parent in child.hypernyms()
        ]
        return cls(names, edges, source=source, wordnet=wordnet)

    def extended(
        self, concepts: Iterable[ConceptLike], *, wordnet: WordNetCorpusReader | None = None
    ) -> ConceptVocabulary:
        """A new vocabulary with *concepts* and their hypernyms added (existing rows keep their positions).

        Adding synsets changes |T|, so ranks and maps from the extended vocabulary are not comparable with the
        original ones, and its text bank must be re-encoded.

        Args:
            concepts: noun synset names or ``Synset`` objects.
            wordnet: a WordNet reader; default: the vocabulary's own.

        Returns:
            ``self`` when nothing is missing, else the extended vocabulary.
        """
        wn = self._reader(wordnet)
        new = [_lookup_noun_synset(c, wn) for c in concepts]
        if all(s.name() in self._index for s in new):
            return self
        extended = ConceptVocabulary.from_synsets(
            [*self._names, *new], wordnet=wn, source=f"{self.source} extended with {[s.name() for s in new]}"
        )
        return extended

    # ------------------------------------------------------------------ queries
    @property
    def names(self) -> tuple[str, ...]:
        """Synset names in row order."""
        return self._names

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """Hypernym → hyponym edges of H as ``(parent_row, child_row)``, sorted."""
        return self._edges

    def edge_names(self) -> set[tuple[str, str]]:
        """Edges of H as ``(hypernym_name, hyponym_name)`` pairs."""
        return {(self._names[p], self._names[c]) for p, c in self._edges}

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"ConceptVocabulary(|T|={len(self)}, |H edges|={len(self._edges)}, source={self.source!r})"

    def index(self, name: str) -> int:
        """Row of a synset name (which must be in T)."""
        return self._index[name]

    def children(self, name: str) -> list[str]:
        """Direct hyponyms of *name* within H."""
        return [self._names[i] for i in self._children[self._index[name]]]

    def parents(self, name: str) -> list[str]:
        """Direct hypernyms of *name* within H."""
        return [self._names[i] for i in self._parents[self._index[name]]]

    def subtree(self, concept: ConceptLike) -> list[int]:
        """Rows of Sub(c) = {c} ∪ descendants of c in H, in breadth-first order from c.

        Args:
            concept: a synset name or ``Synset`` in T.

        Returns:
            Row indices, c's own row first.
        """
        start = self._index[self.resolve(concept)]
        seen = {start}
        order = [start]
        queue = deque([start])
        while queue:
            for child in self._children[queue.popleft()]:
                if child not in seen:
                    seen.add(child)
                    order.append(child)
                    queue.append(child)
        return order

    def sub_mask(self, concepts: Sequence[ConceptLike]) -> torch.Tensor:
        """Membership of every row in Sub(c) for each concept.

        Args:
            concepts: K synset names or ``Synset`` objects, all in T.

        Returns:
            ``(K, |T|)`` bool tensor.
        """
        names = self.resolve_many(concepts)
        mask = torch.zeros(len(names), len(self), dtype=torch.bool)
        for k, name in enumerate(names):
            mask[k, self.subtree(name)] = True
        return mask

    def resolve(self, concept: ConceptLike, *, wordnet: WordNetCorpusReader | None = None) -> str:
        """Validate a concept and return its synset name in T.

        Args:
            concept: a synset name (``"cat.n.01"``, or any WordNet alias of it such as
                ``"domestic_cat.n.01"``) or an nltk ``Synset``.
            wordnet: reader used only to resolve aliases and explain errors; default: the vocabulary's own.

        Returns:
            The canonical synset name, a member of T.

        Raises:
            ValueError: for a malformed name, a synset unknown to WordNet, a non-noun synset, or a noun synset
                outside T (the message names its nearest hypernyms in T and :meth:`extended`).
            TypeError: for anything other than a string or ``Synset``.
        """
        if isinstance(concept, str) and concept in self._index:
            return concept
        if isinstance(concept, Synset) and concept.name() in self._index:
            return concept.name()
        if not isinstance(concept, (str, Synset)):
            raise TypeError(f"a concept must be a synset name or an nltk Synset, not {type(concept).__name__}")
        wn = self._reader(wordnet)
        synset = _lookup_noun_synset(concept, wn)
        name = synset.name()
        if name in self._index:
            return name
        _require_in_hierarchy(synset)
        nearest = self._nearest_members(synset)
        raise ValueError(
            f"{name!r} is a WordNet noun synset but not in the concept vocabulary (|T| = {len(self)}, built from "
            f"{self.source}). Its nearest hypernyms in the vocabulary are {nearest}. To explain it anyway, build "
            "the vocabulary with vocabulary.extended([...]), which adds it and its hypernyms (this changes |T| "
            "and therefore every rank)."
        )

    def resolve_many(self, concepts: Sequence[ConceptLike] | ConceptLike) -> list[str]:
        """:meth:`resolve` for a non-empty list; a single concept is accepted as a list of one.

        Returns:
            Canonical synset names, in the given order (duplicates kept).

        Raises:
            ValueError: for an empty list, or any invalid concept (see :meth:`resolve`).
        """
        if isinstance(concepts, (str, Synset)):
            concepts = [concepts]
        concepts = list(concepts)
        if not concepts:
            raise ValueError("no concepts given: pass at least one WordNet noun synset name such as 'cat.n.01'")
        return [self.resolve(c) for c in concepts]

    def _nearest_members(self, synset: Synset) -> list[str]:
        frontier, seen = [synset], {synset}
        while frontier:
            found = sorted({s.name() for s in frontier if s.name() in self._index})
            if found:
                return found
            nxt = []
            for s in frontier:
                for h in s.hypernyms() + s.instance_hypernyms():
                    if h not in seen:
                        seen.add(h)
                        nxt.append(h)
            frontier = nxt
        return []

    # ------------------------------------------------------------------ texts and identity
    def texts(self, source: str = "definition", *, wordnet: WordNetCorpusReader | None = None) -> list[str]:
        """The text that represents each synset for the CLIP text encoder.

        Args:
            source: ``"definition"`` (the raw gloss, as the reference) or ``"lemmas"`` (the lemma names joined
                by ``", "``, underscores as spaces, e.g. ``"cat, true cat"``).
            wordnet: a WordNet reader; default: the vocabulary's own.

        Returns:
            |T| strings in row order.
        """
        wn = self._reader(wordnet)
        synsets = [wn.synset(name) for name in self._names]
        if source == "definition":
            return [s.definition() for s in synsets]
        if source == "lemmas":
            return [", ".join(name.replace("_", " ") for name in s.lemma_names()) for s in synsets]
        raise ValueError(f"text source must be 'definition' or 'lemmas', not {source!r}")

    def digest(self) -> str:
        """SHA-256 of the row order and the edges: equal digests mean interchangeable vocabularies."""
        h = hashlib.sha256()
        h.update("\n".join(self._names).encode())
        h.update(b"\0")
        h.update(",".join(f"{p}:{c}" for p, c in self._edges).encode())
        return h.hexdigest()


def _lookup_noun_synset(concept: ConceptLike, wn: WordNetCorpusReader) -> Synset:
    """A WordNet noun synset for *concept*, or a ValueError that says what was wrong with it."""
    if isinstance(concept, Synset):
        synset = concept
    elif isinstance(concept, str):
        match = _SYNSET_NAME.match(concept.strip())
        if match is None:
            senses = [s.name() for s in wn.synsets(concept.strip().replace(" ", "_"), pos="n")][:8]
            hint = f" Noun senses of {concept!r}: {senses}." if senses else ""
            raise ValueError(
                f"{concept!r} is not a synset name; ConVis concepts are WordNet noun synsets written like "
                f"'cat.n.01'.{hint}"
            )
        if match["pos"] != "n":
            raise ValueError(
                f"{concept!r} is {_POS_WORDS[match['pos']]} synset; ConVis concepts must be noun synsets ('.n.')"
            )
        try:
            synset = wn.synset(concept.strip())
        except (WordNetError, ValueError, LookupError, AttributeError) as exc:
            raise ValueError(f"{concept!r} is not a synset of WordNet {wn.get_version()}: {exc}") from None
    else:
        raise TypeError(f"a concept must be a synset name or an nltk Synset, not {type(concept).__name__}")
    if synset.pos() != "n":
        raise ValueError(f"{synset.name()!r} is not a noun synset; ConVis concepts must be noun synsets ('.n.')")
    return synset


def _default_seeds(wn: WordNetCorpusReader) -> list[Synset]:
    counts = sense_tag_counts(wn)
    root = wn.synset(_DEFAULT_SUBTREE_ROOT)
    below = {root, *root.closure(lambda s: s.hyponyms())}
    return [
        s for s in below if sum(counts.get(lemma.key(), 0) for lemma in s.lemmas()) >= _DEFAULT_MIN_TAG_COUNT
    ]


@functools.lru_cache(maxsize=4)
def _default_vocabulary_for(wn: WordNetCorpusReader) -> ConceptVocabulary:
    seeds = _default_seeds(wn)
    closed = _hypernym_closure(seeds)
    return ConceptVocabulary._from_closed(
        sorted(s.name() for s in closed), closed, source="the built-in default vocabulary", wordnet=wn
    )


def default_vocabulary(wordnet: WordNetCorpusReader | None = None) -> ConceptVocabulary:
    """The project's built-in vocabulary (rule: :data:`DEFAULT_VOCABULARY_RULE`), built once per reader.

    Args:
        wordnet: a WordNet reader; default :func:`~captum_clip.wordnet.load_wordnet`.

    Returns:
        The vocabulary, rows sorted by synset name (|T| = 7,156 on WordNet 3.0).
    """
    return _default_vocabulary_for(wordnet if wordnet is not None else load_wordnet())
