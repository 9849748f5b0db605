"""Assertions that teach: each failure says what was checked, what was expected, what came
out, and which docs section helps (micrograd and minitorch's habit).
"""

from __future__ import annotations

from typing import Any

import pytest


def _fail(what: str, expected: Any, got: Any, hint: str | None, docs: str | None) -> None:
    lines = [what, f"  expected: {expected}", f"  got:      {got}"]
    if hint:
        lines.append(f"  hint:     {hint}")
    if docs:
        lines.append(f"  docs:     {docs}")
    pytest.fail("\n".join(lines), pytrace=False)


def expect(ok: bool, what: str, expected: Any, got: Any, *, hint: str | None = None,
           docs: str | None = None) -> None:  # fmt: skip
    """Fail with a teaching message unless ``ok``."""
    if not ok:
        _fail(what, expected, got, hint, docs)


def expect_equal(got: Any, expected: Any, what: str, **kw) -> None:
    expect(got == expected, what, expected, got, **kw)


def expect_shape(tensor: Any, expected: tuple, what: str, **kw) -> None:
    got = tuple(getattr(tensor, "shape", ()))
    expect(got == tuple(expected), f"{what}: output shape", tuple(expected), got, **kw)


def expect_close(got: Any, expected: Any, what: str, *, atol: float, rtol: float = 0.0,
                 **kw) -> None:  # fmt: skip
    """Compare arrays or tensors elementwise: ``|got - expected| <= atol + rtol * |expected|``."""
    import numpy as np

    g = np.asarray(got.detach().cpu() if hasattr(got, "detach") else got, dtype=np.float64)
    e = np.asarray(expected.detach().cpu() if hasattr(expected, "detach") else expected,
                   dtype=np.float64)  # fmt: skip
    if g.shape != e.shape:
        _fail(f"{what}: shape", e.shape, g.shape, kw.get("hint"), kw.get("docs"))
    err = np.abs(g - e)
    bad = ~(err <= atol + rtol * np.abs(e))  # NaN or inf where a number is expected: a difference
    err = np.where(np.isfinite(err), err, np.inf)
    if bad.any():
        i = np.unravel_index(np.argmax(err), err.shape)
        want, have = distinct(float(e[i]), float(g[i]))
        _fail(f"{what}: {int(bad.sum())} of {bad.size} values differ beyond tolerance "
              f"(atol {atol:g}, rtol {rtol:g}); max |difference| {err.max():.3g} at index "
              f"{tuple(int(j) for j in i)}", want,
              f"{have} (difference {float(g[i]) - float(e[i]):+.3g})" if np.isfinite(err[i]) else have,
              kw.get("hint"), kw.get("docs"))  # fmt: skip


def distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` written with the fewest significant digits (at least 6) that show they
    differ: 0.145293 and 0.145293 become 0.1452934 and 0.1452929."""
    for digits in range(6, 18):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            return sa, sb
    return repr(a), repr(b)


def expect_raises(exc_type: type[BaseException] | tuple, call, what: str, *,
                  hint: str | None = None, docs: str | None = None) -> BaseException:  # fmt: skip
    """Call ``call()`` and fail with a teaching message unless it raises ``exc_type``.

    Returns the exception raised, for further checks of its message.
    """
    names = " or ".join(t.__name__ for t in (exc_type if isinstance(exc_type, tuple) else (exc_type,)))
    try:
        got = call()
    except exc_type as e:
        return e
    except NotImplementedError:
        raise
    except Exception as e:  # noqa: BLE001 - the wrong exception is the learner's mistake
        _fail(what, f"raises {names}", f"raised {type(e).__name__}: {e}", hint, docs)
    _fail(what, f"raises {names}", f"returned {got!r:.200}" if got is not None else "returned normally",
          hint, docs)  # fmt: skip


def observed(fn, *args, what: str, hint: str | None = None, docs: str | None = None,
             traps: tuple[tuple[str, str], ...] = ()):  # fmt: skip
    """``observe(fn, *args)``, where an error the learner's code (or the framework inside
    it) raised becomes a teaching failure; a stub's NotImplementedError still reports
    "not started". ``traps`` pairs a regular expression with the hint to give when the
    error's message matches it: a mistake the page warns about, named as such (the first
    match wins; ``hint`` otherwise)."""
    import re

    from alexnet_course.grading.remote import observe

    try:
        return observe(fn, *args)
    except NotImplementedError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as e:
        error = f"{type(e).__name__}: {str(e)[:600]}"
    hint = next((h for pattern, h in traps if re.search(pattern, error)), hint)
    expect(False, what, "runs without an error", error, hint=hint, docs=docs)
