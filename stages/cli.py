"""The `multvae` command: every DVC stage's command, plus tools for use outside the pipeline.

Only wiring: each command lives in its own module and loads the library when it runs.
"""

from __future__ import annotations

import typer

from stages.aggregate import aggregate
from stages.baselines import ease, popularity, rp3beta
from stages.blend import blend
from stages.download import download
from stages.evaluate import evaluate
from stages.prepare import prepare
from stages.tools.docs import docs
from stages.tools.extend_grids import extend_grids
from stages.tools.recommend import recommend
from stages.tools.redraw import redraw
from stages.tools.synthesize import synthesize
from stages.train import train

app = typer.Typer(
    help="Mult-VAE (Liang et al., WWW 2018) and its ablations as a reproducible DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's panels print flags as "<bool>" with this click
)
for command in (download, prepare, train, evaluate, popularity, ease, rp3beta, blend, aggregate, recommend,
                synthesize, docs, extend_grids, redraw):
    app.command()(command)
