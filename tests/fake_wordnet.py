"""A complete 11-synset WordNet database in the Princeton file format, for tests that must not depend on an
installed WordNet.

entity ─ physical_entity ─ object ─┬─ animal ─┬─ cat (house_cat) ── felix (instance)
       │                           │          └─ bird
       │                           └─ container ── cup.n.01
       └─ abstraction ── cup.n.02 (a unit of measure)

plus the verb run.v.01. Sense-tag counts: object 4, cat 5, cup.n.01 2, cup.n.02 7.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class FakeSynset:
    key: str  # the synset name nltk will derive
    lemmas: list[str]
    lexname_index: int
    gloss: str
    pointers: list[tuple[str, str]] = field(default_factory=list)  # (symbol, target key)
    pos: str = "n"
    tag_count: int = 0  # semantic-concordance count of the first lemma


FAKE_SYNSETS = [
    FakeSynset("entity.n.01", ["entity"], 3, "that which is perceived to have its own existence",
               [("~", "physical_entity.n.01"), ("~", "abstraction.n.01")]),
    FakeSynset("physical_entity.n.01", ["physical_entity"], 3, "an entity that has physical existence",
               [("@", "entity.n.01"), ("~", "object.n.01")]),
    FakeSynset("abstraction.n.01", ["abstraction"], 3, "a general concept",
               [("@", "entity.n.01"), ("~", "cup.n.02")]),
    FakeSynset("object.n.01", ["object"], 3, "a tangible and visible entity",
               [("@", "physical_entity.n.01"), ("~", "animal.n.01"), ("~", "container.n.01")], tag_count=4),
    FakeSynset("animal.n.01", ["animal"], 5, "a living organism that moves",
               [("@", "object.n.01"), ("~", "cat.n.01"), ("~", "bird.n.01")]),
    FakeSynset("cat.n.01", ["cat", "house_cat"], 5, "a small domesticated feline",
               [("@", "animal.n.01"), ("~i", "felix.n.01")], tag_count=5),
    FakeSynset("bird.n.01", ["bird"], 5, "a warm-blooded egg-laying vertebrate",
               [("@", "animal.n.01")]),
    FakeSynset("container.n.01", ["container"], 6, "any object that can hold things",
               [("@", "object.n.01"), ("~", "cup.n.01")]),
    FakeSynset("cup.n.01", ["cup"], 6, "a small open container for drinking",
               [("@", "container.n.01")], tag_count=2),
    FakeSynset("cup.n.02", ["cup", "cupful"], 23, "the quantity a cup will hold",
               [("@", "abstraction.n.01")], tag_count=7),
    FakeSynset("felix.n.01", ["felix"], 18, "a famous cartoon cat", [("@i", "cat.n.01")]),
    FakeSynset("run.v.01", ["run"], 38, "move fast by using one's feet", pos="v"),
]

FAKE_HEADER = "  1 WordNet 3.0 Copyright 2006 by Princeton University (fake test database).  \n"


def _data_file(synsets: list[FakeSynset], offsets: dict[str, int]) -> str:
    lines = [FAKE_HEADER]
    for s in synsets:
        words = " ".join(f"{lemma} 0" for lemma in s.lemmas)
        ptrs = " ".join(
            f"{sym} {offsets.get(target, 0):08d} {target.split('.')[-2]} 0000" for sym, target in s.pointers
        )
        frames = " 01 + 02 00" if s.pos == "v" else ""
        body = f"{offsets.get(s.key, 0):08d} {s.lexname_index:02d} {s.pos} {len(s.lemmas):02x} {words} "
        body += f"{len(s.pointers):03d}{' ' + ptrs if ptrs else ''}{frames} | {s.gloss}  \n"
        lines.append(body)
    return "".join(lines)


def write_fake_wordnet(folder: Path, *, with_lexnames: bool, with_index_sense: bool = False) -> Path:
    """Write the fake database into *folder* (created); returns it."""
    from captum_clip.wordnet import lexnames_text

    folder.mkdir(parents=True, exist_ok=True)
    offsets: dict[str, int] = {}
    for pos in ("n", "v"):
        synsets = [s for s in FAKE_SYNSETS if s.pos == pos]
        # Every field has a fixed width, so a first pass with zero offsets gives the final line lengths.
        position = len(FAKE_HEADER)
        for line, s in zip(_data_file(synsets, {}).splitlines(keepends=True)[1:], synsets, strict=True):
            offsets[s.key] = position
            position += len(line.encode())
    names = {"n": "noun", "v": "verb"}
    for pos, name in names.items():
        synsets = [s for s in FAKE_SYNSETS if s.pos == pos]
        (folder / f"data.{name}").write_text(_data_file(synsets, offsets))
        index: dict[str, list[FakeSynset]] = {}
        for s in synsets:
            for lemma in s.lemmas:
                index.setdefault(lemma, []).append(s)
        # Senses of a lemma are listed in sense-number order, which is how nltk names synsets.
        lines = [FAKE_HEADER]
        for lemma in sorted(index):
            senses = sorted(index[lemma], key=lambda s: s.key if s.key.startswith(lemma + ".") else "~")
            lines.append(
                f"{lemma} {pos} {len(senses)} 1 @ {len(senses)} 0 "
                + " ".join(f"{offsets[s.key]:08d}" for s in senses)
                + "  \n"
            )
        (folder / f"index.{name}").write_text("".join(lines))
    for name in ("adj", "adv"):
        (folder / f"data.{name}").write_text(FAKE_HEADER)
        (folder / f"index.{name}").write_text(FAKE_HEADER)
    for name in ("noun", "verb", "adj", "adv"):
        (folder / f"{name}.exc").write_text("")
    counts = sorted(
        f"{s.lemmas[0]}%1:{s.lexname_index:02d}:00:: 1 {s.tag_count}\n" for s in FAKE_SYNSETS if s.tag_count
    )
    (folder / "cntlist.rev").write_text("".join(counts))
    if with_lexnames:
        (folder / "lexnames").write_text(lexnames_text())
    if with_index_sense:
        (folder / "index.sense").write_text("")
    return folder
