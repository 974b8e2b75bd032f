"""DVC stage `download`: the selected MovieLens release (or data.source, or synthetic data) as Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, distinct_paths, user_errors


@user_errors
def download(
    params: ParamsOption = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="Folder for ratings.parquet and movies.parquet.")] = Path(
        "data/raw"),
    progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                           help="Show a download progress bar.")] = True,
) -> None:
    """Fetch and verify the release named by data.dataset, or read data.source; write data/raw/.

    DVC runs this stage on every `dvc repro` (the bytes behind data.source are not a parameter DVC
    can see); it hashes the source and rewrites nothing when that is what data/raw was made from."""
    from multvae.download import materialize
    from multvae.params import load_params

    cfg = load_params(params).base
    given = Path(cfg.data.source) if cfg.data.source is not None else None
    source = {"data.source": given} if given is not None and given.is_file() else {}  # else: its own error
    distinct_paths({"--params": params, **source}, {"--out": out})
    info, wrote = materialize(cfg.data, out, show_progress=progress)
    state = "->" if wrote else "already in"
    typer.echo(f"download: {info['dataset']}, {info['ratings']:,} ratings of {info['users']:,} users "
               f"on {info['movies']:,} movies {state} {out}")
