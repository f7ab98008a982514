"""Eager checks of user input, run before anything is traced.

Each error says what was given, what is expected and, where it helps, how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value: Any, *, at_most: int | None = None, what: str = "") -> int:
    """Return ``value`` as an ``int`` if it is a positive integer (at most ``at_most``).

    ``bool`` is refused although it is an ``int`` subclass (``batch_size=True`` is a
    mistake, not 1), and so are floats, even whole ones (``8.0``). NumPy integers pass.

    Args:
        name: the argument's name as the user wrote it, e.g. ``"batch_size"`` or
            ``"config 3: batch_size"``.
        value: what the user gave.
        at_most: an inclusive upper bound, if any.
        what: what ``at_most`` counts, e.g. ``"training examples"``.

    Returns:
        ``int(value)``.

    Raises:
        InputError: e.g. ``"batch_size=0: must be a positive integer no larger than the
            1050 training examples"``.

    Example:
        >>> check_positive_int("batch_size", np.int64(100), at_most=1050)
        100
        >>> check_positive_int("batch_size", 0, at_most=1050, what="training examples")
        Traceback (most recent call last):
        ...
        jaxgd.errors.InputError: batch_size=0: must be a positive integer no larger than the 1050 training examples
    """  # noqa: E501
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if is_int and value >= 1 and (at_most is None or value <= at_most):
        return int(value)
    expected = "a positive integer"
    if at_most is not None:
        bound = f"the {at_most} {what}" if what else str(at_most)
        expected += f" no larger than {bound}"
    hint = ""
    if isinstance(value, float) and value.is_integer() and value >= 1:
        hint = f" (write {int(value)}, not {value!r})"
    raise InputError(f"{name}={value!r}: must be {expected}{hint}")
