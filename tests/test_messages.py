"""Failure messages that teach (#29): numbers shown with enough digits to see the difference,
and the difference itself."""

from __future__ import annotations

import pytest

from alexnet_course.grading.checks import distinct, expect_close


def test_close_values_are_shown_with_the_digits_that_differ():
    """Lesson 01's std with Bessel's correction (task 1.6) once read "expected: 0.145293,
    got: 0.145293": the difference, 4.7e-07, was only in the header."""
    want, got = 0.1454259, 0.1454259 + 4.73e-07
    with pytest.raises(pytest.fail.Exception) as e:
        expect_close([got], [want], "std", atol=1e-9)
    lines = str(e.value).splitlines()
    expected = next(x for x in lines if "expected:" in x).split("expected:")[1].strip()
    shown = next(x for x in lines if "got:" in x).split("got:")[1].strip()
    assert expected == "0.1454259" and shown.startswith("0.1454264 ")
    assert "(difference +4.73e-07)" in shown


@pytest.mark.parametrize("a, b, want", [
    (0.5, 0.25, ("0.5", "0.25")),
    (1.0, 1.0 + 1e-12, ("1", "1.000000000001")),
    (float("nan"), 1.0, ("nan", "1")),
])  # fmt: skip
def test_distinct_uses_the_fewest_digits_that_differ(a, b, want):
    assert distinct(a, b) == want
