"""Mult-VAE (Liang et al., WWW 2018): a VAE with a multinomial likelihood over items.

The input is a sparse batch of users' item sets. The first encoder layer is a sparse × dense
product over the batch's non-zeros, and L2 normalisation and dropout act on those non-zeros
only: a dense users × items batch is never built on the input side, in either direction (the
weight's gradient is the transposed sparse product). The multinomial likelihood needs one pass
of exp over the logits forward and one multiply backward. This is the same function as the dense
formulation (tests/test_model.py checks loss and gradients against it) at a fraction of the cost.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from multvae.config import ModelConfig

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
ENCODER_PARTS = ("enc_in", "enc_in_bias", "encoder")  # the attributes the composite prior copies


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


class SparseRows:
    """A CSR matrix of binary user rows held as tensors on one device, from which batches of rows
    are gathered there: no scipy indexing and no host-to-device copy of the data per batch."""

    def __init__(self, matrix, device: torch.device | str = "cpu"):
        self.indptr = torch.from_numpy(matrix.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(matrix.indices.astype(np.int64)).to(device)
        self.counts = self.indptr[1:] - self.indptr[:-1]
        self.n_items = matrix.shape[1]
        self._counts = np.diff(matrix.indptr).astype(np.int64)  # on the host: batch sizes without a sync

    def batch(self, users: np.ndarray) -> SparseBatch:
        """The rows `users` (in that order) as a SparseBatch on this matrix's device."""
        return self.epoch(users).batch(0, len(users))

    def epoch(self, order: np.ndarray) -> EpochRows:
        """The rows in `order`, moved to the device once, to be cut into batches there."""
        return EpochRows(self, order)


class EpochRows:
    """One epoch's user order on the device, and each batch's non-zero count on the host.

    A batch is then a slice of device tensors: no host-to-device copy per update, which on a GPU is
    a synchronisation (a copy from pageable memory waits for the stream), and no output size the
    device would have to report back."""

    def __init__(self, rows: SparseRows, order: np.ndarray):
        self.rows = rows
        self.order_host = np.asarray(order, dtype=np.int64)
        self.order = torch.from_numpy(self.order_host).to(rows.indptr.device)
        self.counts = rows.counts[self.order]

    def batch(self, start: int, stop: int) -> SparseBatch:
        m, device = self.rows, self.order.device
        nnz = int(m._counts[self.order_host[start:stop]].sum())
        counts = self.counts[start:stop]
        n = counts.numel()
        indptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
        torch.cumsum(counts, 0, out=indptr[1:])
        rows = torch.repeat_interleave(torch.arange(n, device=device), counts, output_size=nnz)
        # A non-zero's position in the whole matrix: its rank within the batch, shifted by how far
        # its row starts there from where it starts in the batch.
        shift = m.indptr[self.order[start:stop]] - indptr[:-1]
        positions = torch.arange(nnz, device=device) + shift[rows]
        return SparseBatch(indptr=indptr, indices=m.indices[positions], rows=rows, n_items=m.n_items)


class _SparseMatmul(torch.autograd.Function):
    """x @ W for a batch x in CSR form (offsets, indices, values) and a dense items × d weight W.

    Forward sums the weight rows of each user's items (embedding_bag). Backward does the same over
    the transposed batch: the weight's gradient row of item i sums the output-gradient rows of the
    users holding i. Both touch only the non-zeros, and the weight's gradient is written once
    (nn.EmbeddingBag's own backward zero-fills it and scatters into it: about twice the time).
    """

    @staticmethod
    def forward(ctx, weight, indptr, indices, rows, values):
        ctx.save_for_backward(indptr, indices, rows, values)
        ctx.n_items = weight.shape[0]
        return F.embedding_bag(indices, weight, indptr[:-1], mode="sum", per_sample_weights=values)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        indptr, indices, rows, values = ctx.saved_tensors
        by_item, item_rows, item_offsets = _transpose(indptr, indices, rows, ctx.n_items)
        grad_weight = F.embedding_bag(item_rows, grad_out.contiguous(), item_offsets, mode="sum",
                                      per_sample_weights=values[by_item].to(grad_out.dtype))
        return grad_weight, None, None, None, None


def _transpose(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor, n_items: int):
    """The CSR structure of a batch's transpose: the permutation grouping the non-zeros by item
    (row order kept within an item), their rows, and each item's first position."""
    if indices.device.type == "cpu":
        return _transpose_host(indptr, indices, n_items)
    return _transpose_device(indices, rows, n_items)


