import pytest
import torch

from multvae.config import BetaConfig
from multvae.schedules import scalar_beta, user_betas


def test_anneal_is_linear_in_updates_then_capped():
    cfg = BetaConfig(method="anneal", cap=0.2, total_anneal_steps=1000)
    assert [scalar_beta(cfg, s, 5000) for s in (0, 100, 150, 200, 999, 4000)] == pytest.approx(
        [0.0, 0.1, 0.15, 0.2, 0.2, 0.2])


def test_constant_is_the_cap_at_every_step():
    cfg = BetaConfig(method="constant", cap=0.3)
    assert {scalar_beta(cfg, s, 100) for s in range(100)} == {0.3}


def test_cyclical_rises_over_half_of_each_cycle_then_holds():
    # 200 updates, 4 cycles of 50, rising over the first 25 of each.
    cfg = BetaConfig(method="cyclical", cap=1.0, cycles=4, ratio=0.5)
    expected = {0: 0.0, 5: 0.2, 10: 0.4, 20: 0.8, 25: 1.0, 40: 1.0, 49: 1.0, 50: 0.0, 55: 0.2,
                125: 1.0, 150: 0.0, 199: 1.0}
    assert {s: round(scalar_beta(cfg, s, 200), 6) for s in expected} == expected


def test_cyclical_cap_scales_the_whole_cycle():
    low = BetaConfig(method="cyclical", cap=0.2, cycles=10, ratio=0.5)
    high = BetaConfig(method="cyclical", cap=1.0, cycles=10, ratio=0.5)
    for step in range(0, 2000, 37):
        assert scalar_beta(low, step, 2000) == pytest.approx(0.2 * scalar_beta(high, step, 2000))


def test_user_scaled_is_gamma_times_the_number_of_positives():
    cfg = BetaConfig(method="user_scaled", gamma=0.005)
    betas = user_betas(cfg, 123, 1000, torch.tensor([5, 40, 200]))
    assert betas.tolist() == pytest.approx([0.025, 0.2, 1.0])


def test_batch_wide_methods_give_every_user_the_same_beta():
    cfg = BetaConfig(method="anneal", cap=0.2, total_anneal_steps=100)
    assert user_betas(cfg, 10, 1000, torch.tensor([5, 40, 200])).tolist() == pytest.approx([0.1] * 3)
