"""Verdicts on the papers' claims, computed by the pipeline rather than written by hand.

Each claim in params.yaml (`claims:`) says that a row is better or worse than a reference on a
metric. Every claim whose two rows the study ran is tested like any comparison of the table
(users and training runs counted). One comparison has one verdict: a claim that is a comparison
of one of the table's families (either way round) takes that family's Holm adjustment, so its
star and its verdict agree; the other claims form one more family, `claims`, adjusted together:
  - holds: Holm p below the level and the difference in the claimed direction;
  - contradicted: Holm p below the level and the difference the other way;
  - paper's effect excluded: neither of those, but the data rule out the difference the source
    itself printed (`paper_diff`, from the paper's results in data/, multvae/paper_results.py): the
    test of Δ = paper_diff rejects after Holm's adjustment over every claim that has one: the
    source's effect is not what this data shows, though a smaller one may be there;
  - not resolvable: otherwise; the smallest difference the design detects with 80% power says how
    large a true effect could have gone unseen.
The verdict's code (1, -1, 2, 0) sits beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from multvae.config import ClaimConfig
from multvae.paper_results import PaperResults
from multvae.rows import Result
from multvae.stats import Estimate, holm
from multvae.table import POWER, Family, compare, label, metric_title, percent
from multvae.table_markdown import UNCOUNTED, number

EXCLUDED = "paper's effect excluded"
VERDICTS = {"holds": 1, "contradicted": -1, EXCLUDED: 2, "not resolvable": 0}
COUNT_KEYS = {"holds": "holds", "contradicted": "contradicted", EXCLUDED: "paper_effect_excluded",
              "not resolvable": "not_resolvable"}
CLAIMS_FAMILY = "claims"  # the claims that no family of the table holds, adjusted together


def verdict_counts(verdicts: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How many claims have each verdict: the study's claims as DVC metrics (numbers only; each
    claim's verdict and why are in results/<study>/claims.json)."""
    return {COUNT_KEYS[word]: sum(v["verdict"] == word for v in verdicts.values()) for word in VERDICTS}


def _against(est: Estimate, value: float) -> float:
    """Two-sided p of the test that the true difference is `value`, on the estimate's t reference."""
    if est.se == 0.0:
        return 1.0 if est.mean == value else 0.0
    return float(2 * sps.t.sf(abs(est.mean - value) / est.se, est.dof))


def _in_family(claim: ClaimConfig, metric: str, families: list[Family]) -> tuple[Family, str] | None:
    """The table's family holding the claim's comparison, and the row it is under there."""
    for family in families:
        if family.metric != metric:
            continue
        if family.reference == claim.reference and claim.row in family.rows:
            return family, claim.row
        if family.reference == claim.row and claim.reference in family.rows:
            return family, claim.reference
    return None


