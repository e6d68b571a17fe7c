"""Vocabulary T, hierarchy H and Sub(c): on the fake WordNet, then against the reference's golden vocabulary."""

from __future__ import annotations

import pytest
import torch

from captum_clip.convis.vocabulary import ROOT_SYNSET, ConceptVocabulary, default_vocabulary, read_word_list

# --------------------------------------------------------------------------------------------- fake WordNet


def test_from_words_takes_every_noun_sense_and_all_hypernyms(fake_wordnet):
    vocab = ConceptVocabulary.from_words(["cat", "cup", "felix", "run"], wordnet=fake_wordnet)
    # "cup" has two noun senses, both kept; felix is only an instance and "run" only a verb, so they add nothing.
    assert vocab.names == tuple(sorted([
        "entity.n.01", "physical_entity.n.01", "abstraction.n.01", "object.n.01", "animal.n.01", "cat.n.01",
        "container.n.01", "cup.n.01", "cup.n.02",
    ]))
    assert vocab.edge_names() == {
        ("entity.n.01", "physical_entity.n.01"), ("entity.n.01", "abstraction.n.01"),
        ("physical_entity.n.01", "object.n.01"), ("object.n.01", "animal.n.01"), ("animal.n.01", "cat.n.01"),
        ("object.n.01", "container.n.01"), ("container.n.01", "cup.n.01"), ("abstraction.n.01", "cup.n.02"),
    }
    assert vocab.children("object.n.01") == ["animal.n.01", "container.n.01"]
    assert vocab.parents("cup.n.02") == ["abstraction.n.01"]


def test_subtree_is_the_concept_and_its_descendants(fake_wordnet):
    vocab = ConceptVocabulary.from_words(["cat", "bird", "cup"], wordnet=fake_wordnet)
    def names(rows):
        return [vocab.names[i] for i in rows]
    assert names(vocab.subtree("cat.n.01")) == ["cat.n.01"]
    assert names(vocab.subtree("animal.n.01")) == ["animal.n.01", "bird.n.01", "cat.n.01"]
    assert set(names(vocab.subtree("object.n.01"))) == {
        "object.n.01", "animal.n.01", "bird.n.01", "cat.n.01", "container.n.01", "cup.n.01"
    }
    assert len(vocab.subtree(ROOT_SYNSET)) == len(vocab)
    mask = vocab.sub_mask(["animal.n.01", "cup.n.02"])
    assert mask.shape == (2, len(vocab)) and mask.dtype == torch.bool
    assert [vocab.names[i] for i in torch.nonzero(mask[1]).flatten()] == ["cup.n.02"]
    assert int(mask[0].sum()) == 3


def test_join_spaces_controls_multiword_lookup(fake_wordnet):
    assert "cat.n.01" in ConceptVocabulary.from_words(["house cat"], wordnet=fake_wordnet)
    # The reference passes words unchanged: "house cat" then has no synset at all.
    with pytest.raises(ValueError, match="none of the words"):
        ConceptVocabulary.from_words(["house cat"], join_spaces=False, wordnet=fake_wordnet)


def test_from_synsets_keeps_the_given_order_and_appends_missing_hypernyms(fake_wordnet):
    vocab = ConceptVocabulary.from_synsets(["cup.n.01", "cat.n.01", "animal.n.01"], wordnet=fake_wordnet)
    assert vocab.names[:3] == ("cup.n.01", "cat.n.01", "animal.n.01")
    assert vocab.names[3:] == ("container.n.01", "entity.n.01", "object.n.01", "physical_entity.n.01")
    assert vocab.index("animal.n.01") == 2


