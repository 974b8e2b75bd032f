"""Write-then-rename, so an interrupted or failed stage never leaves a half-written output.

A temporary is a hidden sibling of its target (`.<name>.<random>.tmp`). A process killed mid-write
(kill -9, power loss) cannot remove its own, so the next write to the same target removes any it
finds first: DVC runs one stage per output at a time, so none of them can still be in use.
Outputs get the user's umask (0644/0755 by default), as files written with open() would, not
tempfile's private 0600/0700, so a shared DVC cache or results folder stays readable. A write that
fails (a full disk, a read-only folder) is one error naming the output, and the previous output
stays as it was.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from multvae.errors import MultVAEError

# Faults of the file system rather than of the data: full disk, quota, read-only, permissions, size.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class WriteError(MultVAEError):
    """An output could not be written; the message names it, the cause and the space left."""


def write_failure(target: Path, cause: str, needed: int | None = None) -> WriteError:
    """The error for a failed write of `target`, with the free space of the disk it is on."""
    existing = next(p for p in [target, *target.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    need = f", needs about {needed / 1e6:.1f} MB" if needed else ""
    return WriteError(f"{target}: cannot be written ({cause}{need}; {free / 1e6:.1f} MB free on its disk); "
                      f"the previous {target.name}, if any, is unchanged")


def _is_write_fault(exc: OSError, tmp: Path) -> bool:
    """A file-system fault while writing the temporary (not, say, an input that cannot be read)."""
    where = exc.filename
    return exc.errno in WRITE_ERRNOS and (where is None or Path(where) == tmp or tmp in Path(where).parents)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_owned(target: Path, mark: str) -> None:
    """A folder output replaces the whole folder: refuse one that holds something but nothing that
    matches `mark` (globs, separated by '|', of what the stage writes there), which would be another
    stage's output or the user's."""
    globs = mark.split("|")
    if target.is_dir() and any(target.iterdir()) and not any(any(target.glob(g)) for g in globs):
        found = ", ".join(sorted(p.name for p in target.iterdir())[:4])
        raise WriteError(f"{target}: holds {found}, not this stage's output (no {' or '.join(globs)}); the "
                         "stage replaces the whole folder, so give it a folder of its own")


def remove_stale(target: Path) -> list[Path]:
    """Delete what interrupted writes to `target` left beside it; return what was removed."""
    stale = [*target.parent.glob(f".{target.name}.*.tmp"), *target.parent.glob(f".{target.name}.old")]
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


@contextmanager
def _faults_named(target: Path, tmp: Path) -> Iterator[None]:
    """A write fault inside the block (disk full, permission, read-only) becomes one WriteError
    naming `target`; any other error passes unchanged."""
    try:
        yield
    except OSError as exc:
        if _is_write_fault(exc, tmp):
            raise write_failure(target, exc.strerror or str(exc)) from None
        raise


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling of `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    if target.is_dir():
        raise WriteError(f"{target}: a folder is where this file belongs; move or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _faults_named(target, tmp):
            yield tmp
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: Path | str, mark: str) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces the folder `target` only on success; `mark` is
    a glob of what the stage writes there (check_owned)."""
    target = Path(target)
    check_owned(target, mark)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    try:
        with _faults_named(target, tmp):
            yield tmp
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_dir(target: Path | str) -> Iterator[Path]:
    """A temporary working folder beside `target` (same file system), removed afterwards and, if a
    kill left it behind, by the next write to `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.work.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Staging:
    """Temporary siblings of several outputs, handed out by `published`."""

    def __init__(self) -> None:
        self.staged: dict[Path, Path] = {}

    def file(self, target: Path | str) -> Path:
        """Where to write the file that becomes `target` (not created)."""
        return self._stage(Path(target), folder=False)

    def folder(self, target: Path | str, mark: str) -> Path:
        """An empty folder that becomes the folder `target`; `mark` is a glob of what the stage
        writes there (check_owned)."""
        check_owned(Path(target), mark)
        return self._stage(Path(target), folder=True)

    def _stage(self, target: Path, folder: bool) -> Path:
        if target in self.staged:
            raise WriteError(f"{target}: named for two outputs of this stage; give each its own path")
        if target.is_dir() != folder and target.exists():
            kind = "a folder" if target.is_dir() else "a file"
            raise WriteError(f"{target}: {kind} is where this output belongs; move or remove it")
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(target)
        # A hidden folder beside the target holds the new output under the target's own name (so a
        # writer that goes by the suffix, like matplotlib, sees the right one).
        box = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        tmp = box / target.name
        if folder:
            tmp.mkdir()
        self.staged[target] = tmp
        return tmp


@contextmanager
def published() -> Iterator[Staging]:
    """Several outputs of one stage made visible together or not at all: every one is written to a
    temporary sibling inside the block (a full disk or any error there leaves every target as it
    was), then each replaces its target by a rename; if a rename fails, those already renamed are
    put back, so readers never see a mix of new and old outputs."""
    staging = Staging()
    try:
        try:
            yield staging
        except OSError as exc:
            for target, tmp in staging.staged.items():
                if _is_write_fault(exc, tmp.parent):
                    raise write_failure(target, exc.strerror or str(exc)) from None
            raise
        for tmp in staging.staged.values():
            if not tmp.exists():
                raise WriteError(f"{tmp}: a staged output was not written")
        _swap(staging.staged)
    finally:
        for tmp in staging.staged.values():
            shutil.rmtree(tmp.parent, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _swap(staged: dict[Path, Path]) -> None:
    """Rename every staged output onto its target, keeping the old ones aside until all are in; on
    a failure, the new ones already in are removed and the old ones put back."""
    moved: list[tuple[Path, Path]] = []  # (target, where its old version waits)
    target = next(iter(staged), Path())
    try:
        for target, tmp in staged.items():
            old = target.with_name(f".{target.name}.old")
            _remove(old)
            if target.exists():
                os.replace(target, old)
            moved.append((target, old))
            os.replace(tmp, target)
    except OSError as exc:
        for done, old in reversed(moved):
            if not staged[done].exists():  # the new one went in: take it out
                _remove(done)
            if old.exists():
                os.replace(old, done)
        raise write_failure(target, exc.strerror or str(exc)) from None
    for _, old in moved:
        _remove(old)


def write_json(path: Path | str, payload: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_parquet(path: Path | str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
