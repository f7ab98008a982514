"""The one exception for input that jaxgd refuses."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError, TypeError):
    """Input refused before anything compiles or is written.

    The message names the argument, what was given, what was expected and how to fix it.
    It is both a ``ValueError`` and a ``TypeError`` so that callers catching either keep
    working; the command line prints the message on one line and exits with status 2.
    """
