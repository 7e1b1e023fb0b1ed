"""The project's error family: every failure prismrec expects says which exit code it means.

Each kind of error lives next to the code that raises it and also subclasses the
builtin that callers already catch (``ValueError``, ``LookupError``, ``RuntimeError``);
the command line reads ``exit_code`` instead of knowing every class.

Exit codes: 0 success · 1 unexpected failure · 2 bad configuration ·
3 bad or missing input · 4 a stage refused to publish · 5 the night is already running.
"""
from __future__ import annotations

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_INPUT, EXIT_REFUSED, EXIT_BUSY = 0, 1, 2, 3, 4, 5


class PrismrecError(Exception):
    """A failure prismrec anticipates; ``exit_code`` is what the command line exits with."""

    exit_code = EXIT_FAILURE


class InputError(PrismrecError, ValueError):
    """The input is missing, unreadable, or too broken to publish anything from (exit code 3);
    raised wherever a stage reads its input."""

    exit_code = EXIT_INPUT


def exit_code(error: BaseException) -> int:
    """The exit code for ``error``: its own for the family, 3 for a missing file, else 1."""
    if isinstance(error, PrismrecError):
        return error.exit_code
    if isinstance(error, FileNotFoundError):
        return EXIT_INPUT
    return EXIT_FAILURE
