"""Griffe extension for the API reference: the Sphinx conventions inside captum_clip's Google-style docstrings.

* The docstrings name other objects with Sphinx roles (``:class:`~captum_clip.ClipBundle```, ``:func:`load_clip```)
  and open literal blocks with ``::``. Markdown has neither, so the site would show ``:class:`` before every name.
  Each role becomes a code span of the name Sphinx would display (the last component after ``~``), and a
  paragraph's closing ``::`` becomes ``:``.
* Module and class attributes are documented by ``#:`` comments (Sphinx autodoc's convention) above the assignment
  or after it on the same line. Griffe reads only string literals below an assignment, so without this such an
  attribute (``captum_clip.METHODS``) would have no docstring on the site.

The sources stay as they are.

Loaded by mkdocstrings (``extensions`` in mkdocs.yml); not part of the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")
_LITERAL_OPENER = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _display(match: re.Match) -> str:
    short, text, target = match.group(1), match.group(2).strip(), match.group(3)
    if target is not None:  # :class:`title <path>`
        return f"`{text}`"
    text = text.lstrip(".")
    return f"`{text.rsplit('.', 1)[-1] if short else text}`"


def markdown_docstring(text: str) -> str:
    """``text`` with Sphinx roles as code spans and ``::`` paragraph ends as ``:``."""
    return _LITERAL_OPENER.sub(":", _ROLE.sub(_display, text))


def comment_docstring(lines: list[str], lineno: int) -> str | None:
    """The ``#:`` comment of the assignment on 1-based line ``lineno``: the lines above it, else a trailing one."""
    above = []
    index = lineno - 2
    while index >= 0 and lines[index].lstrip().startswith("#:"):
        above.insert(0, lines[index].lstrip()[2:].strip())
        index -= 1
    if above:
        return "\n".join(above)
    trailing = re.search(r"\s#:\s?(.*)$", lines[lineno - 1]) if 0 < lineno <= len(lines) else None
    return trailing.group(1).strip() if trailing else None


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite every docstring as griffe reads it, before mkdocstrings parses its sections."""

    def on_instance(self, *, obj: griffe.Object, agent: Any = None, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_attribute and obj.lineno and obj.filepath in obj.lines_collection:
            text = comment_docstring(obj.lines_collection[obj.filepath], obj.lineno)
            if text:
                obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj,
                                                 parser=getattr(agent, "docstring_parser", None),
                                                 parser_options=getattr(agent, "docstring_options", None))
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
