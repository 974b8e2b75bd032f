"""The KL term's prior: the paper's standard normal, or RecVAE's composite prior.

RecVAE (Shenbin et al., WSDM 2020) replaces N(0, I) by a mixture, per latent dimension, of the
standard normal, the posterior of the same user under the encoder as it was at the end of the
previous epoch's encoder passes, and a wide normal N(0, e^10): the posterior then may not move far
from where it was, which steadies training with alternating updates. Its KL has no closed form and
is estimated, as RecVAE does, with the one z already drawn for the likelihood:
KL ≈ Σ_d [log q(z_d | x) − log p(z_d)].
"""

from __future__ import annotations

import math

import torch

WIDE_LOGVAR = 10.0  # the wide component's log-variance, RecVAE's
_LOG_2PI = math.log(2 * math.pi)


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor | float) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar))."""
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    return -0.5 * (logvar + _LOG_2PI + (x - mu).pow(2) * torch.exp(-logvar))


def standard_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per user, in closed form."""
    return 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1)


def composite_log_prior(z: torch.Tensor, old_mu: torch.Tensor, old_logvar: torch.Tensor,
                        weights: tuple[float, ...]) -> torch.Tensor:
    """log p(z) per user and latent dimension under the mixture w0·N(0, 1) + w1·N(old_mu, old_var)
    + w2·N(0, e^10); a zero weight drops its component."""
    parts = [(w, component) for w, component in zip(weights, (
        lambda: log_normal(z, torch.zeros_like(z), 0.0),
        lambda: log_normal(z, old_mu, old_logvar),
        lambda: log_normal(z, torch.zeros_like(z), WIDE_LOGVAR)), strict=True) if w > 0]
    return torch.logsumexp(torch.stack([component() + math.log(w) for w, component in parts]), dim=0)


def composite_kl(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, old_mu: torch.Tensor,
                 old_logvar: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """One-sample estimate of KL(q(z|x) || composite prior) per user, at the z drawn from q."""
    return (log_normal(z, mu, logvar) - composite_log_prior(z, old_mu, old_logvar, weights)).sum(dim=1)
