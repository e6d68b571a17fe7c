"""The documentation site: the getting-started snippets run, and ``mkdocs build --strict`` passes and can fail.

* Every ```` ```python ```` block of ``docs/getting-started.md`` is executed, in order and in one namespace, on the
  shipped scene model on the CPU, so the page cannot drift from the code. A block right after a
  ``<!-- docs-test: skip ... -->`` comment is only compiled (it needs weights this machine does not have).
* ``mkdocs build --strict`` on the real config must pass; copies of the site with a broken link, a broken anchor,
  a link out of ``docs/``, an unknown cross-reference, an unknown API object or a missing snippet must fail, so
  the check that guards the site is known to bite.

The build tests need the ``docs`` extra (``pip install -e .[docs]``) and skip without it.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple

import pytest

from captum_clip.core.loading import BUILTIN_MODELS
from captum_clip.errors import WordNetNotFoundError

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
CONFIG = REPO / "mkdocs.yml"
GETTING_STARTED = DOCS / "getting-started.md"
SKIP_MARK = "<!-- docs-test: skip"

#: Every public method must appear in a block the test runs.
METHOD_NAMES = ("SurgeryCAM", "ConVisAttribution", "MutualConceptAttribution", "RawCLIPSimilarity", "CLIPGradCAM",
                "CLIPIntegratedGradients")

_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)[^\n]*$")


class CodeBlock(NamedTuple):
    line: int  # 1-based line of the block's first code line
    language: str
    code: str
    skipped: bool


def code_blocks(text: str) -> List[CodeBlock]:
    """The fenced code blocks of a Markdown page (fences at column 0), with their language and skip mark."""
    blocks: List[CodeBlock] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        assert end is not None, f"unclosed code fence at line {i + 1}"
        blocks.append(CodeBlock(i + 2, language, "\n".join(lines[i + 1:end]) + "\n",
                                previous.strip().startswith(SKIP_MARK)))
        i = end + 1
    return blocks


def python_blocks() -> List[CodeBlock]:
    return [block for block in code_blocks(GETTING_STARTED.read_text(encoding="utf-8"))
            if block.language in ("python", "py")]


# ------------------------------------------------------------------------------------------ getting started


def test_code_blocks_parser():
    page = ("text\n```python\na = 1\n```\n\n<!-- docs-test: skip (weights) -->\n```python\nb = 2\n```\n"
            "```bash\nls\n```\n````markdown\n```python\nnot a block\n```\n````\n")
    blocks = code_blocks(page)
    assert [(b.line, b.language, b.code, b.skipped) for b in blocks] == [
        (3, "python", "a = 1\n", False), (8, "python", "b = 2\n", True), (11, "bash", "ls\n", False),
        (14, "markdown", "```python\nnot a block\n```\n", False)]


def test_getting_started_covers_every_method():
    blocks = python_blocks()
    run = "".join(block.code for block in blocks if not block.skipped)
    assert len([b for b in blocks if not b.skipped]) >= 6
    missing = [name for name in METHOD_NAMES if not re.search(rf"\b{name}\(", run)]
    assert not missing, f"getting-started.md has no runnable call of {missing}"
    text = GETTING_STARTED.read_text(encoding="utf-8")
    for command in ("bash scripts/demo.sh", "bash scripts/test.sh"):
        assert command in text
    for block in blocks:  # the skipped ones must at least be valid Python
        ast.parse(block.code, filename=f"{GETTING_STARTED}:{block.line}")


@pytest.mark.skipif(not BUILTIN_MODELS["shapes"][1].is_file(), reason="shipped scene model not built")
def test_getting_started_snippets_run(tmp_path, monkeypatch):
    """Run the page's Python blocks as a reader would, one after the other, on the CPU."""
    monkeypatch.chdir(tmp_path)  # the figure block writes scene.png into the working directory
    namespace: dict = {"__name__": "__docs__"}
    for block in python_blocks():
        if block.skipped:
            continue
        code = compile(block.code, f"{GETTING_STARTED.relative_to(REPO)}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except WordNetNotFoundError as error:
            pytest.skip(f"the block at getting-started.md:{block.line} needs WordNet ({error}); "
                        "apt-get install wordnet-base, or python -m nltk.downloader wordnet")
        except Exception as error:
            raise AssertionError(f"the block at getting-started.md:{block.line} failed: {error!r}\n{block.code}") \
                from error

    # What the page's comments say about the results.
    size = tuple(namespace["bundle"].input_size)
    assert size == (64, 64)
    assert namespace["scene"].objects == ["purple cross", "yellow star"]
    assert tuple(namespace["images"].shape) == (1, 3, *size)
    assert tuple(namespace["classifier"](namespace["images"]).shape) == (1, 36)
    for name in ("maps", "free_text", "raw", "gradcam", "ig", "concept_maps"):
        assert tuple(namespace[name].shape) == (1, 1, *size), name
    maps = namespace["maps"]
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert tuple(namespace["all_maps"].shape) == (1, 36, *size)
    explanation = namespace["explanation"]
    assert explanation.target_name == "purple cross"
    assert explanation.mutual[:2] == ["purple", "a purple shape"]
    assert tuple(namespace["figure_maps"]["CLIP Surgery"].shape) == (2, *size)
    assert Path(namespace["path"]).is_file()
    assert tuple(namespace["scores"].shape) == (1,)
    assert tuple(namespace["convis_maps"].shape) == (1, 3, *size)


# -------------------------------------------------------------------------------------------------- mkdocs


def _require_mkdocs() -> None:
    missing = [name for name in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
               if importlib.util.find_spec(name) is None]
    if not missing and importlib.util.find_spec("mkdocstrings_handlers.python") is None:
        missing = ["mkdocstrings-python"]
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)} missing): pip install -e .[docs]")


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=600)


