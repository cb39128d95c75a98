"""A processor built on first use, in the process that runs it: the driver of a parallel run never builds it.

With ``num_workers`` local processes or Ray actors, the runner only pickles the processor for the workers; if
the processor was built up front, the driver holds one more copy of every model (N + 1 copies for N workers).
``LazyProcessor(factory, *args, **kwargs)`` pickles as the recipe (``factory`` and its arguments) and builds the
processor the first time a study reaches it, so each worker builds one and the driver none.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LazyProcessor"]


class LazyProcessor:
    """``record -> StudyResult``, building ``factory(*args, **kwargs)`` on the first call in each process."""

    def __init__(self, factory: Callable, *args, **kwargs):
        if not callable(factory):
            raise TypeError(f"LazyProcessor: factory must be callable, got {type(factory).__name__}.")
        self.factory, self.args, self.kwargs = factory, args, kwargs
        self._processor = None

    @property
    def built(self) -> bool:
        return self._processor is not None

    def __call__(self, record):
        if self._processor is None:
            self._processor = self.factory(*self.args, **self.kwargs)
        return self._processor(record)

    def __getstate__(self) -> dict:
        return {"factory": self.factory, "args": self.args, "kwargs": self.kwargs}  # never the built processor

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["factory"], *state["args"], **state["kwargs"])

    def __repr__(self) -> str:
        name = getattr(self.factory, "__qualname__", type(self.factory).__name__)
        return f"LazyProcessor({name}, built={self.built})"
