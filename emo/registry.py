"""Named implementations of one kind (fusion heads, feature selectors, dataset adapters): a module registers
itself with one decorator line, and the library and the CLI read the names from here instead of copying them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from emo.errors import UsageError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping name -> implementation, filled by :meth:`register`; it lists its names sorted, so
    the order does not depend on which module was imported first.

    ``kind`` and ``option`` only word the error of an unknown name ("unknown fusion method 'x' (--method);
    choose one of ...").
    """

    def __init__(self, kind: str, option: str = "") -> None:
        self.kind = kind
        self.option = option
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make the decorated class or function available under ``name``."""

        def add(item: T) -> T:
            if name in self._items and self._items[name] is not item:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = item
            return item

        return add

    def lookup(self, name: str) -> T:
        """The implementation registered as ``name``; a :class:`~emo.errors.UsageError` naming the choices else."""
        try:
            return self._items[name]
        except KeyError:
            where = f" ({self.option})" if self.option else ""
            raise UsageError(
                f"unknown {self.kind} {name!r}{where}; choose one of {', '.join(self)}"
            ) from None

    def __getitem__(self, name: str) -> T:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
