"""Descriptor banks: user JSON banks, the WordNet generator (on a fake WordNet), the scene bank, cached embeddings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from captum_clip.mutual import DescriptorBank, encode_descriptor_bank, load_descriptor_bank, wordnet_descriptor_bank
from captum_clip.core.text import text_tower_fingerprint
from captum_clip.mutual.bank_embeddings import DESCRIPTOR_TEMPLATE, bank_embeddings_cache_path
from captum_clip.shipped.presets import scene_descriptor_bank
from captum_clip.mutual.descriptor_bank import wordnet_descriptors_for


# ------------------------------------------------------------------------------------------- user banks


def test_json_bank_is_deduplicated_in_first_occurrence_order(tmp_path):
    mapping = {"cat": ["furry", "whiskers", " furry "], "dog": ["a  snout", "furry", "whiskers", "a tail"]}
    path = tmp_path / "bank.json"
    path.write_text(json.dumps(mapping))
    bank = load_descriptor_bank(path)
    assert bank.descriptors == ("furry", "whiskers", "a snout", "a tail")
    assert dict(bank.classes) == {"cat": (0, 1), "dog": (2, 0, 1, 3)}
    assert bank.source == f"json:{path}" and len(bank) == 4 and bank[2] == "a snout"
    assert load_descriptor_bank(mapping).descriptors == bank.descriptors
    assert load_descriptor_bank(bank) is bank
    assert load_descriptor_bank(["b", "a", "b"]).descriptors == ("b", "a")
    # A JSON list is accepted too, and the digest depends only on the strings in id order.
    (tmp_path / "list.json").write_text(json.dumps(list(bank.descriptors)))
    assert load_descriptor_bank(tmp_path / "list.json").digest() == bank.digest()
    assert bank.digest() != load_descriptor_bank(["whiskers", "furry", "a snout", "a tail"]).digest()
    assert bank.to_json()["dog"] == ["a snout", "furry", "whiskers", "a tail"]


@pytest.mark.parametrize("source,match", [
    ([], "empty"),
    ({"cat": []}, "empty"),
    ({"cat": "furry"}, "list of strings"),
    ({"cat": ["furry", 3]}, "for class 'cat'"),
    (["  "], "non-empty strings"),
    (42, "JSON path"),
])
def test_bad_banks_raise(source, match):
    with pytest.raises(ValueError, match=match):
        load_descriptor_bank(source)


def test_unreadable_json_raises(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot read descriptor bank"):
        load_descriptor_bank(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="cannot read descriptor bank"):
        load_descriptor_bank(tmp_path / "missing.json")


def test_scene_bank_speaks_the_scene_vocabulary():
    bank = scene_descriptor_bank()
    assert len(bank) == 48 and len(bank.classes) == 36
    red_star = [bank[i] for i in bank.classes["red star"]]
    assert red_star[:2] == ["red", "a red object"] and "a star" in red_star and "has five points" in red_star


# ------------------------------------------------------------------------------------------- WordNet


class FakeSynset:
    def __init__(self, name, definition, parts=(), substances=(), hypernyms=(), holonyms=()):
        self.lemma, self._definition = name, definition
        self._parts, self._substances, self._hypernyms, self._holonyms = parts, substances, hypernyms, holonyms

    def name(self):
        return f"{self.lemma}.n.01"

    def lemma_names(self):
        return [self.lemma]

    def definition(self):
        return self._definition

    def part_meronyms(self):
        return list(self._parts)

    def substance_meronyms(self):
        return list(self._substances)

    def hypernyms(self):
        return list(self._hypernyms)

    def instance_hypernyms(self):
        return []

    def part_holonyms(self):
        return list(self._holonyms)


class FakeWordNet:
    """Just enough of nltk's WordNet reader for the bank generator."""

    def __init__(self):
        engine = FakeSynset("engine", "motor that converts energy")
        vehicle = FakeSynset("motor_vehicle", "a self-propelled vehicle", parts=[engine])
        wheel = FakeSynset("wheel", "a simple machine")
        steel = FakeSynset("steel", "an alloy of iron")
        train = FakeSynset("train", "a line of railway cars")
        self.nouns = {
            "car": FakeSynset("car", "(transport) a motor vehicle with four wheels; usually propelled by an engine",
                              parts=[wheel, FakeSynset("air_bag", "a safety device")], substances=[steel],
                              hypernyms=[vehicle], holonyms=[train]),
            "star": FakeSynset("star", "a celestial body; emits light"),
        }
        self.adjectives = {"red": FakeSynset("red", "of a color at the end of the color spectrum (next to orange)")}
        self.calls = 0

    def synsets(self, word, pos=None):
        self.calls += 1
        if pos == "n":
            return [self.nouns[word]] if word in self.nouns else []
        if pos == "a":
            return [self.adjectives[word]] if word in self.adjectives else []
        return ([self.nouns[word]] if word in self.nouns else []) + \
               ([self.adjectives[word]] if word in self.adjectives else [])


def test_wordnet_descriptors_glosses_meronyms_hypernyms():
    wordnet = FakeWordNet()
    assert wordnet_descriptors_for("car", wordnet) == [
        "a motor vehicle with four wheels", "usually propelled by an engine",  # gloss clauses, domain tag dropped
        "four wheels",  # the feature after "with"
        "has an air bag", "has a wheel", "has an engine",  # own (by name) then inherited part meronyms
        "made of steel", "a kind of motor vehicle", "part of a train",
    ]
    # A phrase WordNet lacks falls back to its head noun plus its modifiers.
    assert wordnet_descriptors_for("red star", wordnet) == [
        "red", "of a color at the end of the color spectrum", "a celestial body", "emits light"]
    assert wordnet_descriptors_for("Blorp", wordnet) == ["Blorp"]


