"""One process at a time per training run: two `dvc repro` or queue workers started on the same
(variant, fold, seed) would write the same checkpoint, log and model over each other.

The lock is an advisory `flock` on a file beside the run's checkpoint, so the kernel releases it
when its holder exits, even by kill -9: a crash never leaves a run locked. The holder removes the
file before it lets go; a process that locked a file already removed that way tries the new one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from multvae.errors import MultVAEError


class RunLockedError(MultVAEError):
    """Another process is training the same run."""


@contextmanager
def run_lock(path: Path | str, what: str) -> Iterator[None]:
    """Hold the lock file `path` for `what` (a run's name) while the block runs, or stop at once
    with one line naming the process that holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still held: no one can lock this file and find it gone
        os.close(fd)  # closing the descriptor releases the lock


def _acquire(path: Path, what: str) -> int:
    """A descriptor of `path`, exclusively locked, whose file is still the one at `path`."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{what} is being trained by another process (pid {holder}, lock {path}); "
                                 "wait for it to finish or stop it") from None
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed this file as it let go: lock the one at `path` now
