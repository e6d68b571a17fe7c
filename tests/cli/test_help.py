"""``captum-clip --help`` as people expect it: a version, and every default shown."""

from __future__ import annotations

import argparse

import pytest

from captum_clip import __version__
from captum_clip.cli.main import build_parser, main


def _commands():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(None, parser), *subparsers.choices.items()]


def test_version(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith(f"captum-clip {__version__} (torch ")


@pytest.mark.parametrize("name,parser", _commands(), ids=lambda v: v if isinstance(v, str) or v is None else "")
def test_every_default_is_shown_once_in_help(name, parser):
    formatter = parser._get_formatter()
    problems = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        text = formatter._expand_help(action) if action.help else ""
        flag = action.option_strings[-1]
        if action.default is False or action.required:
            continue  # a switch (off unless given) or a value that must be given
        if "default" not in text:
            problems.append(f"{flag}: its help does not say its default ({action.default!r})")
        elif text.count("default") > 1:
            problems.append(f"{flag}: the default is said twice: {text!r}")
        elif action.default not in (None, [], argparse.SUPPRESS) and str(action.default) not in text:
            problems.append(f"{flag}: help {text!r} does not show {action.default!r}")
    assert not problems, f"captum-clip {name or ''}: " + "; ".join(problems)


def test_the_shipped_model_is_named_as_the_default_model():
    for name, parser in _commands():
        for action in parser._actions:
            if "--model" in action.option_strings:
                text = parser._get_formatter()._expand_help(action)
                assert "shapes" in text, f"{name} --model: {text!r}"