def _transpose_host(indptr: torch.Tensor, indices: torch.Tensor, n_items: int):
    # scipy's CSR -> CSC conversion is a counting sort: linear and single-threaded (torch's stable
    # argsort stalls for up to 0.2 s at 2 threads when other processes share the cores).
    positions = np.arange(indices.numel(), dtype=np.int64)
    shape = (indptr.numel() - 1, n_items)
    csc = sp.csr_matrix((positions, indices.numpy(), indptr.numpy()), shape=shape).tocsc()
    return (torch.from_numpy(csc.data), torch.from_numpy(csc.indices.astype(np.int64)),
            torch.from_numpy(csc.indptr[:-1].astype(np.int64)))


def _transpose_device(indices: torch.Tensor, rows: torch.Tensor, n_items: int):
    by_item = torch.argsort(indices, stable=True)
    # Counts by index_add rather than bincount, whose output size the device would report back.
    per_item = torch.zeros(n_items, dtype=indices.dtype, device=indices.device)
    per_item.index_add_(0, indices, torch.ones_like(indices))
    item_offsets = torch.zeros(n_items, dtype=indices.dtype, device=indices.device)
    torch.cumsum(per_item[:-1], 0, out=item_offsets[1:])
    return by_item, rows[by_item], item_offsets


def _encode(m: MultVAE | _EncoderCopy, batch: SparseBatch,
            dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder of `m` (its enc_in, enc_in_bias and body): the first layer over the non-zeros
    only, enc_in(dropout(normalize(x))), then the body; the posterior's mean and log-variance."""
    values = torch.rsqrt(batch.counts.clamp(min=1).to(m.enc_in.weight.dtype))[batch.rows]
    if dropout > 0:
        keep = torch.rand_like(values) >= dropout
        values = values * keep / (1.0 - dropout)
    first = _SparseMatmul.apply(m.enc_in.weight, batch.indptr, batch.indices, batch.rows, values)
    first = first + m.enc_in_bias
    h = m.encoder(first if m.dense_encoder else m.act(first))
    return h[:, : m.latent_dim], h[:, m.latent_dim:]


class DenseLayers(nn.Module):
    """RecVAE's encoder body: after the first layer, each layer's input is the previous output
    plus every earlier output (dense connections), then swish and LayerNorm (eps 0.1, RecVAE's);
    a last linear layer gives the posterior's mean and log-variance."""

    def __init__(self, width: int, layers: int, out_dim: int):
        super().__init__()
        self.first_norm = nn.LayerNorm(width, eps=0.1)
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(layers - 1))
        self.norms = nn.ModuleList(nn.LayerNorm(width, eps=0.1) for _ in range(layers - 1))
        self.out = nn.Linear(width, out_dim)

    def forward(self, first: torch.Tensor) -> torch.Tensor:
        h = self.first_norm(F.silu(first))
        total = h
        for linear, norm in zip(self.linears, self.norms, strict=True):
            h = norm(F.silu(linear(h) + total))
            total = total + h
        return self.out(h)


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
        self.dense_encoder = cfg.encoder == "dense"
        self.encoder: nn.Module = (
            DenseLayers(hidden[0], len(hidden), 2 * cfg.latent_dim) if self.dense_encoder
            else _mlp(hidden + [2 * cfg.latent_dim], cfg.activation))
        # The paper's decoder mirrors the encoder, [latent, *reversed(hidden), I]; RecVAE's is linear.
        self.decoder = _mlp([cfg.latent_dim] + (hidden[::-1] if cfg.decoder == "mirror" else []) + [n_items],
                            cfg.activation)
        nn.init.xavier_uniform_(self.enc_in.weight)
        nn.init.normal_(self.enc_in_bias, std=0.001)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.normal_(module.bias, std=0.001)
        # The composite prior's copy of the encoder as it was after the last encoder passes; part
        # of the state, so checkpoints resume it and saved models carry it. Never trained.
        self.previous: _EncoderCopy | None = _EncoderCopy(self) if cfg.prior == "composite" else None

    def encode(self, batch: SparseBatch, dropout: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The posterior's mean and log-variance; `dropout` overrides model.dropout (training only)."""
        rate = self.dropout if dropout is None else dropout
        return _encode(self, batch, rate if self.training else 0.0)

    def encoder_parameters(self) -> list[torch.Tensor]:
        return [p for name, p in self.named_parameters() if name.split(".")[0] in ENCODER_PARTS]

    def trained_parameters(self) -> list[torch.Tensor]:
        """Every parameter but the composite prior's frozen copy, in the module's order."""
        return [p for name, p in self.named_parameters() if not name.startswith("previous.")]

    def update_previous(self) -> None:
        """The composite prior's posterior becomes the encoder's current one."""
        if self.previous is not None:
            self.previous.copy_from(self)

    def previous_posterior(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The composite prior's component: the posterior of the encoder copy, without dropout."""
        assert self.previous is not None
        with torch.no_grad():
            return self.previous.encode(batch)

    def forward(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits over items, and the posterior's mean and log-variance."""
        mu, logvar = self.encode(batch)
        return self.decode(self.sample(mu, logvar)), mu, logvar

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z ~ N(mu, exp(logvar)) by reparameterisation in training; the mean in eval mode."""
        if self.training:
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return mu

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits over items."""
        return self.decoder(z)


class _EncoderCopy(nn.Module):
    """A frozen copy of a MultVAE's encoder (first layer and body), under the same names."""

    def __init__(self, model: MultVAE):
        super().__init__()
        self.enc_in = copy.deepcopy(model.enc_in)
        self.enc_in_bias = nn.Parameter(model.enc_in_bias.detach().clone())
        self.encoder = copy.deepcopy(model.encoder)
        self.act, self.dense_encoder, self.latent_dim = model.act, model.dense_encoder, model.latent_dim
        self.requires_grad_(False)

    def copy_from(self, model: MultVAE) -> None:
        theirs = dict(model.named_parameters())
        with torch.no_grad():
            for name, mine in self.named_parameters():
                mine.copy_(theirs[name])

    def encode(self, batch: SparseBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return _encode(self, batch, 0.0)


class _MultinomialNLL(torch.autograd.Function):
    """-Σ_i x_ui log softmax(logits_u)_i for binary x given by its non-zeros (rows, flat positions).

    = |x_u| logsumexp(logits_u) - Σ_{i ∈ x_u} logits_ui, whose gradient is |x_u| softmax(logits_u) - x_u.
    Forward makes one exp pass and keeps its result, which backward scales in place into the
    gradient: no log-softmax tensor and no second exp pass.
    """

    @staticmethod
    def forward(ctx, logits, rows, flat, counts):
        shift = logits.amax(dim=1, keepdim=True)
        unnormalised = torch.sub(logits, shift).exp_()
        log_norm = unnormalised.sum(dim=1).log_()
        picked = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
        picked.index_add_(0, rows, logits.view(-1)[flat])
        ctx.save_for_backward(unnormalised, log_norm, rows, flat, counts)
        return counts * (log_norm + shift.squeeze(1)) - picked

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        # Scaling the saved exp in place bumps its version, so a second backward through the same
        # graph (retain_graph) fails loudly instead of reading the overwritten values.
        unnormalised, log_norm, rows, flat, counts = ctx.saved_tensors
        grad_logits = unnormalised.mul_((grad * counts * torch.exp(-log_norm)).unsqueeze(1))
        grad_logits.view(-1).index_add_(0, flat, -grad[rows])
        return grad_logits, None, None, None


def multinomial_nll(logits: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """-Σ_i x_ui log softmax(logits_u)_i per user, read at the non-zeros of the binary x_u."""
    logits = logits.contiguous()
    flat = batch.rows * logits.shape[1] + batch.indices
    return _MultinomialNLL.apply(logits, batch.rows, flat, batch.counts.to(logits.dtype))


def decode_nll(model: MultVAE, z: torch.Tensor, batch: SparseBatch) -> torch.Tensor:
    """Per-user multinomial NLL of the batch under the decoder's logits at z."""
    return multinomial_nll(model.decode(z), batch)


def plain_decode_nll(decoder: nn.Module, z: torch.Tensor, rows: torch.Tensor, indices: torch.Tensor,
                     counts: torch.Tensor) -> torch.Tensor:
    """`decode_nll` in plain tensor operations, for torch.compile to fuse (train.compile)."""
    logits = decoder(z)
    picked = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
    picked = picked.index_add(0, rows, logits[rows, indices])
    return counts * torch.logsumexp(logits, dim=1) - picked


def make_scorer(model: MultVAE, device: torch.device | str) -> Callable[[sp.csr_matrix], torch.Tensor]:
    """Scores of a fold-in batch (a scipy CSR of users' known items): the decoder's logits at the
    posterior mean, as evaluation and recommendation rank items."""

    def score(foldin: sp.csr_matrix) -> torch.Tensor:
        model.eval()
        logits, _, _ = model(SparseBatch.from_scipy(foldin, device))
        return logits

    return score
