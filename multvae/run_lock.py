"""One process at a time per training run: two `dvc repro` or queue workers started on the same
(variant, fold, seed) would write the same checkpoint, log and model over each other.

The lock is an advisory `flock` on a file beside the run's checkpoint, so the kernel releases it
when its holder exits, even by kill -9: a crash never leaves a run locked.
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
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunLockedError(f"{what} is being trained by another process (pid {holder}, lock {path}); "
                                 "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
