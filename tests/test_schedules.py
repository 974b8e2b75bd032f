import math
from dataclasses import replace

import pytest
import torch

from multvae.params import defaults
from multvae.schedules import anneal_steps, scalar_beta, user_betas

BASE, RUNTIME = defaults()


def test_anneal_is_linear_in_updates_then_capped():
    cfg = replace(BASE.beta, method="anneal", cap=0.2, total_anneal_steps=1000)
    assert [scalar_beta(cfg, s, 5000) for s in (0, 100, 150, 200, 999, 4000)] == pytest.approx(
        [0.0, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_constant_is_the_cap_at_every_step():
    cfg = replace(BASE.beta, method="constant", cap=0.3)
    assert {scalar_beta(cfg, s, 100) for s in range(100)} == {0.3}


def test_cyclical_rises_over_half_of_each_cycle_then_holds():
    # 200 updates, 4 cycles of 50, rising over the first 25 of each.
    cfg = replace(BASE.beta, method="cyclical", cap=1.0, cycles=4, ratio=0.5)
    expected = {0: 0.0, 5: 0.2, 10: 0.4, 20: 0.8, 25: 1.0, 40: 1.0, 49: 1.0, 50: 0.0, 55: 0.2,
                125: 1.0, 150: 0.0, 199: 1.0}
    assert {s: round(scalar_beta(cfg, s, 200), 6) for s in expected} == expected


def test_cyclical_cap_scales_the_whole_cycle():
    low = replace(BASE.beta, method="cyclical", cap=0.2, cycles=10, ratio=0.5)
    high = replace(BASE.beta, method="cyclical", cap=1.0, cycles=10, ratio=0.5)
    for step in range(0, 2000, 37):
        assert scalar_beta(low, step, 2000) == pytest.approx(0.2 * scalar_beta(high, step, 2000))


def test_user_scaled_is_gamma_times_the_number_of_positives():
    cfg = replace(BASE.beta, method="user_scaled", gamma=0.005)
    betas = user_betas(cfg, 123, 1000, torch.tensor([5, 40, 200]))
    assert betas.tolist() == pytest.approx([0.025, 0.2, 1.0])


def test_batch_wide_methods_give_every_user_the_same_beta():
    cfg = replace(BASE.beta, method="anneal", cap=0.2, total_anneal_steps=100)
    assert user_betas(cfg, 10, 1000, torch.tensor([5, 40, 200])).tolist() == pytest.approx([0.1] * 3)


# Training users of each shape with the README's held-out counts, batch 500, 200 epochs.
SHAPES = {"ml-20m": 116_677, "ml-1m": 4_834, "ml-latest-small": 483}


def _default_beta():
    from pathlib import Path

    from multvae.params import load_config

    return load_config(Path(__file__).resolve().parents[1] / "params.yaml")


@pytest.mark.parametrize("shape", list(SHAPES))
def test_default_anneal_reaches_its_cap_at_the_configured_share_of_any_run(shape):
    cfg = _default_beta()
    assert cfg.beta.total_anneal_steps is None  # the default follows the run's length
    total = math.ceil(SHAPES[shape] / cfg.train.batch_size) * cfg.train.epochs
    first = next(s for s in range(total) if scalar_beta(cfg.beta, s, total) >= cfg.beta.cap - 1e-12)
    assert first / total == pytest.approx(cfg.beta.anneal_fraction, abs=1 / total + 1e-9)
    assert first / total == pytest.approx(0.855, abs=0.005)


def test_the_default_fraction_is_the_papers_200000_updates_at_ml20m_shape():
    cfg = _default_beta()
    total = math.ceil(SHAPES["ml-20m"] / 500) * 200
    assert total == 46_800
    assert anneal_steps(cfg.beta, total) == pytest.approx(200_000, rel=0.001)
    override = replace(BASE.beta, method="anneal", cap=0.2, total_anneal_steps=200_000)
    assert anneal_steps(override, 10) == 200_000  # an explicit value is taken as is


@pytest.mark.parametrize("shape", list(SHAPES))
def test_cyclical_makes_its_cycles_over_the_whole_run_whatever_its_length(shape):
    cfg = replace(BASE.beta, method="cyclical", cap=1.0, cycles=10, ratio=0.5)
    total = math.ceil(SHAPES[shape] / 500) * 200
    betas = [scalar_beta(cfg, s, total) for s in range(total)]
    starts = [s for s in range(total) if betas[s] == 0.0]
    assert len(starts) == 10 and starts[0] == 0
    assert max(betas) == pytest.approx(1.0) and betas[-1] == pytest.approx(1.0)
