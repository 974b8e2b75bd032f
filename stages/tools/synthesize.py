"""`multvae synthesize`: write synthetic ratings as a MovieLens-style CSV (for tests and scale checks)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from multvae.config import SYNTHETIC_PRESETS
from stages.common import user_errors


@user_errors
def synthesize(
    out: Annotated[Path, typer.Argument(help="CSV to write (.csv, or .csv.gz for gzip).")],
    size: Annotated[str, typer.Option(help=f"Preset: {', '.join(SYNTHETIC_PRESETS)}.")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate seeded ratings with planted tastes; `--size ml-20m` gives about 20M ratings."""
    from multvae.atomic import atomic_path
    from multvae.synthetic import generate, write_ratings_csv

    if size not in SYNTHETIC_PRESETS:
        raise typer.BadParameter(f"unknown size {size!r}; expected one of {', '.join(SYNTHETIC_PRESETS)}")
    cfg = dataclasses.replace(SYNTHETIC_PRESETS[size], seed=seed)
    ratings, _ = generate(cfg)
    with atomic_path(out) as tmp:
        write_ratings_csv(ratings, tmp, gzip=out.suffix == ".gz")
    typer.echo(f"synthesize: {len(ratings):,} ratings of {cfg.users:,} users on {cfg.items:,} items -> {out}")