def check_claims(claims: dict[str, ClaimConfig], results: dict[str, Result], metrics: list[str],
                 confidence: float, table: pd.DataFrame, families: list[Family],
                 printed: PaperResults | None = None,
                 test_to_train: float = 0.0) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(verdicts by claim name, one line per claim the study cannot check, saying why). `table` and
    `families` are build_table's: a claim inside a family takes its Holm p and detectable difference;
    `printed`, a paper's own results, gives its claims the paper's difference."""
    alpha = 1 - confidence
    skipped, checked = [], {}
    for name, claim in claims.items():
        metric = claim.metric or metrics[0]  # a metric outside eval.ks is refused with the params
        absent = [n for n in (claim.row, claim.reference) if n not in results]
        unscored = [n for n in (claim.row, claim.reference) if n in results and results[n].per_user is None]
        if absent:
            skipped.append(f"{name}: {', '.join(absent)} not run in this study")
        elif unscored:
            skipped.append(f"{name}: no per-user results of {', '.join(unscored)}")
        else:
            checked[name] = (claim, metric, compare(results[claim.row], results[claim.reference], metric,
                                                    confidence, test_to_train))
    by_row = table.set_index("variant")
    placed = {name: _in_family(claim, metric, families) for name, (claim, metric, _) in checked.items()}
    rest = [name for name, where in placed.items() if where is None]
    rest_holm = dict(zip(rest, holm([checked[n][2].p_value for n in rest]), strict=True))
    paper_diff = {name: printed.difference(claim.source, claim.row, claim.reference, metric)
                  for name, (claim, metric, _) in checked.items()} if printed is not None else {}
    stated = [name for name, diff in paper_diff.items() if diff is not None]
    p_paper = {n: _against(checked[n][2], float(paper_diff[n] or 0.0)) for n in stated}
    paper_holm = dict(zip(stated, holm([p_paper[n] for n in stated]), strict=True))
    verdicts = {}
    for name, (claim, metric, est) in checked.items():
        where = placed[name]
        if where is None:
            family, p_holm = CLAIMS_FAMILY, float(rest_holm[name])
            detectable = est.detectable(alpha / len(rest), POWER)
        else:
            family = where[0].name
            p_holm = float(by_row.at[where[1], f"p_holm_{family}"])
            detectable = float(by_row.at[where[1], f"detectable_{family}"])
        direction = 1.0 if claim.expect == "better" else -1.0
        if p_holm < alpha:
            verdict = "holds" if direction * est.mean > 0 else "contradicted"
        elif name in paper_holm and paper_holm[name] < alpha:
            verdict = EXCLUDED
        else:
            verdict = "not resolvable"
        verdicts[name] = {
            "row": claim.row, "reference": claim.reference, "metric": metric, "expect": claim.expect,
            # Full precision: claims.md rounds once from these, as the table does from its own.
            "source": claim.source, "diff": est.mean, "low": est.low, "high": est.high, "p": est.p_value,
            "family": family, "p_holm": p_holm, "detectable": detectable, "paper_diff": paper_diff.get(name),
            "p_paper": p_paper.get(name),
            "p_paper_holm": float(paper_holm[name]) if name in paper_holm else None,
            "runs_counted": est.runs_counted, "verdict": verdict, "verdict_code": VERDICTS[verdict],
        }
    return verdicts, skipped


def claims_markdown(verdicts: dict[str, dict[str, Any]], labels: dict[str, str], dataset: str,
                    confidence: float, unchecked: list[str] | None = None) -> str:
    """The verdicts as a table for the docs (rendered from claims.json's content), and the claims of
    params.yaml the study could not check, each with its reason."""
    skipped = f"Not checked by this study: {'; '.join(unchecked)}." if unchecked else ""
    if not verdicts:
        return "\n".join([f"# Claims checked: {dataset}", "",
                          "No claim of params.yaml `claims:` has both its rows in this study.",
                          *(["", skipped] if skipped else [])]) + "\n"
    lines = [f"# Claims checked: {dataset}", "",
             "| Claim | Source | Δ [interval] | p | Holm p (family) | Detectable | Paper's Δ (Holm p) "
             "| Verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts.values():
        claim = (f"{label(v['row'], labels)} {v['expect']} than {label(v['reference'], labels)} "
                 f"on {metric_title(v['metric'])}{'' if v['runs_counted'] else ' ' + UNCOUNTED}"
                 ).replace("|", "\\|")
        interval = f"{number(v['diff'], True)} [{number(v['low'], True)}, {number(v['high'], True)}]"
        lines.append(f"| {claim} | {v['source']} | {interval} | "
                     f"{_p(v['p'])} | {_p(v['p_holm'])} (`{v['family']}`) | {v['detectable']:.4f} | "
                     f"{_paper(v)} | {v['verdict']} |")
    alpha = 1 - confidence
    uncounted = [] if all(v["runs_counted"] for v in verdicts.values()) else [
        f"- {UNCOUNTED}: a row trained once on one fold, so its run-to-run spread is unknown and left out "
        "of the test: the verdict is optimistic (run several train.seeds)."]
    lines += ["", f"- Δ: the row minus the reference, mean over the same test users, with its "
              f"{percent(confidence)} interval (users and training runs counted, not adjusted). Holm p: "
              "adjusted over the family named beside it: the table's family that holds the same comparison "
              f"(so its star and the verdict agree), or `{CLAIMS_FAMILY}`, the claims no family holds. "
              "Paper's Δ: the difference the source prints, and the Holm-adjusted p of the test that "
              "this data's difference equals it (over the claims that state one). "
              f"A claim holds when Holm p < {alpha:.2g} "
              "and Δ has the claimed sign, is contradicted when Holm p < {a} and Δ has the other sign; "
              f"otherwise the {EXCLUDED} when the paper's Δ has Holm p < {{a}}, and it is not resolvable. "
              f"Detectable: the smallest true Δ found with {percent(POWER)} power at the strictest Holm step."
              .replace("{a}", f"{alpha:.2g}"), *uncounted, *([f"- {skipped}"] if skipped else [])]
    return "\n".join(lines) + "\n"


def _p(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}" if not np.isnan(p) else ""


def _paper(verdict: dict[str, Any]) -> str:
    if verdict["paper_diff"] is None:
        return ""
    return f"{number(verdict['paper_diff'], True)} ({_p(verdict['p_paper_holm'])})"
