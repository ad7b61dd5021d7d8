"""Micro-batching: concurrent requests coalesced into one call, with a bounded wait.

    batcher = MicroBatcher(lambda items: [x * 2 for x in items], max_batch=64, max_wait=0.002)
    fut = batcher.submit(21)          # concurrent.futures.Future; fut.result() == 42
    batcher.close()

A worker thread takes the first waiting item, then collects more until `max_batch` items
(counted by `size(item)`) or `max_wait` seconds have passed (only when the previous batch
held several requests: a lone client is never kept waiting), and calls `fn(items)` once;
`fn` returns one result per item, in order. When `fn` raises, every item of that batch
gets the exception. Searching 32 probes in one FAISS call, or embedding 32 chips in one
model batch, costs far less than 32 single calls.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger(__name__)


class MicroBatcher:
    """One worker thread that calls `fn` on batches of submitted items."""

    def __init__(self, fn: Callable[[list], list], max_batch: int = 64, max_wait: float = 0.002,
                 size: Callable[[object], int] = lambda item: 1, name: str = "batcher",
                 on_batch: Callable[[int], None] | None = None):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.fn, self.max_batch, self.max_wait, self.size = fn, max_batch, max_wait, size
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"faceidx-{name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting (not yet in a batch)."""
        return self._queue.qsize()

    def submit(self, item) -> Future:
        if self._closed:
            raise RuntimeError("batcher is closed")
        fut: Future = Future()
        self._queue.put((item, fut))
        return fut

    def _run(self) -> None:
        last = 1   # items in the previous batch: waiting pays only under concurrency
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, total = [first], self.size(first[0])
            deadline = time.monotonic() + (self.max_wait if last > 1 else 0.0)
            stop = False
            while total < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                total += self.size(nxt[0])
            self._call(batch, total)
            last = len(batch)
            if stop:
                return

    def _call(self, batch: list, total: int) -> None:
        if self.on_batch is not None:
            self.on_batch(total)
        try:
            results = self.fn([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)}")
        except BaseException as err:  # every waiter learns of it; the worker goes on
            for _, fut in batch:
                fut.set_exception(err)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)

    def close(self) -> None:
        """Finish the queued items, then stop the worker."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
