"""The `multvae` command: every DVC stage's command, plus helpers for use outside the pipeline."""

from __future__ import annotations

import typer

from stages.aggregate import aggregate
from stages.baselines import ease, popularity
from stages.download import download
from stages.evaluate import evaluate
from stages.prepare import prepare
from stages.recommend import recommend
from stages.synthesize import synthesize
from stages.train import train

app = typer.Typer(
    help="Mult-VAE (Liang et al., WWW 2018) and its ablations as a reproducible DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(download)
app.command()(prepare)
app.command()(train)
app.command()(evaluate)
app.command()(popularity)
app.command()(ease)
app.command()(aggregate)
app.command()(recommend)
app.command()(synthesize)
