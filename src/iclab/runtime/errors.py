"""One exception type for every user-facing mistake.

The CLI turns an `IclabError` into a single line on stderr (no traceback), so each
message must say what was wrong *and* what to do about it.
"""


class IclabError(Exception):
    """A user-facing error: bad config value, unknown experiment, unwritable directory..."""
