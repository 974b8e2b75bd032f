"""`multvae redraw`: a committed study's forest plot of paired differences, drawn from its table.

For studies whose inputs are not on this machine (ML-1M's per-user results): the figure comes from
results/<study>/table.csv (the numbers) and table.md (each comparison column's title), through the
same function aggregate uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from stages.common import user_errors


@user_errors
def redraw(
    study: Annotated[Path, typer.Argument(help="A committed study's folder, e.g. results/ml1m_kfold.")],
    confidence: Annotated[float, typer.Option(help="The study's eval.confidence.")] = 0.95,
) -> None:
    """Draw <study>/differences.png from <study>/table.csv and table.md."""
    import json

    import pandas as pd

    from multvae.errors import MultVAEError
    from multvae.figures import plot_differences

    table_csv, table_md, stats = study / "table.csv", study / "table.md", study / "stats.json"
    for path in (table_csv, table_md, stats):
        if not path.is_file():
            raise MultVAEError(f"{path}: not found; give a folder the aggregate stage wrote")
    frame = pd.read_csv(table_csv)
    header = next((line for line in table_md.read_text().splitlines() if line.startswith("| Experiment")), "")
    deltas = [cell.strip() for cell in header.split("|") if cell.strip().startswith("Δ ")]
    families = [c.removeprefix("diff_") for c in frame.columns
                if re.fullmatch(r"diff_.+", c) and not c.endswith(("_low", "_high"))]
    if len(deltas) != len(families):
        raise MultVAEError(f"{table_md}: {len(deltas)} Δ columns, {table_csv} has {len(families)} comparison "
                           "families; rerun the study's aggregate stage")
    dataset = str(json.loads(stats.read_text()).get("dataset", "unknown data"))
    plot_differences(frame, dict(zip(families, deltas, strict=True)), study / "differences.png", confidence,
                     dataset)
    typer.echo(f"redraw: {study / 'differences.png'} ({len(families)} families)")
