"""How a long stage says how far it got, without knowing who is watching.

Stages call `report_progress`; whoever runs them (the Prefect flow, a test, nobody) installs a
callback with `reporting(...)`. Messages go through `logging` (loggers under `tasks` and `infra`),
which the flow forwards to its run log.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# (key, fraction done in [0, 1], description): key names one progress bar, e.g. "pretrain"
ProgressCallback = Callable[[str, float, str], None]
_CALLBACK: ContextVar[ProgressCallback | None] = ContextVar("progress_callback", default=None)


@contextmanager
def reporting(callback: ProgressCallback) -> Iterator[None]:
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def report_progress(key: str, fraction: float, description: str) -> None:
    if (callback := _CALLBACK.get()) is not None:
        callback(key, min(max(fraction, 0.0), 1.0), description)
