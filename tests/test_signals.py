from __future__ import annotations

import os
import signal
import threading

from nba.signals import handled


def test_signals_reach_the_handler_inside_the_block_and_the_old_one_after() -> None:
    received: list[int] = []
    before = signal.getsignal(signal.SIGUSR1)
    with handled([signal.SIGUSR1], lambda number, frame: received.append(number)):
        os.kill(os.getpid(), signal.SIGUSR1)
    assert received == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) == before


def test_other_threads_run_the_block_unchanged() -> None:
    seen: list[object] = []

    def worker() -> None:
        with handled([signal.SIGUSR1], lambda number, frame: None):
            seen.append(signal.getsignal(signal.SIGUSR1))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGUSR1)]
