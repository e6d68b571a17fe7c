"""Descriptor banks D: the textual concepts Mutual Knowledge names visual concepts with.

The paper uses Menon & Vondrick's LLM-generated JSONs ``{class name: [descriptor, ...]}`` with repeated strings
dropped (4,229 unique descriptors for ImageNet); the bank is class-agnostic, a descriptor's id is its position.
Those files carry no licence, so nothing of them ships here. Instead:

* :func:`load_descriptor_bank` accepts a user's bank in that JSON format (or a plain list) and deduplicates it
  in first-occurrence order, as the paper did;
* :func:`wordnet_descriptor_bank` generates a licence-clean bank offline from the installed WordNet 3.0
  (glosses, part and substance meronyms "has a wheel", hypernym phrases "a kind of dog", holonyms), cached on
  disk per class list.

WordNet 3.0 is distributed under the Princeton WordNet licence, which allows use and redistribution.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, Union

from ..core.cache import cache_root

__all__ = [
    "DescriptorBank",
    "BankSource",
    "load_descriptor_bank",
    "wordnet_descriptor_bank",
    "wordnet_descriptors_for",
    "WORDNET_BANK_VERSION",
]

#: Bumped whenever :func:`wordnet_descriptors_for` would produce different strings (invalidates caches).
WORDNET_BANK_VERSION = "4"

_MAX_GLOSS_CLAUSES = 2
_MAX_PARTS = 6
_MAX_SUBSTANCES = 2
_MAX_HOLONYMS = 2

# Function words of class phrases ("a wooden floor", "the head of a dog"). WordNet has noun senses for some of
# them ("a" is the angstrom, "in" the inch), so they are dropped before any look-up. A short list of our own:
# general stop-word lists (scikit-learn's) hold content words that name visual features ("thin", "fire", "back").
_FUNCTION_WORDS = frozenset(
    "a an the this that these those some any each every no my your his her its our their of in on at to for "
    "from by with without into onto over under near and or".split())


@dataclass(frozen=True)
class DescriptorBank:
    """A list of unique descriptor strings; a descriptor's id is its index.

    Attributes:
        descriptors: the D unique strings, in first-occurrence order.
        classes: class name -> ids of the descriptors listed for it (empty for a plain list). Information only:
            Mutual Knowledge uses the bank class-agnostically.
        source: where the bank came from (``"json:<path>"``, ``"mapping"``, ``"list"``, ``"wordnet"``, ...).
    """

    descriptors: tuple[str, ...]
    classes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    source: str = "list"

    def __len__(self) -> int:
        return len(self.descriptors)

    def __getitem__(self, index: int) -> str:
        return self.descriptors[index]

    def digest(self) -> str:
        """sha256 of the descriptor strings in id order (the part of the bank its embeddings depend on)."""
        return hashlib.sha256("\n".join(self.descriptors).encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, list[str]]:
        """The ``{class: [descriptors]}`` form (``{"": [...]}`` for a bank without classes)."""
        if not self.classes:
            return {"": list(self.descriptors)}
        return {name: [self.descriptors[i] for i in ids] for name, ids in self.classes.items()}


#: What :func:`load_descriptor_bank` accepts.
BankSource = Union[DescriptorBank, Mapping[str, Sequence[str]], Sequence[str], str, os.PathLike]


def _clean(text, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"descriptors must be non-empty strings; got {text!r} {where}.")
    return " ".join(text.split())


def _from_mapping(mapping: Mapping[str, Sequence[str]], source: str) -> DescriptorBank:
    ids: dict[str, int] = {}
    classes: dict[str, tuple[int, ...]] = {}
    for name, items in mapping.items():
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise ValueError(f"the descriptors of class {name!r} must be a list of strings; "
                             f"got {type(items).__name__}.")
        class_ids = []
        for item in items:
            text = _clean(item, f"for class {name!r}")
            class_ids.append(ids.setdefault(text, len(ids)))
        classes[str(name)] = tuple(dict.fromkeys(class_ids))
    if not ids:
        raise ValueError("the descriptor bank is empty: give at least one descriptor.")
    return DescriptorBank(tuple(ids), classes, source)


def load_descriptor_bank(source: BankSource) -> DescriptorBank:
    """A bank from a JSON file, a ``{class: [descriptors]}`` mapping, a list of strings or a bank.

    Descriptors are whitespace-normalised and deduplicated in first-occurrence order (the paper's "after
    discarding repetitive descriptors"), so Menon & Vondrick's ImageNet file gives its 4,229 strings.

    Args:
        source: a :class:`DescriptorBank` (returned as is); a mapping class -> list of strings; a list of
            strings; or the path of a JSON file holding either of the two.

    Returns:
        :class:`DescriptorBank`.

    Raises:
        ValueError: an empty bank, a non-string or empty descriptor, a malformed or unreadable JSON file.
    """
    if isinstance(source, DescriptorBank):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read descriptor bank {path}: {error}") from error
        bank = load_descriptor_bank(data)
        return DescriptorBank(bank.descriptors, bank.classes, f"json:{path}")
    if isinstance(source, Mapping):
        return _from_mapping(source, "mapping")
    if isinstance(source, Sequence):
        bank = _from_mapping({"": source}, "list")
        return DescriptorBank(bank.descriptors, {}, "list")
    raise ValueError(
        "descriptors must be a JSON path, a {class: [descriptors]} mapping, a list of strings or a "
        f"DescriptorBank; got {type(source).__name__}."
    )


# ----------------------------------------------------------------------------------------------- WordNet


def _article(phrase: str) -> str:
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def _lemma_text(synset) -> str:
    return synset.lemma_names()[0].replace("_", " ")


def _by_name(synsets) -> list:
    # nltk keeps a synset's pointers in sets, so hypernyms() and the meronyms come in an order that changes with
    # PYTHONHASHSEED; sorting by name makes the bank (and which parts the caps keep) the same in every process.
    return sorted(synsets, key=lambda s: s.name())


def _gloss_clauses(definition: str) -> list[str]:
    # Glosses read "(astronomy) a celestial body ...; usually ..." - drop the domain tag, split the clauses.
    definition = re.sub(r"^\([^)]*\)\s*", "", definition.strip())
    clauses = [re.sub(r"\s*\([^)]*\)", "", c).strip(" \"'`") for c in definition.split(";")]
    return [c for c in clauses if c][:_MAX_GLOSS_CLAUSES]


def _gloss_features(clause: str) -> list[str]:
    # "a motor vehicle with four wheels" -> "four wheels": what follows the first "with" / "having" is usually
    # the visual feature itself, the form LLM banks phrase descriptors in.
    match = re.search(r"\b(?:with|having)\s+(.+)$", clause)
    return [match.group(1).strip()] if match else []


def _class_synset(wordnet, name: str):
    """(noun synset or None, modifier words): the phrase itself ("bird of prey" is a WordNet noun), else the
    phrase without its function words ("a wooden floor" is looked up as "wooden floor"), else its head noun (last
    word) with the other content words as modifiers. Function words never become descriptors."""
    phrase = name.strip().lower().replace("-", " ").split()
    words = [w for w in phrase if w not in _FUNCTION_WORDS]
    for key in dict.fromkeys(["_".join(phrase), "_".join(words)]):
        synsets = wordnet.synsets(key, pos="n") if key else []
        if synsets:
            return synsets[0], []
    if len(words) > 1:
        head = wordnet.synsets(words[-1], pos="n")
        return (head[0] if head else None), words[:-1]
    return None, []


def wordnet_descriptors_for(name: str, wordnet) -> list[str]:
    """Visual descriptors of one class from WordNet, Menon-style short phrases.

    From the class's most frequent noun sense (or, for a phrase WordNet lacks, its head noun, plus its modifier
    words such as "red" in "red star"): the gloss clauses, and what follows "with" / "having" in them ("four
    wheels"); "has a <part>" for the part meronyms of the sense and of its direct hypernyms; "made of <substance>"; "a kind of <hypernym>"; "part of a <holonym>". A class
    WordNet does not know at all gets its own name as its only descriptor.

    Args:
        name: the class name ("golden retriever", "red star").
        wordnet: an nltk ``WordNetCorpusReader`` (see :func:`captum_clip.wordnet.load_wordnet`).

    Returns:
        The class's descriptors, without repeats.
    """
    synset, modifiers = _class_synset(wordnet, name)
    phrases: list[str] = []
    for word in modifiers:
        phrases.append(word)
        senses = wordnet.synsets(word, pos="a") or wordnet.synsets(word)
        if senses:
            phrases.extend(_gloss_clauses(senses[0].definition())[:1])
    if synset is not None:
        clauses = _gloss_clauses(synset.definition())
        phrases.extend(clauses)
        phrases.extend(feature for clause in clauses for feature in _gloss_features(clause))
        hypernyms = _by_name(synset.hypernyms() + synset.instance_hypernyms())
        parts = _by_name(synset.part_meronyms()) + [p for h in hypernyms for p in _by_name(h.part_meronyms())]
        phrases.extend(f"has {_article(_lemma_text(p))}" for p in parts[:_MAX_PARTS])
        phrases.extend(f"made of {_lemma_text(s)}"
                       for s in _by_name(synset.substance_meronyms())[:_MAX_SUBSTANCES])
        phrases.extend(f"a kind of {_lemma_text(h)}" for h in hypernyms)
        phrases.extend(f"part of {_article(_lemma_text(h))}"
                       for h in _by_name(synset.part_holonyms())[:_MAX_HOLONYMS])
    if not phrases:
        phrases.append(" ".join(name.split()))
    return list(dict.fromkeys(" ".join(p.split()) for p in phrases if p.strip()))


def _wordnet_cache_path(classnames: Sequence[str], cache_dir) -> Path:
    h = hashlib.sha256(WORDNET_BANK_VERSION.encode())
    h.update("\n".join(classnames).encode("utf-8"))
    return cache_root(cache_dir) / "mutual_banks" / f"wordnet_{h.hexdigest()[:32]}.json"


def wordnet_descriptor_bank(
    classnames: Sequence[str],
    wordnet=None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DescriptorBank:
    """A licence-clean descriptor bank for ``classnames`` generated from WordNet, offline.

    Loading WordNet takes seconds, so the generated ``{class: [descriptors]}`` JSON is cached on disk per class
    list (only when the system WordNet is used, i.e. ``wordnet`` is None).

    Args:
        classnames: the classes to describe.
        wordnet (WordNetCorpusReader, optional): an nltk WordNet reader; default
            :func:`captum_clip.wordnet.load_wordnet`.
        cache_dir: cache root; default :func:`captum_clip.core.cache.cache_root`.
        use_cache: read/write the cached JSON.

    Returns:
        :class:`DescriptorBank` with ``source == "wordnet"``.

    Raises:
        ValueError: no class names.
        captum_clip.wordnet.WordNetNotFoundError: WordNet is not installed.
    """
    classnames = [str(c) for c in classnames]
    if not classnames:
        raise ValueError("classnames is empty: the WordNet bank needs at least one class name.")
    cacheable = use_cache and wordnet is None
    path = _wordnet_cache_path(classnames, cache_dir) if cacheable else None
    if path is not None and path.is_file():
        try:
            bank = load_descriptor_bank(path)
            return DescriptorBank(bank.descriptors, bank.classes, "wordnet")
        except ValueError:
            pass  # an unreadable cache is regenerated below
    if wordnet is None:
        from ..wordnet import load_wordnet

        wordnet = load_wordnet()
    mapping = {name: wordnet_descriptors_for(name, wordnet) for name in classnames}
    bank = _from_mapping(mapping, "wordnet")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(mapping, handle, indent=1)
        os.replace(tmp, path)
    return bank
