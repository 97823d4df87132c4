"""Progress bars that stay out of the way in CI logs and worker processes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(quiet: bool = False) -> bool:
    return not quiet and sys.stderr.isatty() and not os.environ.get("ICLAB_NO_PROGRESS")


def track(items: Iterable[T], description: str, total: int | None = None, quiet: bool = False) -> Iterator[T]:
    if not progress_enabled(quiet):
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)
