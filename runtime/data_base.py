"""What the data modules share: the error they report and how they read options (numpy only).

Every problem with the user's data is a :class:`DataError` with a single-line message.
"""

from __future__ import annotations

import math

__all__ = ["STREAM_OPTIONS", "DataError", "check_options", "first_line", "float_option",
           "int_option"]

# Data options for streaming (runtime/stream.py); the in-memory readers ignore them.
STREAM_OPTIONS = ("workers", "skip_bad")


class DataError(Exception):
    """A problem with the user's data, described in one line (the CLI prints it and exits 1)."""


def check_options(what: str, options: dict, allowed: tuple[str, ...]) -> None:
    """Reject options that ``what`` does not understand, naming the allowed ones."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        allowed_text = ", ".join(allowed) if allowed else "none"
        raise DataError(
            f"unknown option '{unknown[0]}' for {what}; allowed options: {allowed_text}"
        )


def int_option(options: dict, name: str, default: int, *, minimum: int = 0) -> int:
    """Read an integer option (given as int, integral float or numeric string)."""
    value = options.get(name, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
        if not number.is_integer():
            raise ValueError
        result = int(number)
    except (TypeError, ValueError):
        raise DataError(f"option {name}={value!r} must be a whole number") from None
    if result < minimum:
        raise DataError(f"option {name}={result} must be at least {minimum}")
    return result


def float_option(options: dict, name: str, default: float, *, minimum: float = 0.0) -> float:
    """Read a non-negative float option (given as number or numeric string)."""
    value = options.get(name, default)
    try:
        if isinstance(value, bool):
            raise TypeError
        result = float(value)
    except (TypeError, ValueError):
        raise DataError(f"option {name}={value!r} must be a number") from None
    if not math.isfinite(result) or result < minimum:
        raise DataError(f"option {name}={value!r} must be a number >= {minimum:g}")
    return result



def first_line(error: Exception) -> str:
    """A single-line description of a library exception."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
