"""Studies by name: params.yaml is the composition of conf/, every study composes into parameters
that load, and every result table in the docs is the committed file it names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from multvae.config import ConfigError
from multvae.doc_tables import HEADLINE, HEADLINE_STUDY, headline, refresh, sources, stale, table_lines
from multvae.params import load_params

REPO = Path(__file__).resolve().parents[1]

STUDIES = sorted(p.stem for p in (REPO / "conf" / "study").glob("*.yaml"))
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture
def composed(tmp_path, compose):
    """This repository's conf/ composed with the given overrides, into a params file."""
    (tmp_path / "conf").symlink_to(REPO / "conf")
    return lambda *overrides: compose(tmp_path, list(overrides))


def test_params_yaml_is_the_composition_of_the_default_study(composed):
    """`dvc repro` reads params.yaml as it is and `dvc exp run` rewrites it from conf/: the two must
    agree, or the first command of the README would run something conf/ does not say."""
    assert (REPO / "params.yaml").read_text() == composed().read_text(), (
        "params.yaml is not the composition of conf/: run `dvc exp run` (or compose it) and commit it")


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_composes_into_parameters_that_load(composed, study):
    params = load_params(composed(f"study={study}"))
    assert params.study.name == study  # its results folder is results/<file name>
    assert params.study.rows, "dvc.yaml's train matrix iterates study.rows: it must list them"
    assert params.config().data.dataset != "synthetic"
    raw = yaml.safe_load(params.text)
    for stage, key in _listed_params():
        node = raw
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, (
                f"dvc.yaml stage {stage} lists {key}, which study {study} does not define: DVC would stop "
                "with 'Parameters are missing'")
            node = node[part]


