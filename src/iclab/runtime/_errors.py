"""One exception type for every user-facing mistake.

The CLI turns an `IclabError` into a single line on stderr (no traceback), so each
message must say what was wrong *and* what to do about it.
"""

from dataclasses import dataclass


class IclabError(Exception):
    """A user-facing error: bad config value, unknown experiment, unwritable directory..."""


@dataclass(frozen=True)
class TaskLost:
    """What an executor yields for an item whose worker died and whose retries ran out (a value, not an
    exception: a sweep records it as that point's failure and goes on)."""

    error: str
