"""The errors modelpress raises on purpose.

`BadInputError` means the user gave something we cannot use (exit code 2 on the command line);
its message names the problem and the fix, in one shape:
"`param` of `Owner` must be X; got Y. Fix: ..." — see :func:`bad_value`.
`CompressionError` means a step failed at run time on valid input (exit code 1).
"""

from __future__ import annotations

import math

__all__ = ["BadInputError", "CompressionError", "ModelpressError", "bad_value", "is_fraction", "is_int", "is_number"]


class ModelpressError(Exception):
    """Base of every error modelpress raises on purpose."""


class BadInputError(ModelpressError, ValueError):
    """The user's input cannot be used. The message says what is wrong and how to fix it."""


class CompressionError(ModelpressError, RuntimeError):
    """A step failed at run time on input that was valid."""


def bad_value(param: str, owner: str, must: str, got: object, fix: str | None = None) -> BadInputError:
    """Build a `BadInputError` with the project's one message shape.

    >>> str(bad_value("sparsity", "Prune", "in [0, 1)", 1.5))
    '`sparsity` of `Prune` must be in [0, 1); got 1.5.'
    """
    msg = f"`{param}` of `{owner}` must be {must}; got {got!r}."
    if fix:
        msg += f" Fix: {fix}"
    return BadInputError(msg)


def is_int(x: object, low: int | None = None) -> bool:
    """``x`` is an int (not a bool) and, with ``low``, at least ``low``."""
    return isinstance(x, int) and not isinstance(x, bool) and (low is None or x >= low)


def is_number(x: object) -> bool:
    """``x`` is a finite int or float (not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_fraction(x: object) -> bool:
    """``x`` is a number in [0, 1)."""
    return is_number(x) and 0 <= x < 1