def test_bad_targets_give_clear_value_errors(fake_wordnet):
    vocab = ConceptVocabulary.from_words(["cat", "cup"], wordnet=fake_wordnet)
    with pytest.raises(ValueError, match=r"'cat' is not a synset name.*'cat\.n\.01'"):
        vocab.resolve("cat", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="verb synset; ConVis concepts must be noun synsets"):
        vocab.resolve("run.v.01", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="not a synset of WordNet"):
        vocab.resolve("unicorn.n.01", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="not a synset of WordNet"):
        vocab.resolve("cat.n.07", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match=r"not in the concept vocabulary.*\['animal\.n\.01'\].*extended"):
        vocab.resolve("bird.n.01", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="instance synset"):
        vocab.resolve("felix.n.01", wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="no concepts given"):
        vocab.resolve_many([])
    with pytest.raises(ValueError, match="no concepts given"):
        vocab.sub_mask([])
    with pytest.raises(TypeError):
        vocab.resolve(3)
    with pytest.raises(ValueError, match="at least one synset"):
        ConceptVocabulary.from_synsets([], wordnet=fake_wordnet)
    with pytest.raises(ValueError, match="instance synset"):
        ConceptVocabulary.from_synsets(["felix.n.01"], wordnet=fake_wordnet)


def test_resolve_accepts_synsets_and_aliases(fake_wordnet):
    vocab = ConceptVocabulary.from_words(["cat", "cup"], wordnet=fake_wordnet)
    assert vocab.resolve(fake_wordnet.synset("cat.n.01")) == "cat.n.01"
    # "house_cat.n.01" is WordNet's other name for the first sense of house_cat, i.e. cat.n.01.
    assert vocab.resolve("house_cat.n.01", wordnet=fake_wordnet) == "cat.n.01"
    assert vocab.resolve_many("cat.n.01") == ["cat.n.01"]


def test_extended_adds_the_concept_and_its_hypernyms(fake_wordnet):
    vocab = ConceptVocabulary.from_words(["cat"], wordnet=fake_wordnet)
    bigger = vocab.extended(["cup.n.01"], wordnet=fake_wordnet)
    assert bigger.names[: len(vocab)] == vocab.names
    assert set(bigger.names) - set(vocab.names) == {"cup.n.01", "container.n.01"}
    assert bigger.resolve("cup.n.01") == "cup.n.01"
    assert ("container.n.01", "cup.n.01") in bigger.edge_names()
    assert vocab.extended(["cat.n.01"], wordnet=fake_wordnet) is vocab
    assert bigger.digest() != vocab.digest()


def test_digest_depends_on_order(fake_wordnet):
    a = ConceptVocabulary.from_synsets(["cat.n.01", "cup.n.01"], wordnet=fake_wordnet)
    b = ConceptVocabulary.from_synsets(["cup.n.01", "cat.n.01"], wordnet=fake_wordnet)
    assert set(a.names) == set(b.names)
    assert a.digest() != b.digest()
    assert a.digest() == ConceptVocabulary.from_synsets(["cat.n.01", "cup.n.01"], wordnet=fake_wordnet).digest()


def test_texts_are_glosses_or_lemmas(fake_wordnet):
    vocab = ConceptVocabulary.from_synsets(["cat.n.01", "cup.n.02"], wordnet=fake_wordnet)
    assert vocab.texts(wordnet=fake_wordnet)[:2] == ["a small domesticated feline", "the quantity a cup will hold"]
    assert vocab.texts("lemmas", wordnet=fake_wordnet)[:2] == ["cat, house cat", "cup, cupful"]
    with pytest.raises(ValueError, match="text source"):
        vocab.texts("examples", wordnet=fake_wordnet)


def test_default_vocabulary_rule_on_the_fake_database(fake_wordnet):
    # Seeds: tagged synsets below physical_entity (object 4, cat 5, cup.n.01 2). cup.n.02 is tagged but abstract.
    vocab = default_vocabulary(fake_wordnet)
    assert set(vocab.names) == {
        "entity.n.01", "physical_entity.n.01", "object.n.01", "animal.n.01", "cat.n.01", "container.n.01",
        "cup.n.01",
    }
    assert list(vocab.names) == sorted(vocab.names)
    assert default_vocabulary(fake_wordnet) is vocab


