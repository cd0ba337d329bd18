"""Errors a user causes and can fix (a missing file, a bad value, an unreadable input). Their messages name the
input and say what to do; `klip` prints them as one line and exits with status 2. Any other exception is a bug
and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """An error whose message names the input at fault and what to do about it."""


class InputError(UserError, ValueError):
    """A bad value or an unreadable input (a ValueError, so callers that caught ValueError still do)."""


OS_HINTS = {FileNotFoundError: "check the path", PermissionError: "check its permissions",
            IsADirectoryError: "give a file, not a folder", NotADirectoryError: "give a folder"}


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a user causes: UserError, files missing or unreadable (OSError, which rasterio's
    RasterioIOError is), and rasterio's errors (a file it cannot read, a bad CRS) when rasterio is loaded."""
    import sys

    rasterio = vars(sys.modules["rasterio.errors"]) if "rasterio.errors" in sys.modules else {}
    return (UserError, OSError) + tuple(v for v in rasterio.values() if isinstance(v, type)
                                        and issubclass(v, Exception) and v.__module__ == "rasterio.errors")


def one_line(error: BaseException) -> str:
    """A user error as one line: its message, or for an OS error the file, the reason and what to do."""
    if isinstance(error, OSError) and error.filename:
        hint = next((h for kind, h in OS_HINTS.items() if isinstance(error, kind)), "")
        return f"{error.filename}: {error.strerror or error}" + (f"; {hint}" if hint else "")
    return " ".join(str(error).split()) or type(error).__name__


def positive_int(text: str) -> int:
    """argparse type for counts and sizes: an integer of at least 1 (argparse reports any other value as invalid)."""
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} is not a positive integer")
    return value


def positive_float(text: str) -> float:
    """argparse type for durations: a number above 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(f"{text} is not a positive number")
    return value
