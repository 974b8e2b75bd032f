"""β, the weight of the KL term, as each method of the study sets it.

Every schedule returns one weight per user of the batch, so the loss needs no special case for
the per-user method: loss = NLL + mean_u(β_u · KL_u).
"""

from __future__ import annotations

import torch

from multvae.config import BetaConfig


def anneal(step: int, cap: float, total_anneal_steps: int) -> float:
    """Liang et al.: linear in the number of updates from 0, held at `cap` once reached."""
    return min(cap, step / total_anneal_steps)


def cyclical(step: int, total_steps: int, cap: float, cycles: int, ratio: float) -> float:
    """Fu et al. 2019: `cycles` periods, each rising linearly to `cap` over `ratio` of it, then flat."""
    period = total_steps / cycles
    position = (step % period) / period
    return cap * min(1.0, position / ratio)


def scalar_beta(cfg: BetaConfig, step: int, total_steps: int) -> float:
    """The batch-wide β at update `step` (0-based) of `total_steps`; for user_scaled, γ."""
    if cfg.method == "anneal":
        return anneal(step, cfg.cap, cfg.total_anneal_steps)
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