def test_read_word_list(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("cat\n\n  ice cream \ndog")
    assert read_word_list(path) == ["cat", "ice cream", "dog"]


# ------------------------------------------------------------------------------------------ real WordNet 3.0


@pytest.fixture(scope="module")
def paper_vocabulary(real_wordnet, convis_golden_dir):
    words = read_word_list(convis_golden_dir / "physical_objects.txt")
    assert len(words) == 1980
    return ConceptVocabulary.from_words(words, join_spaces=False, wordnet=real_wordnet)


def test_paper_word_list_gives_the_reference_vocabulary(paper_vocabulary, golden_vocabulary_names, convis_golden_dir):
    assert len(paper_vocabulary) == 7080
    assert set(paper_vocabulary.names) == set(golden_vocabulary_names)
    golden_edges = {
        tuple(line.split("\t")) for line in (convis_golden_dir / "hierarchy_edges.tsv").read_text().splitlines()
    }
    assert len(golden_edges) == 7314
    assert paper_vocabulary.edge_names() == golden_edges


def test_reference_order_reloads_row_for_row(reference_vocabulary, golden_vocabulary_names, paper_vocabulary):
    assert reference_vocabulary.names == tuple(golden_vocabulary_names)
    assert reference_vocabulary.edge_names() == paper_vocabulary.edge_names()
    assert reference_vocabulary.index("entity.n.01") == 5216


def test_joining_spaces_adds_the_two_multiword_entries(real_wordnet, convis_golden_dir, paper_vocabulary):
    words = read_word_list(convis_golden_dir / "physical_objects.txt")
    joined = ConceptVocabulary.from_words(words, wordnet=real_wordnet)
    assert set(joined.names) - set(paper_vocabulary.names) == {"creme_brulee.n.01", "dune_buggy.n.01"}


@pytest.mark.parametrize(
    "concept, size",
    [("bird.n.01", 91), ("animal.n.01", 485), ("food.n.01", 257), ("fruit.n.01", 88), ("garment.n.01", 82),
     ("building.n.01", 72), ("feline.n.01", 19), ("dog.n.01", 7), ("tiger.n.02", 1), ("cat.n.01", 11),
     ("cup.n.01", 2)],
)
def test_subtree_sizes_match_the_spec_and_an_independent_count(paper_vocabulary, real_wordnet, concept, size):
    rows = paper_vocabulary.subtree(concept)
    assert len(rows) == len(set(rows)) == size
    # Independent count: nltk's own hyponym closure, restricted to T. Equal because T is hypernym-closed, so
    # every path from c down to a member of T stays inside T.
    synset = real_wordnet.synset(concept)
    by_nltk = {s.name() for s in synset.closure(lambda s: s.hyponyms())} | {concept}
    assert {paper_vocabulary.names[i] for i in rows} == by_nltk & set(paper_vocabulary.names)


def test_sub_mask_matches_the_golden_one(reference_vocabulary, golden_case):
    case = golden_case("chelsea")
    mask = reference_vocabulary.sub_mask(list(case["concepts"]))
    assert torch.equal(mask, torch.from_numpy(case["sub_mask"]))
    assert [reference_vocabulary.index(c) for c in case["concepts"]] == case["concept_index"].tolist()


def test_glosses_match_the_golden_texts(reference_vocabulary, real_wordnet, convis_golden_dir):
    glosses = (convis_golden_dir / "glosses.txt").read_text().split("\n")
    assert reference_vocabulary.texts(wordnet=real_wordnet) == glosses[: len(reference_vocabulary)]


def test_real_errors_name_the_nearest_vocabulary_members(reference_vocabulary, real_wordnet):
    with pytest.raises(ValueError, match=r"nearest hypernyms in the vocabulary are \['building\.n\.01'\]"):
        reference_vocabulary.resolve("skyscraper.n.01", wordnet=real_wordnet)
    with pytest.raises(ValueError, match="instance synset"):
        reference_vocabulary.resolve("paris.n.01", wordnet=real_wordnet)


def test_default_vocabulary_on_wordnet_30(real_wordnet):
    vocab = default_vocabulary(real_wordnet)
    assert len(vocab) == 7156
    for concept in ("cat.n.01", "cup.n.01", "dog.n.01", "bird.n.01", "banana.n.02", "tiger.n.02", "car.n.01"):
        assert concept in vocab
    # Hypernym-closed, rooted at entity, no instances.
    names = set(vocab.names)
    for name in vocab.names:
        synset = real_wordnet.synset(name)
        assert {h.name() for h in synset.hypernyms()} <= names
        assert synset.hypernyms() or name == ROOT_SYNSET
    assert len(vocab.subtree(ROOT_SYNSET)) == len(vocab)
