"""The one table of method defaults, so that ``SurgeryCAM(c)`` and ``build_method("surgery", c)`` agree.

A method's constructor leaves the options below unset (``None``, or ``"auto"`` for Surgery's redundancy) and
asks :func:`fill_defaults` for them. The table gives the general default, possibly a function of the classifier
(one class is a single query); the presets of :mod:`captum_clip.shipped.presets` then replace some of them for
the shipped model or scene label sets. What the caller passes always wins.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping


def _surgery_redundancy(classifier) -> str:
    # A single query has no label set to estimate the redundant feature from.
    return "labelset" if classifier.num_classes > 1 else "empty"


#: method -> option -> default value, or a function of the classifier giving it.
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "surgery": {"redundancy": _surgery_redundancy},
    "mutual": {"descriptors": None, "u": 50},  # descriptors None: a bank generated from WordNet for the classes
    "convis": {"vocabulary": None, "text_source": "definition", "class_synsets": None},
}


def method_defaults(method: str, classifier) -> Dict[str, Any]:
    """The options ``method`` takes for ``classifier`` when the caller sets none of them."""
    # Imported here: the presets build method inputs (banks, vocabularies), so they import the methods' packages.
    from .shipped.presets import PRESETS

    options = {name: value(classifier) if callable(value) else value
               for name, value in DEFAULTS.get(method, {}).items()}
    for preset_method, applies, preset in PRESETS:
        if preset_method == method and classifier is not None and applies(classifier):
            options.update(preset(classifier))
    return options


def fill_defaults(method: str, classifier, given: Mapping[str, Any],
                  unset: Callable[[Any], bool] = lambda value: value is None) -> Dict[str, Any]:
    """``given`` with every unset option taken from :func:`method_defaults`."""
    if all(not unset(value) for value in given.values()):
        return dict(given)
    defaults = method_defaults(method, classifier)
    return {name: defaults.get(name) if unset(value) else value for name, value in given.items()}
