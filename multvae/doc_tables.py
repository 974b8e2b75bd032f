"""Result tables in the documentation, copied from the committed files the pipeline wrote.

A block `<!-- table: results/<study>/table.md -->` … `<!-- end table -->` in a Markdown page holds
the table lines of that file, verbatim; the block `<!-- table: headline -->` holds the README's
headline, built from results/ml1m_kfold/table.csv and the studies' claims.json. `refresh` rewrites
every block from its source; `stale` names the blocks that differ, so a test fails when a number in
the docs is not the committed one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import yaml

from multvae.config import CONTROL_BLEND, EvalConfig, validate
from multvae.errors import MultVAEError
from multvae.table import percent

BLOCK = re.compile(r"(<!-- table: (?P<source>[^ ]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


class DocTableError(MultVAEError):
    """A block names a results file that is not there."""


def table_lines(markdown: str) -> str:
    """The lines of a Markdown file that belong to its tables."""
    return "".join(line + "\n" for line in markdown.splitlines() if line.startswith("|"))


HEADLINE = "headline"
# The headline's rows: the 10-fold ML-1M study's models, in the order a reader compares them.
HEADLINE_STUDY = "ml1m_kfold"
HEADLINE_ROWS = {"original": "Mult-VAE (the paper's model)",
                 "recvae": "RecVAE recipe (γ chosen on each fold)", "ease": "EASE", "rp3beta": "RP3β",
                 "recvae_ease": "RecVAE + EASE (blend; γ, w on each fold)",
                 "rp3beta_ease": "RP3β + EASE (the control blend)"}
# Where the ablation paper's claims were checked: on ML-1M, and on the shipped data (every user by
# 10-fold, and the default study's 60).
CLAIM_STUDIES = ("ml1m_paper", "kfold", "default")
DETECTABLE = "detectable_vs_original"  # what each design resolves: the smallest Δ found with 80% power
EXCLUDED = "paper's effect excluded"
VERDICTS = ("holds", "contradicted", EXCLUDED, "not resolvable")


def _interval(row: pd.Series, prefix: str) -> str:
    return f"{row[prefix]:+.4f} [{row[prefix + '_low']:+.4f}, {row[prefix + '_high']:+.4f}]"


def _delta(row: pd.Series, family: str, reference: bool, alpha: float) -> str:
    """A row's difference in one comparison family, starred where its Holm p is below the study's α."""
    if reference:
        return "(reference)"
    if pd.isna(row.get(f"diff_{family}")):
        return ""
    star = " *" if row[f"p_holm_{family}"] < alpha else ""
    return _interval(row, f"diff_{family}") + star


def _confidence(folder: Path) -> float:
    """The confidence the study's intervals and Holm families were computed at, from its params."""
    source = folder / "params.yaml"
    values = yaml.safe_load(source.read_text()) or {}
    return float(validate(EvalConfig, values.get("eval"), f"{source}: eval.").confidence)


def headline(root: Path) -> str:
    """The README's two headline tables: ML-1M by 10-fold, and the ablation paper's claims by study."""
    source = root / "results" / HEADLINE_STUDY / "table.csv"
    frame = pd.read_csv(source).set_index("variant")
    missing = [name for name in HEADLINE_ROWS if name not in frame.index]
    if missing:
        raise DocTableError(f"{source}: no row {', '.join(missing)} for the README's headline")
    users = int(frame["test_users"].max())
    confidence = _confidence(source.parent)
    shown = f"[{percent(confidence)} interval]"
    lines = [f"| ML-1M, 10 folds: all {users:,} users tested once | NDCG@100 {shown} | "
             f"Δ vs EASE {shown} | Δ vs the control blend {shown} |", "|---|---|---|---|"]
    for name, label in HEADLINE_ROWS.items():
        row = frame.loc[name]
        ndcg = f"{row['ndcg@100']:.4f} [{row['ndcg@100_low']:.4f}, {row['ndcg@100_high']:.4f}]"
        deltas = [_delta(row, "vs_best_baseline", name == "ease", 1 - confidence),
                  _delta(row, "vs_control_blend", name == CONTROL_BLEND, 1 - confidence)]
        lines.append(f"| {label} | {ndcg} | {' | '.join(deltas)} |")
    lines += ["", f"\\* : Holm-adjusted p < {1 - confidence:.2g} in its comparison family."]
    lines += ["", "| the ablation paper's claims, checked by | " + " | ".join(VERDICTS)
              + " | Δ NDCG@100 vs the original it detects |", "|" + "---|" * (2 + len(VERDICTS))]
    for study in CLAIM_STUDIES:
        folder = root / "results" / study
        claims = json.loads((folder / "claims.json").read_text())
        table = pd.read_csv(folder / "table.csv")
        stats = json.loads((folder / "stats.json").read_text())
        seeds, folds = int(table["seeds"].max()), int(stats.get("kfold", 1))
        design = (f"`{study}`: {stats['dataset']}, {int(table['test_users'].max()):,} test users"
                  + (f" ({folds} folds)" if folds > 1 else "")
                  + f", {seeds} seed{'s' if seeds > 1 else ''}" + (" a fold" if folds > 1 else ""))
        if DETECTABLE not in table.columns:
            raise DocTableError(f"{folder / 'table.csv'}: no {DETECTABLE} column (no vs_original family) for "
                                "the README's headline")
        detectable = table[DETECTABLE].dropna()
        resolves = f"{detectable.min():.3f} to {detectable.max():.3f}"
        paper = [c for c in claims.values() if c["source"].startswith("ablation paper")]
        checked = all("p_paper_holm" in c for c in paper)  # a study aggregated before paper_diff: not asked
        cells = [str(sum(c["verdict"] == v for c in paper)) if checked or v != EXCLUDED else "not checked"
                 for v in VERDICTS]
        lines.append(f"| {design} | " + " | ".join(cells) + f" | {resolves} |")
    return "\n".join(lines) + "\n"


def _expected(source: str, root: Path, page: Path) -> str:
    if source == HEADLINE:
        return headline(root)
    path = root / source
    if not path.is_file():
        raise DocTableError(f"{page}: the table block names {source}, which does not exist under {root}")
    return table_lines(path.read_text())


def refresh(text: str, root: Path, page: Path) -> str:
    """`text` with every block's body replaced by its source's table lines."""
    return BLOCK.sub(lambda m: m.group(1) + _expected(m.group("source"), root, page) + m.group(4), text)


def stale(text: str, root: Path, page: Path) -> list[str]:
    """The sources whose block in `text` differs from the committed file."""
    return [m.group("source") for m in BLOCK.finditer(text)
            if m.group("body") != _expected(m.group("source"), root, page)]


def sources(text: str) -> list[str]:
    return [m.group("source") for m in BLOCK.finditer(text)]
