"""A pytest plugin for the project's mutant runs (``-p tests.order_first``): the tests named
in ``$ALEXNET_FIRST_TESTS`` (comma-separated test names, parameters optional) run first,
the rest after them in their usual order.

With ``-x`` a mutant run then stops at the test known to catch that mutant instead of
running every earlier test first. Nothing is deselected: when the named test no longer
fails, the rest of the suite still runs and judges the mutant.
"""

from __future__ import annotations

import os

import pytest

ENV = "ALEXNET_FIRST_TESTS"


@pytest.hookimpl(trylast=True)  # after the grading plugin's own order
def pytest_collection_modifyitems(config, items):
    first = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    if not first:
        return

    def rank(item) -> int:
        for i, name in enumerate(first):
            if item.name == name or item.name.split("[")[0] == name:
                return i
        return len(first)

    items.sort(key=rank)  # stable: the rest keep their order