def _listed_params() -> list[tuple[str, str]]:
    """(stage, dotted key) of every parameter dvc.yaml lists, the matrix's own variants.<name> aside."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            for key in ([entry] if isinstance(entry, str) else list(entry.values())[0]):
                if "${" not in key:
                    listed.append((name, key))
    return listed


def test_the_default_study_runs_the_papers_eight_rows_on_the_shipped_data_with_three_seeds():
    params = load_params(REPO / "params.yaml")
    assert params.study.name == "default"
    assert params.rows == ["original", "latent_300", "two_hidden_layers", "relu", "sgd", "cyclical_cap_1",
                           "cyclical_cap_0_2", "user_scaled"]
    data = params.config().data
    assert data.dataset == "ml-latest-small" and (REPO / str(data.source)).is_file()
    assert (REPO / "data" / "ml-latest-small" / "README.txt").is_file()  # the licence ships beside it
    assert params.config().train.seeds == (1, 2, 3)


def test_the_quick_study_shortens_every_row_it_runs(composed):
    from multvae.training import epoch_count

    params = load_params(composed("study=quick"))
    assert any(params.config(row).optim.scheme == "alternating" for row in params.rows)  # RecVAE's
    assert all(epoch_count(params.config(row), 483) <= 20 for row in params.rows)


UPDATES_PER_PASS = 10  # what the paper's batch of 500 makes on ML-1M's training users


@pytest.mark.parametrize("study", [s for s in STUDIES if s != "paper"])
def test_every_row_of_a_study_gets_the_same_passes_each_of_ten_updates_or_more(composed, study):
    """The budget rule (docs/pipeline.md): every row of a study trains train.epochs passes over each
    fold's training users (RecVAE's epoch is 4 of them; RecVAE's update floor never adds an epoch),
    at a batch size that makes each pass at least 10 updates, as the paper's 500 do on ML-1M. The
    training users are each fold's, from the study's committed split statistics."""
    from multvae.training import epoch_count, epoch_phases, updates_per_epoch

    stats = REPO / "results" / study / "stats.json"
    assert stats.is_file(), f"{stats}: run the study and commit its results"
    folds = json.loads(stats.read_text())["folds"]
    params = load_params(composed(f"study={study}"))
    for row in params.rows:
        cfg = params.config(row)
        passes_per_epoch = sum(phase.passes for phase in epoch_phases(cfg))
        for fold in folds.values():
            users = fold["train_users"]
            epochs = epoch_count(cfg, users)
            assert epochs * passes_per_epoch == params.base.train.epochs == cfg.train.epochs, (row, users)
            assert updates_per_epoch(cfg, users) / passes_per_epoch >= UPDATES_PER_PASS, (row, users)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_result_table_in_the_docs_is_the_committed_file_it_names(page):
    text = page.read_text()
    assert not stale(text, REPO, page), f"{page}: tables differ from their files; run `multvae docs`"
    for source in sources(text):
        if source != HEADLINE:
            assert table_lines((REPO / source).read_text()), f"{source} holds no table"


def test_a_changed_number_in_a_docs_table_is_caught(tmp_path):
    results = tmp_path / "results" / "s"
    results.mkdir(parents=True)
    (results / "table.md").write_text("# heading\n\n| a | b |\n|---|---|\n| x | 0.3982 |\n\nlegend\n")
    page = tmp_path / "page.md"
    page.write_text("text\n<!-- table: results/s/table.md -->\n<!-- end table -->\nmore\n")
    fresh = refresh(page.read_text(), tmp_path, page)
    assert "| x | 0.3982 |" in fresh and not stale(fresh, tmp_path, page)
    assert stale(fresh.replace("0.3982", "0.3983"), tmp_path, page) == ["results/s/table.md"]


def test_the_readme_opens_with_the_headline_from_the_committed_results(tmp_path):
    """Within its first 40 lines; a number changed in results/ changes the headline, so the README's
    block goes stale."""
    readme = (REPO / "README.md").read_text()
    first = "\n".join(readme.splitlines()[:40])
    assert "<!-- table: headline -->" in first and "<!-- end table -->" in first
    assert "./setup.sh" in first and "Alajeel" in first
    shutil.copytree(REPO / "results", tmp_path / "results")
    assert not stale(readme, tmp_path, REPO / "README.md")
    table = tmp_path / "results" / HEADLINE_STUDY / "table.csv"
    frame = pd.read_csv(table)
    frame.loc[frame["variant"] == "recvae", "ndcg@100"] += 0.0001
    frame.to_csv(table, index=False)
    assert stale(readme, tmp_path, REPO / "README.md") == [HEADLINE]
    claims = tmp_path / "results" / "default" / "claims.json"
    verdicts = json.loads(claims.read_text())
    paper = [c["verdict"] for c in verdicts.values() if c["source"].startswith("ablation paper")]

    def counts(verdicts: list[str]) -> str:
        names = ("holds", "contradicted", "paper's effect excluded", "not resolvable")
        return "| " + " | ".join(str(verdicts.count(v)) for v in names) + " |"

    assert counts(paper) in headline(tmp_path)
    assert verdicts["latent_300_worse"]["verdict"] == "not resolvable"
    verdicts["latent_300_worse"]["verdict"] = "contradicted"
    claims.write_text(json.dumps(verdicts))
    changed = [c["verdict"] for c in verdicts.values() if c["source"].startswith("ablation paper")]
    assert counts(changed) != counts(paper) and counts(changed) in headline(tmp_path)
    for claim in verdicts.values():  # a study aggregated before claims carried the paper's differences
        claim.pop("p_paper_holm", None)
    claims.write_text(json.dumps(verdicts))
    unchecked = counts(changed).split(" | ")
    unchecked[2] = "not checked"
    assert " | ".join(unchecked) in headline(tmp_path)


def test_the_headline_sets_each_blend_against_ease_and_against_the_control_blend():
    """The blend's row carries both differences its table computed, each in its own column and
    starred by its own Holm p, so a reader sees whether the gain over EASE is more than the control
    blend's."""
    frame = pd.read_csv(REPO / "results" / HEADLINE_STUDY / "table.csv").set_index("variant")
    lines = {line.split(" | ")[0][2:]: line for line in headline(REPO).splitlines() if line.startswith("| ")}
    row = frame.loc["recvae_ease"]

    def cell(family: str) -> str:
        star = " *" if row[f"p_holm_{family}"] < 0.05 else ""
        return (f"{row[f'diff_{family}']:+.4f} [{row[f'diff_{family}_low']:+.4f}, "
                f"{row[f'diff_{family}_high']:+.4f}]{star}")

    ndcg = f"{row['ndcg@100']:.4f} [{row['ndcg@100_low']:.4f}, {row['ndcg@100_high']:.4f}]"
    label = "RecVAE + EASE (blend; γ, w on each fold)"
    assert lines[label] == f"| {label} | {ndcg} | {cell('vs_best_baseline')} | {cell('vs_control_blend')} |"
    assert lines["RP3β + EASE (the control blend)"].endswith("| (reference) |")


