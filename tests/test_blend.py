"""The blend of a Mult-VAE row with EASE: standardised scores, each path alone at weights 1 and 0,
the weight chosen on validation, and the stage through real DVC, where the blend's validation
scores at 1 and 0 equal the Mult-VAE row's and EASE's own."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import shrink

from multvae.blend import blend_metrics, choose_weight, standardized
from multvae.metrics import score_heldout

KS = (20, 50, 100)


def test_standardised_rows_have_mean_zero_and_unit_spread_and_keep_each_users_order():
    scores = torch.randn(5, 40, dtype=torch.float64) * torch.arange(1, 6)[:, None] + 3
    z = standardized(scores)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(z.std(dim=1), torch.ones(5, dtype=torch.float64))
    assert torch.equal(z.argsort(dim=1), scores.argsort(dim=1))


def test_weights_one_and_zero_are_each_path_alone(tiny_dataset):
    heldout = tiny_dataset.validation
    n_items = tiny_dataset.n_items
    generator = torch.Generator().manual_seed(0)
    a_scores = torch.randn(heldout.foldin.shape[0], n_items, generator=generator)
    b_scores = torch.randn(heldout.foldin.shape[0], n_items, generator=generator) * 50  # another scale

    def fixed(scores):
        rows = iter([scores])  # one batch: the whole held-out set
        return lambda foldin: next(rows)

    blended = blend_metrics(fixed(a_scores), fixed(b_scores), heldout, [0.0, 0.5, 1.0], KS, batch_size=10_000)
    alone_a = score_heldout(lambda _: a_scores, heldout, KS, batch_size=10_000)
    alone_b = score_heldout(lambda _: b_scores, heldout, KS, batch_size=10_000)
    pd.testing.assert_frame_equal(blended[1.0], alone_a)
    pd.testing.assert_frame_equal(blended[0.0], alone_b)
    assert not blended[0.5].equals(alone_a) and not blended[0.5].equals(alone_b)


def test_the_weight_with_the_best_mean_over_seeds_is_chosen_first_on_ties():
    def runs(values):
        return {w: pd.DataFrame({"ndcg@100": [v, v]}) for w, v in values.items()}

    seed_1, seed_2 = runs({0.0: 0.30, 0.5: 0.40, 1.0: 0.20}), runs({0.0: 0.30, 0.5: 0.10, 1.0: 0.50})
    weight, scores = choose_weight([seed_1, seed_2], "ndcg@100")
    assert weight == 1.0 and scores == pytest.approx({0.0: 0.30, 0.5: 0.25, 1.0: 0.35})
    tie, _ = choose_weight([runs({0.2: 0.3, 0.8: 0.3})], "ndcg@100")
    assert tie == 0.2


@pytest.mark.slow
def test_the_blend_stage_through_dvc(tmp_path_factory, new_project, run, ran):
    def edit(params: dict) -> None:
        shrink(params, epochs=3, seeds=(1, 2))
        params["baselines"]["blend_weights"] = [0.0, 0.5, 1.0]
        params["variants"] = {"original": {}}
        params["tuning"], params["claims"] = {}, {}
        params["comparisons"] = {"vs_best_baseline": params["comparisons"]["vs_best_baseline"]}
        params["study"] = {"name": "default", "rows": ["original"], "blends": ["original"]}

    repo = new_project(tmp_path_factory.mktemp("blend"), edit)
    assert "blend@original" in ran(run(["dvc", "repro"], repo))
    variants = repo / "metrics" / "variants"
    blend = json.loads((variants / "original_ease.json").read_text())
    vae, ease = (json.loads((variants / f"{n}.json").read_text()) for n in ("original", "ease"))
    # The blend's budget inherits what EASE tried on the same validation users.
    assert blend["weight"] in (0.0, 0.5, 1.0) and blend["tuning_budget"] == 3 + ease["tuning_budget"]
    assert blend["budget_parts"] == {"weight": 3, "ease": ease["tuning_budget"]}
    assert blend["grid"]["1"] == pytest.approx(vae["val_ndcg@100"])  # the Mult-VAE row alone
    assert blend["grid"]["0"] == pytest.approx(ease["val_ndcg@100"])  # EASE alone
    assert blend["val_ndcg@100"] == max(blend["grid"].values())
    users = pd.read_parquet(repo / "metrics" / "per_user" / "original_ease.parquet")
    assert sorted(users["seed"].unique()) == [1, 2] and len(users) == 2 * blend["test_users"]
    table = (repo / "metrics" / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| Original model + EASE (blend)"))
    assert "w = " in row and "λ = " in row
    summary = yaml.safe_load((repo / "metrics" / "summary.json").read_text())
    assert "original_ease" in summary
    assert np.isfinite(summary["original_ease"])