def test_mkdocs_build_strict(tmp_path):
    _require_mkdocs()
    result = _mkdocs_build(CONFIG, tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    site = tmp_path / "site"
    for page in ("index.html", "getting-started/index.html", "surgery/index.html", "convis/index.html",
                 "mutual/index.html", "baselines/index.html", "evaluation/index.html", "benchmark/index.html",
                 "benchmarks/index.html", "shipped-model/index.html", "figures/demo_scene7.png",
                 "benchmark_shapes/localisation/results.png"):
        assert (site / page).is_file(), page
    api = (site / "api" / "captum_clip" / "index.html").read_text(encoding="utf-8")
    for name in ("SurgeryCAM", "RawCLIPSimilarity", "CLIPGradCAM", "CLIPIntegratedGradients", "ZeroShotClassifier",
                 "load_clip", "ClipBundle", "METHODS", "build_method", "NonFiniteError"):
        assert f'id="captum_clip.{name}"' in api, name
    for module in ("convis", "mutual", "evaluation", "viz"):
        page = (site / "api" / module / "index.html").read_text(encoding="utf-8")
        exported = importlib.import_module(f"captum_clip.{module}")
        names = getattr(exported, "__all__", None) or [n for n in vars(exported) if not n.startswith("_")]
        missing = [name for name in names if f'id="captum_clip.{module}.{name}"' not in page]
        assert not missing, f"api/{module}.md does not document {missing}"
    assert "Held-out zero-shot accuracy" in (site / "shipped-model" / "index.html").read_text(encoding="utf-8")


def _broken_copy(root: Path, addition: str) -> Path:
    """A copy of the site sources whose home page ends with ``addition``; returns its mkdocs.yml."""
    shutil.copytree(DOCS, root / "docs")
    shutil.copy(CONFIG, root / "mkdocs.yml")
    (root / "captum_clip").symlink_to(REPO / "captum_clip", target_is_directory=True)  # API and snippet sources
    index = root / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + "\n" + addition + "\n", encoding="utf-8")
    return root / "mkdocs.yml"


BROKEN_LINKS = """
## Broken on purpose

- [a page that does not exist](no-such-page.md)
- [a section that does not exist](surgery.md#no-such-section)
- [a file outside docs/](../README.md)
- [an object that does not exist][captum_clip.NoSuchThing]
"""


def test_mkdocs_strict_fails_on_broken_links(tmp_path):
    _require_mkdocs()
    result = _mkdocs_build(_broken_copy(tmp_path, BROKEN_LINKS), tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    for needle in ("no-such-page.md", "no-such-section", "../README.md", "captum_clip.NoSuchThing"):
        assert any(needle in line for line in warnings), f"no warning names {needle!r}:\n{output[-6000:]}"


@pytest.mark.parametrize("addition, needle", [
    ("::: captum_clip.NoSuchThing", "captum_clip.NoSuchThing"),
    ('--8<-- "captum_clip/assets/NO_SUCH_FILE.md"', "NO_SUCH_FILE.md"),
], ids=["unknown-api-object", "missing-snippet"])
def test_mkdocs_strict_fails_on_missing_references(tmp_path, addition, needle):
    _require_mkdocs()
    result = _mkdocs_build(_broken_copy(tmp_path, addition), tmp_path / "site")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-6000:]
    assert needle in output, output[-6000:]
