"""DVC stage `prepare`: binarize the ratings and split them into Parquet tables under data/prepared/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

from multvae.config import load_config
from multvae.data import DataError, write_split
from multvae.split import split
from stages.common import ParamsOption, user_errors


@user_errors
def prepare(
    params: ParamsOption = Path("params.yaml"),
    raw: Annotated[Path, typer.Option(help="Output folder of the download stage.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the split tables.")] = Path("data/prepared"),
    stats: Annotated[Path, typer.Option(help="Counts per split, as JSON.")] = Path("data/stats.json"),
) -> None:
    """Binarize (rating >= data.min_rating), drop sparse users, split by data.split."""
    cfg = load_config(params)
    ratings, movies = (_read_raw(raw / name) for name in ("ratings.parquet", "movies.parquet"))
    # Arrow's allocator keeps the decoded Parquet buffers (about 0.6 GB at ML-20M) after the
    # conversion to pandas; hand them back before the split, which is where the peak is.
    pa.default_memory_pool().release_unused()
    result = split(ratings, cfg.data, movies)
    write_split(result, out, stats)
    s = result.stats
    typer.echo(f"prepare ({cfg.data.split}): {s['users_kept']:,} users, {s['items']:,} items, "
               f"{s['positives']:,} positives; train {s['train_users']:,} users, "
               f"validation {s['validation_users']:,}, test {s['test_users']:,} -> {out}")


def _read_raw(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path} not found: run the download stage first (`dvc repro download`)")
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc}); run the download stage again "
                        "(`dvc repro -f download`)") from exc
