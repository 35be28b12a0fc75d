"""The exceptions litevault raises: one class per error class of the library.

Each has ``hint`` (what to try, or ``None``) and ``exit_code`` (the command line's exit code for
the same error: 1 failed, 2 usage, 3 corruption, 4 refused, 130 cancelled).
"""

import re
from typing import Optional


class LitevaultError(Exception):
    """Any error litevault reports. ``str(e)`` is the message the command line prints."""

    #: The library's name of the error class ("error", "usage", "corrupt", "refused", "interrupted").
    error_class = "error"

    def __init__(self, message: str, hint: Optional[str] = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def to_dict(self) -> dict:
        """The error as the command line's ``--json`` prints it."""
        return {
            "error": self.message,
            "class": self.error_class,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class FailedError(LitevaultError):
    """The operation could not be done: a missing file or object, an I/O or network failure,
    bad input that is not damage (exit code 1)."""

    error_class = "error"


class UsageError(LitevaultError, ValueError):
    """The options do not fit together, or an option is unknown (exit code 2)."""

    error_class = "usage"


class CorruptionError(LitevaultError):
    """Damage was found: a corrupt database, a damaged or tampered archive, a checksum that does
    not match (exit code 3)."""

    error_class = "corrupt"


class RefusedError(LitevaultError):
    """Refused to protect data: it would overwrite, the database is in use, a newer schema
    (exit code 4)."""

    error_class = "refused"


class CancelledError(LitevaultError):
    """The work was cancelled (the progress callback returned ``False``): it stopped, removed
    its temp files and published nothing (exit code 130). Ctrl-C raises ``KeyboardInterrupt``
    instead, after the same clean stop."""

    error_class = "interrupted"


_BY_CLASS = {
    cls.error_class: cls
    for cls in (FailedError, UsageError, CorruptionError, RefusedError, CancelledError)
}


for _cls in (LitevaultError, *_BY_CLASS.values()):
    _cls.__module__ = "litevault"

# "'--output <OUTPUT>'" (the command line's words) -> "output=" (the keyword argument's).
_OPTION = re.compile(r"'--([a-z][a-z0-9-]*)(?: <[^>]*>)?(?:\.\.\.)?'")

_BARE_OPTION = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def from_report(message: str, error_class: str, hint: Optional[str], exit_code: int) -> LitevaultError:
    """The exception for an error report (used by the extension module). Usage errors name
    keyword arguments, as Python callers wrote them."""
    if error_class == "usage":
        message = _OPTION.sub(lambda m: m.group(1).replace("-", "_") + "=", message)
        message = _BARE_OPTION.sub(lambda m: m.group(1).replace("-", "_") + "=", message)
        if message.startswith("invalid option: "):
            message = message[len("invalid option: "):]
    if hint:
        # "pass --overwrite to ..." -> "pass overwrite=True to ...".
        hint = re.sub(r"\bpass --([a-z][a-z0-9-]*)", lambda m: "pass " + m.group(1).replace("-", "_") + "=True", hint)
    return _BY_CLASS.get(error_class, LitevaultError)(message, hint, exit_code)
