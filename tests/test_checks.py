"""jaxgd._checks: eager input checks whose errors say what was given, expected, and why."""

import numpy as np
import pytest

import jaxgd
from jaxgd._checks import check_positive_int


@pytest.mark.parametrize("value", [1, 7, np.int32(7), np.int64(1050)])
def test_positive_integers_pass_as_int(value):
    checked = check_positive_int("batch_size", value, at_most=1050)
    assert checked == value and type(checked) is int


@pytest.mark.parametrize(
    "value, message",
    [
        (0, "batch_size=0: must be a positive integer$"),
        (-3, "batch_size=-3: must be a positive integer$"),
        (True, "batch_size=True: must be a positive integer$"),  # a bool is not a count
        (np.bool_(True), r"batch_size=np.True_: must be a positive integer$"),
        (8.0, r"batch_size=8.0: must be a positive integer \(write 8, not 8.0\)$"),
        (0.5, "batch_size=0.5: must be a positive integer$"),
        ("8", "batch_size='8': must be a positive integer$"),
        (None, "batch_size=None: must be a positive integer$"),
    ],
)
def test_non_positive_or_non_integers_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        check_positive_int("batch_size", value)


def test_the_upper_bound_names_what_it_counts():
    with pytest.raises(
        ValueError,
        match="^batch_size=1051: must be a positive integer no larger than the 1050 "
        "training examples$",
    ):
        check_positive_int("batch_size", 1051, at_most=1050, what="training examples")
    with pytest.raises(ValueError, match="^k=5: must be a positive integer no larger than 4$"):
        check_positive_int("k", 5, at_most=4)
    assert check_positive_int("k", 4, at_most=4) == 4


def test_batch_plan_uses_it():
    with pytest.raises(
        ValueError,
        match="^batch_size=0: must be a positive integer no larger than the 1050 training "
        "examples$",
    ):
        jaxgd.BatchPlan(num_examples=1050, batch_size=0)
