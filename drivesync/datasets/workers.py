"""Forked worker processes that die with their parent, for the CPU-bound per-file work.

Validating a small image or label is mostly Python (read, hash, parse), so
on a 2-core Colab VM two processes do a large folder about 1.5x faster than
one (``benchmarks/bench_shard.py``). Workers are forked (nothing re-imported,
nothing pickled but the task), ignore Ctrl-C (the parent handles it and
terminates them) and exit by themselves when the parent is gone, even after
a SIGKILL: an idle pool worker would otherwise wait on its queue forever.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Below this many files the work is done in-process: starting workers and
# shipping results back costs more than it saves.
PARALLEL_MIN = 4000


def fork_context() -> Optional[Any]:
    """A fork context when forking is safe here (POSIX, no other thread running)."""
    if (os.cpu_count() or 1) < 2 or threading.active_count() != 1:
        return None  # a fork would copy locks held by other threads
    try:
        return multiprocessing.get_context("fork")
    except ValueError:  # Windows
        return None


def _worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)  # orphaned: the run was killed; its journal lets the next run finish

    threading.Thread(target=watch, daemon=True).start()


def imap_forked(func: Callable[[T], R], tasks: Iterable[T], *, ctx: Any) -> Iterator[R]:
    """``func`` over ``tasks`` in forked workers, results in task order.

    ``tasks`` is consumed lazily by the pool's feeder thread. Leaving the
    loop early (an error, Ctrl-C in the parent) terminates the workers.
    """
    jobs = min(8, os.cpu_count() or 1)
    with ctx.Pool(jobs, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        yield from pool.imap(func, tasks)
