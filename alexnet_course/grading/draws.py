"""Fixtures drawn across a task's whole contract (Hypothesis), seeded by whoever grades.

A graded test decorated with :func:`drawn` (under Hypothesis's ``@given``) runs on a bounded
number of examples drawn over what the task's page allows: unbalanced and missing classes,
labels unrelated to positions, sizes that do not divide, parameters away from their
defaults. Each draw is checked against the reference, and a failure shrinks to a small
example that the failure message shows.

Who picks the draws:

- locally (``pytest lessons/NN``) the seed is :data:`LOCAL_SEED`: the same draws on every
  run, so a red test stays red until the code changes, and the run stays fast;
- under the class grader the grader picks the seed (``alexnet-course grade --draw-seed``,
  a fresh random one by default; Gradescope's bundle fixes one when it is built), passes it
  to the trusted test process as ``--draw-seed``, and every submission of the run gets the
  same draws. A learner cannot know them in advance; nothing is replayed from a database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LOCAL_SEED = 20260412
_seed: int = LOCAL_SEED
_graded = False


def configure(seed: int | None, graded: bool = False) -> None:
    """Called by the plugin before the test files are imported."""
    global _seed, _graded
    _seed = LOCAL_SEED if seed is None else int(seed)
    _graded = graded


def current_seed() -> int:
    return _seed


def drawn(examples: int = 25) -> Callable[[Any], Any]:
    """Hypothesis settings for a graded test: ``examples`` draws from the grader's seed, no
    deadline per example (the plugin's time limit covers the test), no example database,
    failures shrunk (locally; the grader keeps the first failing draw to bound its time).
    Put it above ``@given``::

        @pytest.mark.task("5.1", points=2)
        @drawn(examples=30)
        @given(labels=st.lists(st.integers(0, 9), min_size=1))
        def test_x(labels): ...
    """
    from hypothesis import HealthCheck, Phase, seed, settings

    phases = [Phase.explicit, Phase.generate] + ([] if _graded else [Phase.shrink])

    def wrap(test):
        test = settings(max_examples=examples, deadline=None, database=None, phases=phases,
                        derandomize=False, print_blob=False,
                        suppress_health_check=list(HealthCheck))(test)  # fmt: skip
        test = seed(_seed)(test)
        test.hypothesis.inner_test = _without_stub_frames(test.hypothesis.inner_test)
        return test

    return wrap


def _without_stub_frames(inner: Callable[..., Any]) -> Callable[..., Any]:
    """``inner``, where a stub's NotImplementedError leaves as a new one with the same message
    and no traceback. Hypothesis keeps the exceptions of the draws it replays and shrinks, and
    each traceback holds its frames' locals: on a stub, a dozen kept pairs of 57 M-parameter
    models took lesson 02's suite to 4 GB (#30). The plugin reports "not started" from the
    type and message alone."""
    import functools

    @functools.wraps(inner)
    def lean(*args: Any, **kwargs: Any) -> Any:
        try:
            return inner(*args, **kwargs)
        except NotImplementedError as e:
            message = e.args
        raise NotImplementedError(*message)  # outside the handler: no __context__ either

    return lean
