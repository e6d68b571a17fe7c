"""The HTML report: what the runs keep for it, the page's content, and the page in a real headless Chromium.

The runs are tiny (4 generated scenes, the shipped 64-px model). The browser tests open the page offline with
Debian's chromium and chromium-driver and skip where those are not installed.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from captum_clip.cli import main
from captum_clip.evaluation.benchmark import RANDOM_WEIGHTS, method_label, write_reports
from captum_clip.evaluation.html_report import read_results, write_report
from captum_clip.evaluation.records import load_examples, provenance

from ..conftest import torch_threads

COMMAND = ["captum-clip", "evaluate", "pointing", "--dataset", "shapes", "--n", "4", "--methods", "surgery,gradcam",
           "--batch-size", "2", "--examples", "3", "--report", "--quiet", "--threads", "1"]
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                                else None)
NO_BROWSER = ("no headless browser: install Debian's chromium and chromium-driver "
              "(apt-get install chromium chromium-driver) and selenium (pip install selenium)")


def run_cli(argv):
    """``captum-clip ARGV`` with ``sys.argv`` as a shell would set it (the command the report shows)."""
    with pytest.MonkeyPatch.context() as patch, torch_threads(1):
        patch.setattr(sys, "argv", ["captum-clip", *argv])
        main(list(argv))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """An evaluation with --report: 4 scenes in batches of 2, the maps of the first 3 kept."""
    out = tmp_path_factory.mktemp("report") / "run"
    run_cli([*COMMAND[1:], "--out-dir", str(out)])
    return out


# ------------------------------------------------------------------------------------- what the run keeps

def test_evaluate_keeps_the_scored_maps_of_the_first_images(evaluated):
    results = json.loads((evaluated / "results.json").read_text())
    examples = load_examples(evaluated)
    # The first 3 images of the dataset, across both batches, and not the fourth.
    assert [e.index for e in examples] == [0, 1, 2]
    with (evaluated / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for example in examples:
        assert list(example.maps) == list(results["methods"])  # random-weights rows included
        assert example.image.shape == (64, 64, 3) and example.image.dtype == np.uint8 and example.image.std() > 10
        scored = {r["query"] for r in rows if r["stem"] == example.stem}
        assert set(example.queries) == scored
        assert example.gt.shape == (len(example.queries), 64, 64) and example.gt.any(axis=(1, 2)).all()
        for maps in example.maps.values():
            assert maps.shape == example.gt.shape and np.isfinite(maps).all()


def test_keeping_examples_computes_no_map_twice(tmp_path, monkeypatch):
    from captum_clip.base.method import ClipAttribution

    calls = []
    original = ClipAttribution.attribute_all

    def counted(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ClipAttribution, "attribute_all", counted)
    base = ["evaluate", "pointing", "--dataset", "shapes", "--n", "3", "--methods", "surgery,gradcam", "--quiet",
            "--threads", "1"]
    run_cli([*base, "--out-dir", str(tmp_path / "plain")])
    without = list(calls)
    calls.clear()
    run_cli([*base, "--examples", "3", "--out-dir", str(tmp_path / "kept")])
    assert without and calls == without
    assert len(load_examples(tmp_path / "kept")) == 3 and not load_examples(tmp_path / "plain")
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())["methods"]
    assert json.loads((tmp_path / "kept" / "results.json").read_text())["methods"] == plain


def test_results_record_the_command_and_the_versions(evaluated):
    stored = json.loads((evaluated / "results.json").read_text())["provenance"]
    assert stored["argv"][:3] == ["captum-clip", "evaluate", "pointing"]
    assert stored["command"].startswith("captum-clip evaluate pointing --dataset shapes")
    versions = stored["versions"]
    assert set(versions) == {"captum_clip", "torch", "open_clip", "captum", "quantus", "numpy", "python"}
    assert versions["numpy"] == np.__version__ and versions["python"].count(".") == 2
    # Run as ``python -m captum_clip.cli``, the command says so.
    assert provenance(["/x/captum_clip/cli/__main__.py", "report", "a b"])["command"] == \
        "python -m captum_clip.cli report 'a b'"


# ------------------------------------------------------------------------------------- the page, no browser

def _assert_offline(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|iframe|object|embed)\b", page)
    assert not re.search(r"<script[^>]*\bsrc=", page)
    for value in re.findall(r"\b(?:src|href)=['\"]([^'\"]*)['\"]", page):
        assert value.startswith("data:image/"), value


def test_the_evaluate_page_is_self_contained_and_complete(evaluated, capsys):
    page = (evaluated / "report.html").read_text()
    _assert_offline(page)
    results = json.loads((evaluated / "results.json").read_text())
    for key in results["methods"]:
        assert f"data-key='{key}'" in page
    examples = load_examples(evaluated)
    # A random-weights row in the table and in each image's block of the grid.
    random = sum(k.endswith(RANDOM_WEIGHTS) for k in results["methods"])
    assert page.count("<tr class='random' data-key=") == random * (1 + len(examples))
    expected = sum(len(e.queries) * len(e.maps) for e in examples)
    assert page.count("<img class='overlay") == expected
    assert "captum-clip evaluate pointing --dataset shapes" in page and "open_clip" in page
    # ``captum-clip report`` writes the same page again and says where.
    run_cli(["report", str(evaluated)])
    assert f"wrote {evaluated / 'report.html'}" in capsys.readouterr().out


BENCHMARK_ROWS = [
    {"method": m, "metric": metric, "mean": mean, "std": 0.1, "sem": 0.05, "n": 4, "higher_is_better": higher,
     "seconds": 0.1}
    for m, offset in (("surgery", 0.0), ("surgery" + RANDOM_WEIGHTS, -0.3), ("random", -0.5))
    for metric, mean, higher in (("PointingGame", 0.9 + offset, True), ("PixelFlipping", 0.2 - offset, False))
]


@pytest.mark.parametrize("files", ["json", "csv only"])
def test_benchmark_outputs_are_read_from_json_or_csv(tmp_path, files):
    write_reports(BENCHMARK_ROWS, tmp_path, title="4 held-out scenes")
    if files == "csv only":  # a folder from before benchmark wrote results.json
        (tmp_path / "results.json").unlink()
    results = read_results(tmp_path)
    assert results.kind == "benchmark"
    assert [r.key for r in results.rows] == ["surgery", "surgery" + RANDOM_WEIGHTS, "random"]
    assert [r.random for r in results.rows] == [False, True, False]
    assert [(c.name, c.arrow) for c in results.columns] == [("PointingGame", "↑"), ("PixelFlipping", "↓")]
    assert results.rows[1].cells["PointingGame"] == (pytest.approx(0.6), pytest.approx(0.05))
    page = write_report(tmp_path).read_text()
    _assert_offline(page)
    assert page.count("<tr class=") == 3 and "no-examples" in page
    assert (f"{method_label('surgery' + RANDOM_WEIGHTS)}<span class=tag>sanity</span>") in page
    assert ("4 held-out scenes" in page) == (files == "json")


def test_evaluate_results_are_read_with_their_standard_errors(evaluated):
    results = read_results(evaluated)
    stored = json.loads((evaluated / "results.json").read_text())
    assert results.kind == "evaluate" and results.main_metric == "pointing"
    assert [r.key for r in results.rows] == list(stored["methods"])
    assert [(c.name, c.arrow) for c in results.columns] == [("pointing", "↑"), ("pointing_overall", "↑")]
    assert "| pointing ↑ | pointing_overall ↑ |" in (evaluated / "results.md").read_text()
    surgery = results.rows[0]
    assert surgery.cells["pointing"] == (stored["methods"]["surgery"]["pointing"],
                                         stored["methods"]["surgery"]["pointing_stderr"])


def test_benchmark_report_has_the_maps_of_its_scenes(tmp_path, capsys):
    out = tmp_path / "bench"
    run_cli(["benchmark", "--n", "2", "--methods", "surgery", "--metrics", "PointingGame", "--batch-size", "2",
             "--out-dir", str(out), "--report"])
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    examples = load_examples(out)
    assert len(examples) == 2
    assert all(list(e.maps) == ["surgery", "surgery" + RANDOM_WEIGHTS] and len(e.queries) == 1 for e in examples)
    assert all(e.gt[0].any() for e in examples)
    page = (out / "report.html").read_text()
    _assert_offline(page)
    assert page.count("<img class='overlay") == 4
    assert json.loads((out / "results.json").read_text())["provenance"]["argv"][:2] == ["captum-clip", "benchmark"]


def test_warnings_are_collected_into_results_and_the_report(tmp_path, monkeypatch, capsys):
    import warnings

    from captum_clip.evaluation import protocols

    original = protocols.Method.query_maps

    def warning_maps(self, *args, **kwargs):
        warnings.warn("a Quantus-like warning", UserWarning)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(protocols.Method, "query_maps", warning_maps)
    out = tmp_path / "warned"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape the run: it would break the progress bar
        run_cli(["evaluate", "pointing", "--dataset", "shapes", "--n", "2", "--methods", "surgery", "--quiet",
                 "--out-dir", str(out), "--report"])
    stored = json.loads((out / "results.json").read_text())["warnings"]
    assert [(w["category"], w["message"]) for w in stored] == [("UserWarning", "a Quantus-like warning")]
    assert stored[0]["count"] >= 2  # one per call, merged into one entry (trained and random-weights rows)
    assert "warning(s), 1 distinct, collected into" in capsys.readouterr().err
    page = (out / "report.html").read_text()
    assert "id='warnings'" in page and "a Quantus-like warning" in page


def test_benchmark_scores_mprt_only_when_asked(tmp_path, monkeypatch):
    import captum_clip.evaluation.benchmark as benchmark_module

    asked = []

    def recorded(classifier, data, methods, metrics, **kwargs):
        asked.append(list(metrics))
        return []

    monkeypatch.setattr(benchmark_module, "run_benchmark", recorded)
    base = ["benchmark", "--n", "1", "--methods", "surgery", "--out-dir", str(tmp_path)]
    for extra in ([], ["--mprt"]):
        with pytest.raises(SystemExit, match="no method scores any of the metrics"):  # the stub scores nothing
            run_cli([*base, *extra])
    assert "MPRT" not in asked[0] and "PointingGame" in asked[0] and "IROF" in asked[0]
    assert asked[1] == [*asked[0], "MPRT"]


def test_a_benchmark_with_nothing_to_score_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "empty"
    with pytest.raises(SystemExit, match="concept metrics score mutual only"):
        run_cli(["benchmark", "--n", "1", "--methods", "surgery", "--metrics", "AccDrop", "--out-dir", str(out)])
    assert not (out / "results.json").exists()
    with pytest.raises(SystemExit, match="unknown metric 'Bogus'"):
        run_cli(["benchmark", "--n", "1", "--methods", "surgery", "--metrics", "Bogus", "--out-dir", str(out)])


def test_a_second_run_into_the_same_folder_leaves_no_stale_maps(tmp_path):
    out = tmp_path / "again"
    base = ["evaluate", "pointing", "--dataset", "shapes", "--n", "4", "--batch-size", "2", "--quiet",
            "--no-random-weights", "--out-dir", str(out)]
    run_cli([*base, "--methods", "surgery,gradcam", "--examples", "4"])
    assert [e.index for e in load_examples(out)] == [0, 1, 2, 3]
    run_cli([*base, "--methods", "clip", "--examples", "2", "--report"])
    examples = load_examples(out)
    assert [e.index for e in examples] == [0, 1] and all(list(e.maps) == ["clip"] for e in examples)
    run_cli([*base, "--methods", "clip"])
    assert load_examples(out) == []  # a run without examples leaves none of the earlier ones


def test_the_page_shows_each_method_as_the_figures_do(evaluated):
    from captum_clip.viz import display_range

    example = load_examples(evaluated)[0]
    surgery, gradcam = example.display["surgery"], example.display["gradcam"]
    assert surgery == (False, 0.0) and gradcam == (False, 2.0)  # the CLI figures' settings of these methods
    maps = example.maps["surgery"]
    assert display_range(maps, outlier_perc=surgery[1])[1] == pytest.approx(float(np.nanmax(maps)))
    high = float(np.nanmax(maps))
    assert f"{high:.3g}</span>" in (evaluated / "report.html").read_text()  # the row's range reaches its peak


def test_example_maps_keep_their_magnitude(tmp_path):
    from captum_clip.evaluation.records import save_example

    image = np.zeros((4, 4, 3), np.uint8)
    maps = {"ig": np.full((1, 4, 4), 1e6, np.float32), "tiny": np.full((1, 4, 4), 1e-7, np.float32)}
    save_example(tmp_path, 0, "x", image, ["q"], np.zeros((1, 4, 4), bool), maps)
    [example] = load_examples(tmp_path)
    assert example.maps["ig"].max() == 1e6 and example.maps["tiny"].max() == pytest.approx(1e-7)


def test_a_run_from_python_does_not_claim_its_command_line(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/site-packages/ipykernel_launcher.py", "-f", "k.json"])
    stored = provenance()
    assert stored["command"] == "(called from Python: ipykernel_launcher.py)" and stored["argv"] == []


def test_unreadable_results_or_examples_are_named(tmp_path, evaluated):
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(SystemExit, match="is not the results.json of captum-clip"):
        run_cli(["report", str(tmp_path)])
    broken = tmp_path / "broken"
    shutil.copytree(evaluated, broken)
    next((broken / "examples").glob("*.npz")).write_bytes(b"not an npz")
    with pytest.raises(SystemExit, match="cannot read the example file"):
        run_cli(["report", str(broken)])


def test_report_of_a_folder_without_results_says_what_to_run(tmp_path):
    with pytest.raises(SystemExit, match="no results.json or results.csv"):
        run_cli(["report", str(tmp_path)])


# ------------------------------------------------------------------------------------- in headless Chromium

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(NO_BROWSER)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(NO_BROWSER)
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 "--window-size=1280,1400"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture()
def page(browser, evaluated):
    browser.get((evaluated / "report.html").resolve().as_uri())
    return browser


def _column(driver, index: int):
    return [cell.get_attribute("data-value")
            for cell in driver.find_elements("css selector", f"#metrics-table tbody td:nth-child({index + 1})")]


def test_the_table_has_every_method_and_the_sanity_rows_look_different(page, evaluated):
    methods = json.loads((evaluated / "results.json").read_text())["methods"]
    rows = page.find_elements("css selector", "#metrics-table tbody tr")
    assert len(rows) == len(methods)
    assert [r.get_attribute("data-key") for r in rows] == list(methods)
    random = [r for r in rows if r.get_attribute("data-key").endswith(RANDOM_WEIGHTS)]
    trained = [r for r in rows if r not in random]
    assert random and all("random" in r.get_attribute("class") for r in random)
    style = "return getComputedStyle(arguments[0].cells[1]).fontStyle + '|' + " \
            "getComputedStyle(arguments[0].cells[1]).backgroundImage"
    assert {page.execute_script(style, r) for r in random}.isdisjoint({page.execute_script(style, r) for r in trained})


def test_clicking_a_header_sorts_its_column(page):
    headers = page.find_elements("css selector", "#metrics-table thead th")
    index = next(i for i, h in enumerate(headers) if h.text.startswith("pointing_overall"))
    before = [float(v) for v in _column(page, index)]
    assert len(set(before)) > 1  # else any order would pass
    headers[index].click()
    ascending = [float(v) for v in _column(page, index)]
    assert ascending == sorted(before) and headers[index].get_attribute("aria-sort") == "ascending"
    headers[index].click()
    assert [float(v) for v in _column(page, index)] == sorted(before, reverse=True)
    # Sorting by name works on the labels.
    headers[0].click()
    labels = [c.text for c in page.find_elements("css selector", "#metrics-table tbody td:first-child")]
    assert labels == sorted(labels, key=str.lower)


def test_the_grid_has_one_overlay_per_image_method_and_query(page, evaluated):
    expected = sum(int(np.isfinite(maps).all(axis=(1, 2)).sum()) for e in load_examples(evaluated)
                   for maps in e.maps.values())
    overlays = page.find_elements("css selector", "#grid img.overlay")
    # 4 method keys: surgery, gradcam and their random-weights rows.
    assert len(overlays) == expected == sum(len(e.queries) * 4 for e in load_examples(evaluated))
    # Every picture decoded (a broken data URI has no natural size).
    assert page.execute_script("return Array.from(document.images).filter(i => i.src && !i.naturalWidth).length") == 0


def test_clicking_an_image_enlarges_it(page):
    from selenium.webdriver.common.keys import Keys

    lightbox = page.find_element("id", "lightbox")
    assert not lightbox.is_displayed()
    overlay = page.find_elements("css selector", "#grid img.overlay")[5]
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", overlay)
    overlay.click()
    assert lightbox.is_displayed()
    enlarged = page.find_element("id", "lightbox-image")
    assert enlarged.get_attribute("src") == overlay.get_attribute("src")
    assert enlarged.size["width"] > 3 * overlay.size["width"]
    assert page.find_element("id", "lightbox-caption").text == overlay.get_attribute("alt")
    page.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    assert not lightbox.is_displayed()


def test_the_page_renders_and_loads_nothing_from_the_network(page):
    from PIL import Image

    picture = np.asarray(Image.open(io.BytesIO(page.get_screenshot_as_png())).convert("RGB"))
    assert picture.std() > 20
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 500
    resources = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(not name.startswith(("http:", "https:")) for name in resources), resources
    links = page.execute_script(
        "return Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || "
        "e.getAttribute('href'))")
    assert links and all(link.startswith("data:") for link in links)
    assert "captum-clip evaluate pointing" in page.find_element("id", "command").text
