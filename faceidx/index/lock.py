"""One writer per index directory: an exclusive, non-blocking lock on ``writer.lock``.

    with writer_lock("faces.index", "faceidx add") as lock:   # IndexBusyError when held
        ...

The lock is ``fcntl.flock`` on ``INDEX_DIR/writer.lock``; the kernel releases it when
the holder exits, however it exits (a kill -9 included), so a stale lock never blocks.
The file holds a small JSON about the holder (pid, command, host, since) that the
refusal message quotes. Readers never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from faceidx.errors import IndexBusyError

LOCK_NAME = "writer.lock"


class WriterLock:
    """A held writer lock; `release()` (or leaving the `with` block) lets it go."""

    def __init__(self, index_dir: str | os.PathLike, holder: str = "faceidx"):
        self.path = Path(index_dir) / LOCK_NAME
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise IndexBusyError(_busy_message(self.path), self.path.parent) from None
        info = {"pid": os.getpid(), "command": self.holder, "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> WriterLock:
        return self.acquire() if not self.held else self

    def __exit__(self, *exc) -> None:
        self.release()


def holder_of(index_dir: str | os.PathLike) -> dict | None:
    """What the lock file says about its holder (None when free or unreadable)."""
    try:
        text = (Path(index_dir) / LOCK_NAME).read_text()
        info = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _busy_message(path: Path) -> str:
    info = holder_of(path.parent) or {}
    who = (f"`{info.get('command', '?')}` (pid {info.get('pid', '?')} on "
           f"{info.get('host', '?')}, since {info.get('since', '?')})") if info else "another process"
    return (f"another writer holds this index: {who}; stop it, or enrol through the service: "
            f"POST /v1/faces")


@contextlib.contextmanager
def writer_lock(index_dir: str | os.PathLike, holder: str = "faceidx") -> Iterator[WriterLock]:
    lock = WriterLock(index_dir, holder).acquire()
    try:
        yield lock
    finally:
        lock.release()
