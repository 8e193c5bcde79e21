"""What the `netc` commands exit with, and the two failures they report in one line.

A leaf module: it imports nothing, so every command module can use it without importing
the command line (runtime/cli.py), which imports them.
"""

from __future__ import annotations

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command-line misuse (exit 2)."""


class RunError(Exception):
    """A failure of a run that is the user's to fix: bad data, a diverging loss (exit 1)."""


__all__ = ["EXIT_ERROR", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE",
           "RunError", "UsageError"]