def test_wordnet_descriptors_do_not_depend_on_the_order_nltk_lists_relations_in():
    # nltk keeps pointers in sets: their order changes with PYTHONHASHSEED, and the caps keep the first few.
    wordnet = FakeWordNet()
    first = wordnet_descriptors_for("car", wordnet)
    car = wordnet.nouns["car"]
    car._parts = list(reversed(car._parts))
    assert wordnet_descriptors_for("car", wordnet) == first


def test_the_real_wordnet_bank_is_the_same_under_every_hash_seed(real_wordnet):
    script = ("import json, sys; from captum_clip.mutual.descriptor_bank import wordnet_descriptors_for; "
              "from captum_clip.wordnet import load_wordnet; wn = load_wordnet(); "
              "print(json.dumps({n: wordnet_descriptors_for(n, wn) for n in sys.argv[1:]}))")
    names = ["loggerhead sea turtle", "sports car", "golden retriever", "ostrich", "castle", "church"]
    banks = [subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")]
    assert banks[0] == banks[1], "the WordNet bank changed with PYTHONHASHSEED"


def test_articles_and_stop_words_are_dropped_before_the_look_up():
    # WordNet's "a" is the angstrom: "a wooden floor" once got "a metric unit of length ..." as a descriptor.
    wordnet = FakeWordNet()
    wordnet.nouns["a"] = FakeSynset("angstrom", "a metric unit of length equal to one ten billionth of a meter")
    wordnet.nouns["floor"] = FakeSynset("floor", "the inside lower horizontal surface")
    wordnet.adjectives["wooden"] = FakeSynset("wooden", "made or consisting of or employing wood")
    descriptors = wordnet_descriptors_for("a wooden floor", wordnet)
    assert descriptors == ["wooden", "made or consisting of or employing wood", "the inside lower horizontal surface"]
    assert wordnet_descriptors_for("the floor", wordnet) == ["the inside lower horizontal surface"]


def test_a_wooden_floor_in_the_real_wordnet(real_wordnet):
    descriptors = wordnet_descriptors_for("a wooden floor", real_wordnet)
    assert "a" not in descriptors and not any("metric unit" in d for d in descriptors)
    assert "wooden" in descriptors and "the inside lower horizontal surface" in descriptors


@pytest.mark.parametrize("name,synset", [("bird of prey", "bird_of_prey.n.01"), ("coat of arms", "coat_of_arms.n.01"),
                                         ("lily of the valley", "lily_of_the_valley.n.01"),
                                         ("cup of tea", "cup_of_tea.n.01")])
def test_compound_names_with_function_words_keep_their_own_sense(real_wordnet, name, synset):
    from captum_clip.mutual.descriptor_bank import _class_synset

    found, modifiers = _class_synset(real_wordnet, name)
    assert found.name() == synset and modifiers == []


def test_wordnet_bank_is_cached_per_class_list(tmp_path, monkeypatch):
    import captum_clip.wordnet as wordnet_module

    fake = FakeWordNet()
    monkeypatch.setattr(wordnet_module, "load_wordnet", lambda: fake)
    bank = wordnet_descriptor_bank(["car", "red star"], cache_dir=tmp_path)
    assert bank.source == "wordnet" and bank.descriptors[0] == "a motor vehicle with four wheels"
    assert [bank[i] for i in bank.classes["red star"]][0] == "red"
    calls = fake.calls
    again = wordnet_descriptor_bank(["car", "red star"], cache_dir=tmp_path)
    assert fake.calls == calls and again.descriptors == bank.descriptors  # read from the cache
    wordnet_descriptor_bank(["star"], cache_dir=tmp_path)
    assert fake.calls > calls
    assert len(list((tmp_path / "mutual_banks").glob("wordnet_*.json"))) == 2
    with pytest.raises(ValueError, match="classnames"):
        wordnet_descriptor_bank([], cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------- embeddings


def test_bank_embeddings_are_cached_per_model_and_bank(tiny_bundles, tmp_path):
    bundle = tiny_bundles["vit"]
    bank = load_descriptor_bank(["furry", "whiskers", "a long tail"])
    first = encode_descriptor_bank(bank, bundle.model, bundle.tokenizer, cache_dir=tmp_path)
    assert not first.from_cache and first.prompted.shape == (3, 32) and first.bare.shape == (3, 32)
    with torch.no_grad():
        expected = F.normalize(bundle.model.encode_text(bundle.tokenizer(["a photo showing whiskers"])), dim=-1)
        bare = F.normalize(bundle.model.encode_text(bundle.tokenizer(["whiskers"])), dim=-1)
    assert torch.allclose(first.prompted[1], expected[0], atol=1e-6)
    assert torch.allclose(first.bare[1], bare[0], atol=1e-6)
    fingerprint = text_tower_fingerprint(bundle.model, bundle.tokenizer)
    assert bank_embeddings_cache_path(bank, fingerprint, DESCRIPTOR_TEMPLATE, tmp_path).is_file()
    second = encode_descriptor_bank(bank, bundle.model, bundle.tokenizer, cache_dir=tmp_path)
    assert second.from_cache and torch.equal(second.prompted, first.prompted) and torch.equal(second.bare, first.bare)
    # Another template or another bank is another cache entry.
    other = encode_descriptor_bank(bank, bundle.model, bundle.tokenizer, cache_dir=tmp_path, template="a {}")
    assert not other.from_cache and not torch.allclose(other.prompted, first.prompted)
    assert not encode_descriptor_bank(DescriptorBank(("furry",)), bundle.model, bundle.tokenizer,
                                      cache_dir=tmp_path).from_cache
    with pytest.raises(ValueError, match="template"):
        encode_descriptor_bank(bank, bundle.model, bundle.tokenizer, template="no slot")