def test_the_headline_stars_and_intervals_at_the_studys_own_confidence(tmp_path):
    """The stars and the interval label come from the study's eval.confidence, not a fixed 5%: at
    a confidence no Holm p in the table reaches, no row is starred; a wrong value is named."""
    shutil.copytree(REPO / "results", tmp_path / "results")
    assert " * |" in headline(tmp_path) and "[95% interval]" in headline(tmp_path)
    frame = pd.read_csv(REPO / "results" / HEADLINE_STUDY / "table.csv")
    smallest = frame.filter(like="p_holm_").min().min()
    params = tmp_path / "results" / HEADLINE_STUDY / "params.yaml"
    values = yaml.safe_load(params.read_text())
    values["eval"]["confidence"] = float(1 - smallest / 2)
    params.write_text(yaml.safe_dump(values))
    changed = headline(tmp_path).split("\n\n")[0]
    assert " *" not in changed and "[95% interval]" not in changed
    values["eval"]["confidence"] = 0.9
    params.write_text(yaml.safe_dump(values))
    assert "| NDCG@100 [90% interval] |" in headline(tmp_path)
    assert "\\* : Holm-adjusted p < 0.1 in its comparison family." in headline(tmp_path)
    values["eval"]["confidence"] = 1.5
    params.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=r"params.yaml: eval.confidence: .*less than 1"):
        headline(tmp_path)


def test_what_studies_md_says_of_the_10_fold_studys_gamma_choices():
    """docs/studies.md: RecVAE alone chose γ 0.005 in every fold; its blend 0.0025 in 4 folds and
    0.005 in 6, at the grid's end. Counted from the committed table's choices."""
    frame = pd.read_csv(REPO / "results" / "ml1m_kfold" / "table.csv").set_index("variant")
    assert frame.loc["recvae", "chosen"] == "recvae_g_0_005"
    chosen = frame.loc["recvae_ease", "chosen"].removeprefix("by fold: ")
    picks, _, edge = chosen.partition("; at grid edge: ")
    folds = picks.split(", ")
    assert (len(folds), folds.count("recvae_g_0_0025_ease"), folds.count("recvae_g_0_005_ease")) == (10, 4, 6)
    assert edge == "beta.gamma"
    page = " ".join((REPO / "docs" / "studies.md").read_text().split())
    assert "chose γ 0.0025 in 4 folds, 0.005 in 6" in page and "chose γ 0.005 in every fold" in page


