"""The `multvae` command: every DVC stage's command, plus tools for use outside the pipeline.

Only wiring: each command lives in its own module and loads the library when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from stages.aggregate import aggregate
from stages.baselines import ease, popularity, rp3beta
from stages.blend import blend, control_blend
from stages.download import download
from stages.evaluate import evaluate
from stages.prepare import prepare
from stages.tools.docs import docs
from stages.tools.extend_grids import extend_grids
from stages.tools.plan import plan
from stages.tools.recommend import recommend
from stages.tools.redraw import redraw
from stages.tools.run import run
from stages.tools.slurm import slurm
from stages.tools.synthesize import synthesize
from stages.train import train

app = typer.Typer(
    help="Mult-VAE (Liang et al., WWW 2018) and its ablations as a reproducible DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's panels print flags as "<bool>" with this click
)
# One line each in `multvae --help` (click would cut the docstrings' first sentences mid-way).
SUMMARIES: dict[Callable[..., Any], str] = {
    download: "Fetch or read the ratings named by data.dataset.",
    prepare: "Binarise the ratings and split users into folds.",
    train: "Train one variant with one seed on one fold.",
    evaluate: "Score a variant's models on each fold's test users.",
    popularity: "Most-popular baseline.",
    ease: "EASE baseline, λ tuned on validation users.",
    rp3beta: "RP3β baseline, α and β tuned on validation users.",
    blend: "Blend a variant's scores with EASE's.",
    control_blend: "Blend RP3β's scores with EASE's (the blends' control).",
    aggregate: "The study's table, claims, figures and results/.",
    recommend: "Recommend movies with a trained variant.",
    synthesize: "Write seeded synthetic ratings.",
    docs: "Copy committed result tables into the docs.",
    extend_grids: "Add grid points past tuning choices at an edge.",
    redraw: "Draw a committed study's forest plot from its table.",
    plan: "The study's runs, what is done, and the time the rest take.",
    run: "dvc repro with the study's plan first and a progress line.",
    slurm: "Write the study's Slurm jobs from its stage list.",
}
for command, summary in SUMMARIES.items():
    app.command(short_help=summary)(command)
