"""β, the weight of the KL term, as each method of the study sets it.

Every schedule returns one weight per user of the batch, so the loss needs no special case for
the per-user method: loss = NLL + mean_u(β_u · KL_u).
"""

from __future__ import annotations

import torch

from multvae.config import BetaConfig


def anneal(step: int, cap: float, total_anneal_steps: float) -> float:
    """Liang et al.: linear in the number of updates from 0, held at `cap` once reached."""
    return min(cap, step / total_anneal_steps)


def anneal_steps(cfg: BetaConfig, total_steps: int) -> float:
    """The anneal's `total_anneal_steps` for a run of `total_steps` updates: the override if set,
    else the value that reaches the cap at `anneal_fraction` of the run. The paper's 200,000 at
    ML-20M's 46,800 updates (234 an epoch, 200 epochs) with cap 0.2 is the fraction 0.855."""
    if cfg.total_anneal_steps is not None:
        return float(cfg.total_anneal_steps)
    return cfg.anneal_fraction * total_steps / cfg.cap if cfg.cap > 0 else 1.0


def cyclical(step: int, total_steps: int, cap: float, cycles: int, ratio: float) -> float:
    """Fu et al. 2019: `cycles` periods, each rising linearly to `cap` over `ratio` of it, then flat."""
    period = total_steps / cycles
    position = (step % period) / period
    return cap * min(1.0, position / ratio)


def scalar_beta(cfg: BetaConfig, step: int, total_steps: int) -> float:
    """The batch-wide β at update `step` (0-based) of `total_steps`; for user_scaled, γ."""
    if cfg.method == "anneal":
        return anneal(step, cfg.cap, anneal_steps(cfg, total_steps))
    if cfg.method == "constant":
        return cfg.cap
    if cfg.method == "cyclical":
        return cyclical(step, total_steps, cfg.cap, cfg.cycles, cfg.ratio)
    return cfg.gamma


def user_betas(cfg: BetaConfig, step: int, total_steps: int, counts: torch.Tensor) -> torch.Tensor:
    """Per-user β for a batch whose users have `counts` positives: γ·|x_u| for user_scaled."""
    beta = scalar_beta(cfg, step, total_steps)
    if cfg.method == "user_scaled":
        return beta * counts.to(torch.float32)
    return torch.full(counts.shape, beta, dtype=torch.float32, device=counts.device)
