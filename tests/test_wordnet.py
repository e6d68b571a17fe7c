"""WordNet location and loading: nltk's data, the Debian layout, and the not-installed error."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import nltk
import pytest

from captum_clip.wordnet import (
    LEXNAMES,
    WordNetNotFoundError,
    WordNetReader,
    find_wordnet,
    lexnames_text,
    load_wordnet,
    sense_tag_counts,
)

from .fake_wordnet import write_fake_wordnet


def test_lexnames_text_has_the_45_files_in_standard_order():
    lines = lexnames_text().splitlines()
    assert len(lines) == len(LEXNAMES) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[29] == "29\tverb.body\t2"
    assert lines[44] == "44\tadj.ppl\t3"
    for i, line in enumerate(lines):
        number, name, pos = line.split("\t")
        assert int(number) == i
        assert pos == {"noun": "1", "verb": "2", "adj": "3", "adv": "4"}[name.split(".")[0]]


def test_lexnames_agree_with_the_installed_manual_page():
    page = Path("/usr/share/man/man5/lexnames.5WN.gz")
    if not page.is_file():
        pytest.skip("lexnames(5WN) manual page not installed (comes with Debian's wordnet-base)")
    listed = re.findall(r"^(\d\d)\t(\S+)", gzip.open(page, "rt").read(), flags=re.M)
    assert [name for _, name in listed] == list(LEXNAMES)
    assert [int(n) for n, _ in listed] == list(range(45))


def test_system_layout_without_lexnames_or_index_sense(tmp_path, isolated_nltk_path):
    folder = write_fake_wordnet(tmp_path / "wordnet", with_lexnames=False)
    location = find_wordnet(system_dirs=[folder])
    assert location.kind == "system"
    reader = load_wordnet(system_dirs=[folder])
    assert isinstance(reader, WordNetReader)
    # lexname() indexes the served lexnames list, so a wrong or missing file would show here.
    assert reader.synset("cat.n.01").lexname() == "noun.animal"
    assert reader.synset("cup.n.02").lexname() == "noun.quantity"
    assert reader.synset("cat.n.01").definition() == "a small domesticated feline"
    assert reader.synset("animal.n.01").hypernyms() == [reader.synset("object.n.01")]
    # nltk 3.10 only opens files under registered data roots; loading registered the system folder.
    assert str(folder.resolve()) in nltk.data.path
    # Cached per location.
    assert load_wordnet(system_dirs=[folder]) is reader


def test_nltk_data_is_found_and_preferred_over_the_system_copy(tmp_path, isolated_nltk_path):
    write_fake_wordnet(isolated_nltk_path / "corpora" / "wordnet", with_lexnames=True, with_index_sense=True)
    system = write_fake_wordnet(tmp_path / "system", with_lexnames=False)
    location = find_wordnet(system_dirs=[system])
    assert location.kind == "nltk"
    assert Path(str(location.root)).resolve() == (isolated_nltk_path / "corpora" / "wordnet").resolve()
    reader = load_wordnet(system_dirs=[system])
    assert reader.synset("bird.n.01").lexname() == "noun.animal"
    assert str(system.resolve()) not in nltk.data.path


def test_wnsearchdir_names_the_system_directory(tmp_path, isolated_nltk_path, monkeypatch):
    folder = write_fake_wordnet(tmp_path / "elsewhere", with_lexnames=False)
    monkeypatch.setenv("WNSEARCHDIR", str(folder))
    location = find_wordnet()
    assert location == find_wordnet(system_dirs=[folder])
    assert location.kind == "system"


def test_incomplete_directory_is_not_a_wordnet(tmp_path, isolated_nltk_path):
    folder = write_fake_wordnet(tmp_path / "broken", with_lexnames=False)
    (folder / "data.noun").unlink()
    with pytest.raises(WordNetNotFoundError):
        find_wordnet(system_dirs=[folder])


def test_missing_wordnet_error_says_how_to_install(tmp_path, isolated_nltk_path):
    with pytest.raises(WordNetNotFoundError) as info:
        load_wordnet(system_dirs=[tmp_path / "nowhere"])
    message = str(info.value)
    assert "apt-get install wordnet-base" in message
    assert "python -m nltk.downloader wordnet" in message
    assert str(tmp_path / "nowhere") in message
    # Callers that catch nltk's own "resource not found" LookupError catch this too.
    assert isinstance(info.value, LookupError)


def test_sense_tag_counts_reads_cntlist(fake_wordnet):
    counts = sense_tag_counts(fake_wordnet)
    assert counts == {"cat%1:05:00::": 5, "cup%1:06:00::": 2, "cup%1:23:00::": 7, "object%1:03:00::": 4}
    assert fake_wordnet.synset("cup.n.02").lemmas()[0].key() == "cup%1:23:00::"


def test_real_wordnet_loads(real_wordnet):
    assert real_wordnet.get_version() == "3.0"
    bird = real_wordnet.synset("bird.n.01")
    assert bird.definition().startswith("warm-blooded egg-laying vertebrates")
    assert bird.lexname() == "noun.animal"
    assert real_wordnet.synset("entity.n.01").hypernyms() == []


def test_real_sense_tag_counts_match_lemma_count(real_wordnet):
    counts = sense_tag_counts(real_wordnet)
    for name in ("cat.n.01", "cup.n.01", "dog.n.01", "tiger.n.02", "bird.n.01"):
        for lemma in real_wordnet.synset(name).lemmas():
            assert counts.get(lemma.key(), 0) == lemma.count(), lemma
    assert counts["cat%1:05:00::"] == 18


def test_zipped_nltk_package_is_found(tmp_path, isolated_nltk_path):
    # nltk.downloader may leave WordNet as corpora/wordnet.zip holding a wordnet/ folder.
    import zipfile

    folder = write_fake_wordnet(tmp_path / "wordnet", with_lexnames=True, with_index_sense=True)
    (isolated_nltk_path / "corpora").mkdir()
    with zipfile.ZipFile(isolated_nltk_path / "corpora" / "wordnet.zip", "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, f"wordnet/{path.name}")
    location = find_wordnet(system_dirs=[])
    assert location.kind == "nltk"
    assert load_wordnet(system_dirs=[]).synset("cup.n.02").lexname() == "noun.quantity"
