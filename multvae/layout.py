"""Where every run's files live, in one place: a training run is one (variant, fold, seed).

data/prepared/fold-<k>/                 the prepare stage's tables of fold k
models/<variant>/fold-<k>/seed-<s>.pt   the trained model of one run
dvclive/<variant>/fold-<k>/seed-<s>/    its per-epoch log (also the checkpoints' layout)
"""

from __future__ import annotations

from pathlib import Path


def fold_dir(prepared: Path | str, fold: int) -> Path:
    return Path(prepared) / f"fold-{fold}"


def run_path(root: Path | str, variant: str, fold: int, seed: int, suffix: str = "") -> Path:
    """`<root>/<variant>/fold-<fold>/seed-<seed><suffix>`: a model (suffix .pt) or a log folder."""
    return Path(root) / variant / f"fold-{fold}" / f"seed-{seed}{suffix}"


def train_stage(variant: str, fold: int, seed: int) -> str:
    """The dvc.yaml stage that trains one run (its matrix: variant x seed x fold)."""
    return f"train@{variant}-{seed}-{fold}"
