"""Progress bars that the caller switches on; off when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bars_wanted(quiet: bool = False) -> bool:
    """True when progress bars should show: not quiet and stderr is a TTY."""
    return not quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], enabled: bool, total: int | None = None, desc: str = "",
             unit: str = "it") -> Iterator[T]:
    """Wrap `iterable` in a tqdm bar when `enabled`, else return it unchanged."""
    if not enabled:
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
              dynamic_ncols=True) as bar:
        yield from bar


class Counter:
    """A manual bar (`update(n)`) for loops that are not plain iterables."""

    def __init__(self, enabled: bool, total: int | None = None, desc: str = "", unit: str = "it"):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr,
                             dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def postfix(self, **values) -> None:
        """Show `values` (name=text) after the bar, e.g. a running loss."""
        if self._bar is not None:
            self._bar.set_postfix(values)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