@pytest.mark.parametrize("study", sorted(p.parent.name for p in (REPO / "results").glob("*/table.csv")))
def test_each_committed_study_has_its_forest_plot_drawn_from_its_table(study, tmp_path):
    """results/<study>/differences.png is what its committed table draws, and docs/studies.md shows it."""
    from typer.testing import CliRunner

    from stages.cli import app

    shutil.copytree(REPO / "results" / study, tmp_path / study)
    (tmp_path / study / "differences.png").unlink()
    result = CliRunner().invoke(app, ["redraw", str(tmp_path / study)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / study / "differences.png").read_bytes() == \
        (REPO / "results" / study / "differences.png").read_bytes()
    assert f"](../results/{study}/differences.png)" in (REPO / "docs" / "studies.md").read_text()


def test_only_the_shipped_dataset_is_in_the_repository():
    """ML-1M's licence forbids redistribution: the only ratings git tracks are ml-latest-small's."""
    listed = subprocess.run(["git", "ls-files", "data"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    # besides the ablation paper's printed results (numbers from a paper, no ratings)
    tracked = set(listed.stdout.split()) - {"data/.gitkeep", "data/.gitignore",
                                            "data/ablation_paper_results.yaml"}
    assert tracked == {f"data/ml-latest-small/{name}"
                       for name in ("README.txt", "SOURCE.md", "movies.csv", "ratings.csv.gz")}


def test_the_record_of_a_run_leaves_out_how_it_was_run(tmp_path):
    """results/<study>/params.yaml and the report keep params.yaml less `runtime:` (threads, device,
    scoring batch), which no stage lists: a rerun on other threads writes the same record."""
    from multvae.config import ConfigError
    from multvae.record import params_record

    text = (REPO / "params.yaml").read_text()
    assert "\nruntime:\n  device: auto\n  threads: 0\n" in text
    records = [params_record(text.replace("\n  threads: 0\n", f"\n  threads: {threads}\n"), REPO)
               for threads in (0, 1)]
    assert records[0] == records[1]
    raw = yaml.safe_load(text)
    assert yaml.safe_load(records[0]) == {k: v for k, v in raw.items() if k != "runtime"}
    assert records[0] in text.replace(text[text.index("runtime:"):text.index("report:")], "")
    flow = "study: {name: s}\nruntime: {threads: 1}\nreport:\n  labels: {}\n"
    assert params_record(flow, REPO) == "study: {name: s}\nreport:\n  labels: {}\n"
    with pytest.raises(ConfigError, match="runtime: section could not be set apart"):
        params_record('"runtime": {threads: 1}\nreport: {}\n', tmp_path)  # a quoted key


RECORDED = sorted(p.name for p in (REPO / "results").iterdir() if (p / "params.yaml").is_file())


@pytest.mark.parametrize("study", RECORDED)
def test_each_committed_result_is_what_its_study_composes_today(composed, study):
    """A study's one command rewrites results/<study>/params.yaml: the committed one must be the
    composition of conf/ today (runtime: aside), or a reproduction would show a change in git that
    is not in its results."""
    recorded = yaml.safe_load((REPO / "results" / study / "params.yaml").read_text())
    overrides = [f"study={study}"]
    if study.startswith("ml1m"):  # not shipped: the user's own copy, named on the command line
        overrides.append(f"data.source={recorded['data']['source']}")
    today = yaml.safe_load(composed(*overrides).read_text())
    recorded.pop("runtime", None)
    today.pop("runtime", None)
    changed = sorted(k for k in today.keys() | recorded.keys() if today.get(k) != recorded.get(k))
    assert not changed, f"results/{study}/params.yaml differs from study={study} in {changed}: rerun it"


def test_the_10_fold_study_chooses_gamma_on_each_folds_own_users(composed):
    """ml1m_kfold takes no choice from another study's users: RecVAE and its blend each search the
    whole γ grid inside every fold, and the claim about the blend is checked on that group."""
    params = load_params(composed("study=ml1m_kfold"))
    grid = params.tuning["recvae"]
    assert len(grid) > 1 and set(grid) <= set(params.rows)
    assert params.tuning["recvae_ease"] == tuple(f"{row}_ease" for row in grid)
    assert tuple(params.study.blends) == grid
    assert params.claims["recvae_ease_better_than_ease"].row == "recvae_ease"


def test_what_the_docs_say_of_the_paper_study_and_recvaes_ablation_rows(composed):
    """README: `paper` runs the paper's 12 rows and RecVAE's 8; pipeline.md: RecVAE's ablation rows
    are at γ 0.005 in every study, whatever its γ search chooses."""
    rows = load_params(composed("study=paper")).rows
    assert len([r for r in rows if not r.startswith("recvae")]) == 12
    assert len([r for r in rows if r.startswith("recvae")]) == 8
    for study in STUDIES:
        params = load_params(composed(f"study={study}"))
        searched = set(params.tuning.get("recvae", ()))
        for row in params.rows:
            if row.startswith("recvae") and row not in searched:
                assert params.config(row).beta.gamma == 0.005, (study, row)
