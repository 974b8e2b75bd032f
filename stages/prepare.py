"""DVC stage `prepare`: binarize the ratings and split them into Parquet tables under data/prepared/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, distinct_paths, user_errors


@user_errors
def prepare(
    params: ParamsOption = Path("params.yaml"),
    raw: Annotated[Path, typer.Option(help="Output folder of the download stage.")] = Path("data/raw"),
    out: Annotated[Path, typer.Option(help="Folder for the split tables.")] = Path("data/prepared"),
    stats: Annotated[Path, typer.Option(help="Counts per split, as JSON.")] = Path("data/stats.json"),
) -> None:
    """Binarize (rating >= data.min_rating), drop sparse users, split by data.split into
    <out>/fold-<k> for each fold of data.folds."""
    from multvae.data import read_raw, read_source_info
    from multvae.layout import fold_dir
    from multvae.params import load_params
    from multvae.split import split, write_split

    distinct_paths({"--params": params, "--raw": raw}, {"--out": out, "--stats": stats})
    read = load_params(params)
    cfg = read.base
    ratings, movies = read_raw(raw)
    folds = split(ratings, cfg.data, movies)
    source = read_source_info(raw)
    read.check_unchanged()
    write_split(folds, out, stats, {"dataset": source.get("dataset", cfg.data.dataset),
                                    "duplicate_ratings_dropped": source.get("duplicate_ratings_dropped", 0)})
    for fold, result in folds.items():
        s = result.stats
        where = f" fold {fold} of {cfg.data.kfold}" if cfg.data.kfold > 1 else ""
        typer.echo(f"prepare ({cfg.data.split}{where}): {s['users_kept']:,} users, {s['items']:,} items, "
                   f"{s['positives']:,} positives; train {s['train_users']:,} users, "
                   f"validation {s['validation_users']:,}, test {s['test_users']:,} -> {fold_dir(out, fold)}")
