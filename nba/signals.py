"""Routing process signals to a handler for the length of a block, and putting them back."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def handled(signals: Iterable[int], handler: Callable[[int, Any], Any]) -> Iterator[None]:
    """Send ``signals`` to ``handler`` inside the block; the previous handlers come back after.

    Python lets only the main thread install handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in signals}
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before if before is not None else signal.SIG_DFL)
