"""The options naming the evaluate stages' outputs, declared once for the commands that read them
(aggregate, extend-grids). Apart from stages/common.py so that they are no dependency of training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

MetricsDirOption = Annotated[Path, typer.Option(help="Folder of <variant>.json test metrics.")]
PerUserDirOption = Annotated[Path, typer.Option(help="Folder of <variant>.parquet per-user metrics.")]
CurvesDirOption = Annotated[Path, typer.Option(help="DVCLive training logs, <variant>/fold-<k>/seed-<s>.")]
StatsOption = Annotated[Path, typer.Option(
    help="The split's statistics (data/stats.json): its fingerprint and test users by fold.")]
