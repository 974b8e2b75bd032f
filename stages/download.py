"""DVC stage `download`: the selected MovieLens release (or data.source, or synthetic data) as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, user_errors


@user_errors
def download(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for ratings.parquet and movies.parquet.")] = Path(
        "data/raw"),
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show a download progress bar.")] = True,
) -> None:
    """Fetch and verify the release named by data.dataset, or read data.source; write data/raw/."""
    from multvae.config import load_config
    from multvae.download import materialize

    cfg = load_config(params)
    info = materialize(cfg.data, out, show_progress=progress)
    typer.echo(f"download: {info['ratings']:,} ratings of {info['users']:,} users "
               f"on {info['movies']:,} movies -> {out}")
