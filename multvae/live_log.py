"""The per-epoch training log, written while training runs, in DVCLive's file layout
(`metrics.json` with the latest values and `plots/metrics/<name>.tsv` with columns step and value),
so `dvc plots`, DVC's VS Code extension and any DVCLive reader follow the curves as they grow.

The files are written here rather than through DVCLive itself: inside a pipeline stage `Live()`
opens the DVC repository (dvclive 3.49 initialises one in the enclosing git repository where there
is none) and fails with "Empty git repo" in a repository without commits, which stops `dvc repro`
in a fresh project; none of its repository features are used by a stage. The log starts empty at
each run and is replayed from the checkpoint on a resume, so a resumed run's log is row for row an
uninterrupted run's.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from multvae.atomic import write_json
from multvae.errors import MultVAEError

LOGGED = ("loss", "nll", "kl", "beta")  # and every val_<metric>; wall-clock time is not logged


class LogError(MultVAEError):
    """A training log folder is missing or unreadable; the message names it."""


class EpochLog:
    """One log folder (dvclive/<variant>/fold-<k>/seed-<s>): metrics.json and plots/metrics/<name>.tsv, the
    step being the epoch. Each epoch's line is appended and flushed at once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.metrics = self.folder / "plots" / "metrics"
        if self.metrics.is_dir():
            for old in self.metrics.glob("*.tsv"):
                old.unlink()
        self.metrics.mkdir(parents=True, exist_ok=True)
        (self.folder / "metrics.json").unlink(missing_ok=True)

    def __call__(self, row: dict) -> None:
        latest: dict[str, float | int] = {}
        for name, value in row.items():
            if name in LOGGED or name.startswith("val_"):
                path = self.metrics / f"{name}.tsv"
                new = not path.exists()
                with open(path, "a") as fh:
                    fh.write(f"step\t{name}\n" if new else "")
                    fh.write(f"{int(row['epoch'])}\t{float(value)!r}\n")
                latest[name] = float(value)
        write_json(self.folder / "metrics.json", {**latest, "step": int(row["epoch"])})


def read_log(folder: Path, fold: int, seed: int) -> pd.DataFrame:
    """A DVCLive folder's per-metric TSVs as one table: fold, seed, epoch and a column per metric."""
    files = sorted((Path(folder) / "plots" / "metrics").glob("*.tsv"))
    if not files:
        raise LogError(f"{folder}: no per-epoch log (plots/metrics/*.tsv); run the train stage")
    table: pd.DataFrame | None = None
    for path in files:
        try:
            column = pd.read_csv(path, sep="\t")
        except (OSError, ValueError) as exc:
            raise LogError(f"{path}: cannot read the training log: {exc}") from None
        if "step" not in column.columns or path.stem not in column.columns:
            raise LogError(f"{path}: expected DVCLive's step and {path.stem} columns")
        column = column[["step", path.stem]].rename(columns={"step": "epoch"})
        table = column if table is None else table.merge(column, on="epoch", how="outer")
    assert table is not None
    table.insert(0, "fold", int(fold))
    table.insert(1, "seed", int(seed))
    return table.sort_values("epoch", ignore_index=True)
