"""Long answers: a page on a terminal, everything elsewhere, and tables that stream.

``vtreg audit`` and ``vtreg list`` print every match when their output is
``--json``, ``--csv`` or not a terminal, unless ``--limit`` is given; on a
terminal a page, and stderr says how many more there are and which cursor
(``--after``) continues. A table is as wide as its widest cell, which is known
only at the end: its rows are spooled to a temporary file meanwhile, so a
million of them cost disk, not memory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from vtreg.verifier.text import printable

__all__ = ["PAGE", "Page", "on_terminal", "table_lines"]

PAGE = 50  # rows shown on a terminal without --limit

T = TypeVar("T")
C = TypeVar("C")


def on_terminal() -> bool:
    """Whether stdout is a terminal (a person reads it, page by page)."""
    return sys.stdout.isatty()


class Page(Generic[T, C]):
    """At most ``limit`` items of a stream (None: all), whether more were left, and the
    cursor of the last one given (``cursor(item)``: what ``--after`` continues from)."""

    def __init__(self, items: Iterable[T], limit: int | None, cursor: Callable[[T], C]) -> None:
        self._items, self._limit, self._cursor = items, limit, cursor
        self.truncated = False
        self.last: C | None = None

    def __iter__(self) -> Iterator[T]:
        for count, item in enumerate(self._items):
            if self._limit is not None and count == self._limit:
                self.truncated = True
                return
            self.last = self._cursor(item)
            yield item


def table_lines(headers: list[str], rows: Iterable[list[str]]) -> Iterator[str]:
    """The lines of a table of ``rows`` under ``headers``, columns padded to their widest
    cell (each escaped: names and reasons come from outside); nothing if there are none."""
    import tempfile  # only a table needs it

    widths = [len(h) for h in headers]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for row in rows:
            cells = [printable(cell) for cell in row]  # tabs and newlines escaped too
            widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
            spool.write("\t".join(cells) + "\n")
        if not spool.tell():
            return
        yield "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
        spool.seek(0)
        for line in spool:
            cells = line[:-1].split("\t")
            yield "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
