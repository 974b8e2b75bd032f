"""Mult-VAE (Liang et al., WWW 2018): a VAE with a multinomial likelihood over items.

The input is a sparse batch of users' item sets. The first encoder layer is a sparse × dense
product over the batch's non-zeros, and L2 normalisation and dropout act on those non-zeros
only: a dense users × items batch is never built on the input side. This is the same function
as the dense formulation (a test checks loss and gradients against it) at a fraction of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from multvae.config import ModelConfig

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


@dataclass
class SparseBatch:
    """A CSR batch of binary user rows: indptr (n+1), item indices, and the row of each non-zero."""

    indptr: torch.Tensor
    indices: torch.Tensor
    rows: torch.Tensor
    n_items: int

    @property
    def n_users(self) -> int:
        return self.indptr.numel() - 1

    @property
    def counts(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    @classmethod
    def from_scipy(cls, matrix, device: torch.device | str = "cpu") -> SparseBatch:
        indptr = torch.from_numpy(matrix.indptr.astype("int64")).to(device)
        indices = torch.from_numpy(matrix.indices.astype("int64")).to(device)
        counts = indptr[1:] - indptr[:-1]
        rows = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
        return cls(indptr=indptr, indices=indices, rows=rows, n_items=matrix.shape[1])

    def to_dense(self) -> torch.Tensor:
        dense = torch.zeros(self.n_users, self.n_items, device=self.indptr.device)
        dense[self.rows, self.indices] = 1.0
        return dense


def _mlp(dims: list[int], activation: str) -> nn.Sequential:
    """Linear layers with the activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


class MultVAE(nn.Module):
    def __init__(self, n_items: int, cfg: ModelConfig):
        super().__init__()
        hidden = list(cfg.hidden_dims)
        self.n_items = n_items
        self.latent_dim = cfg.latent_dim
        self.dropout = cfg.dropout
        self.act = ACTIVATIONS[cfg.activation]()
        # Encoder [I, *hidden, 2·latent]. The first layer is an item-embedding table (I × hidden):
        # summing the rows of a user's items, weighted by the input values, is the sparse product.
        self.enc_in = nn.EmbeddingBag(n_items, hidden[0], mode="sum")
        self.enc_in_bias = nn.Parameter(torch.zeros(hidden[0]))
        self.encoder = _mlp(hidden + [2 * cfg.latent_dim], cfg.activation)
        # Decoder mirrors it: [latent, *reversed(hidden), I].
        self.decoder = _mlp([cfg.latent_dim] + hidden[::-1] + [n_items], cfg.activation)
        nn.init.xavier_uniform_(self.enc_in.weight)
        nn.init.normal_(self.enc_in_bias, std=0.001)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=0.001)

    def _first_layer(self, batch: SparseBatch) -> torch.Tensor:
        """enc_in(dropout(normalize(x))) computed over the non-zeros only."""
        norm = torch.rsqrt(batch.counts.clamp(min=1).to(torch.float32))
        values = norm[batch.rows]
        if self.training and self.dropout > 0:
            keep = torch.rand_like(values) >= self.dropout
            values = values * keep / (1.0 - self.dropout)
        return self.enc_in(batch.indices, batch.indptr[:-1], per_sample_weights=values) + self.enc_in_bias

    def encode(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.act(self._first_layer(batch)))
        return h[:, : self.latent_dim], h[:, self.latent_dim:]

    def forward(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits over items, and the posterior's mean and log-variance."""
        mu, logvar = self.encode(batch)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decoder(z), mu, logvar


def multinomial_nll(logits: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """-Σ_i x_ui log softmax(logits_u)_i per user, read at the non-zeros of the binary x_u."""
    log_probs = F.log_softmax(logits, dim=1)
    picked = log_probs[batch.rows, batch.indices]
    return -torch.zeros(batch.n_users, device=logits.device).index_add_(0, batch.rows, picked)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per user."""
    return 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1)
