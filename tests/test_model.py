"""The sparse Mult-VAE against the dense formulation most implementations use, and its shapes."""

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from multvae.model import (
    MultVAE,
    SparseBatch,
    SparseRows,
    decode_nll,
    multinomial_nll,
    plain_decode_nll,
)
from multvae.params import defaults
from multvae.prior import standard_kl

BASE, RUNTIME = defaults()

N_ITEMS = 300
BETA = 0.3


def _matrix(n_users: int, n_items: int, seed: int = 0) -> sp.csr_matrix:
    """Binary rows with 1..40 items each, one row holding a single item."""
    rng = np.random.default_rng(seed)
    rows = [np.sort(rng.choice(n_items, rng.integers(1, 40), replace=False)) for _ in range(n_users)]
    rows[3] = np.array([7])
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    return sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr),
                         shape=(n_users, n_items))


def _sparse_loss(model: MultVAE, batch: SparseBatch, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    logits, mu, logvar = model(batch)
    return multinomial_nll(logits, batch).mean() + BETA * standard_kl(mu, logvar).mean()


def _dense_loss(model: MultVAE, batch: SparseBatch, seed: int) -> torch.Tensor:
    """The textbook computation on the dense batch, with the same weights and random draws: the
    sparse path draws the dropout mask over the non-zeros (CSR order), then the latent noise."""
    torch.manual_seed(seed)
    x = batch.to_dense().to(model.enc_in.weight.dtype)
    h = F.normalize(x, dim=1)
    if model.training and model.dropout > 0:
        keep_nonzeros = torch.rand(batch.indices.numel(), dtype=x.dtype) >= model.dropout
        keep = torch.zeros_like(x)
        keep[batch.rows, batch.indices] = keep_nonzeros.to(x.dtype)
        h = h * keep / (1.0 - model.dropout)
    h = model.act(h @ model.enc_in.weight + model.enc_in_bias)
    out = model.encoder(h)
    mu, logvar = out[:, : model.latent_dim], out[:, model.latent_dim:]
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if model.training else mu
    logits = model.decoder(z)
    nll = -(F.log_softmax(logits, dim=1) * x).sum(dim=1)
    kl = 0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1.0).sum(dim=1)
    return nll.mean() + BETA * kl.mean()


def _loss_and_grads(model: MultVAE, loss_fn, batch: SparseBatch, seed: int):
    model.zero_grad(set_to_none=True)
    loss = loss_fn(model, batch, seed)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("hidden", [(64,), (64, 48)])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train-dropout"])
def test_sparse_path_matches_dense_loss_and_gradients(hidden, train):
    torch.manual_seed(0)
    model = MultVAE(N_ITEMS, replace(BASE.model, hidden_dims=hidden, latent_dim=16, dropout=0.5)).double()
    model.train(train)
    batch = SparseBatch.from_scipy(_matrix(25, N_ITEMS))
    sparse_loss, sparse_grads = _loss_and_grads(model, _sparse_loss, batch, seed=11)
    dense_loss, dense_grads = _loss_and_grads(model, _dense_loss, batch, seed=11)
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-12)
    assert set(sparse_grads) == {n for n, _ in model.named_parameters()}
    for name, grad in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, rtol=1e-9, atol=1e-12, msg=name)


def test_sparse_path_matches_dense_in_float32():
    torch.manual_seed(1)
    model = MultVAE(N_ITEMS, replace(BASE.model, hidden_dims=(64,), latent_dim=16))
    batch = SparseBatch.from_scipy(_matrix(30, N_ITEMS, seed=1))
    sparse_loss, sparse_grads = _loss_and_grads(model, _sparse_loss, batch, seed=3)
    dense_loss, dense_grads = _loss_and_grads(model, _dense_loss, batch, seed=3)
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-5)
    for name, grad in dense_grads.items():
        torch.testing.assert_close(sparse_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_multinomial_nll_gradient_is_counts_times_softmax_minus_x():
    torch.manual_seed(2)
    batch = SparseBatch.from_scipy(_matrix(6, 40, seed=2))
    logits = (10 * torch.randn(6, 40, dtype=torch.float64)).requires_grad_()
    weights = torch.rand(6, dtype=torch.float64)
    (multinomial_nll(logits, batch) * weights).sum().backward()
    x = batch.to_dense().double()
    expected = weights[:, None] * (x.sum(1, keepdim=True) * torch.softmax(logits.detach(), 1) - x)
    torch.testing.assert_close(logits.grad, expected)
    # Backward scales the saved exponentials in place: a second pass through the graph must fail
    # loudly rather than read them overwritten.
    loss = multinomial_nll(logits, batch).sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def _linears(seq):
    return [(m.in_features, m.out_features) for m in seq if isinstance(m, torch.nn.Linear)]


@pytest.mark.parametrize("hidden, encoder, decoder", [
    ((600,), [(600, 400)], [(200, 600), (600, 1000)]),
    ((600, 400), [(600, 400), (400, 400)], [(200, 400), (400, 600), (600, 1000)]),
])
def test_layer_shapes_are_the_papers(hidden, encoder, decoder):
    # [I, 600, 200]: encoder I -> 600 -> 2 x 200 (mean and log-variance), decoder 200 -> 600 -> I.
    model = MultVAE(1000, replace(BASE.model, hidden_dims=hidden, latent_dim=200))
    assert tuple(model.enc_in.weight.shape) == (1000, 600)  # the I -> 600 layer, stored items-major
    assert tuple(model.enc_in_bias.shape) == (600,)
    assert _linears(model.encoder) == encoder
    assert _linears(model.decoder) == decoder
    batch = SparseBatch.from_scipy(_matrix(4, 1000))
    logits, mu, logvar = model(batch)
    assert logits.shape == (4, 1000) and mu.shape == logvar.shape == (4, 200)


def test_eval_mode_uses_the_posterior_mean():
    torch.manual_seed(4)
    model = MultVAE(N_ITEMS, replace(BASE.model, hidden_dims=(64,), latent_dim=16, dropout=0.5)).eval()
    batch = SparseBatch.from_scipy(_matrix(10, N_ITEMS))
    with torch.no_grad():
        torch.manual_seed(0)
        logits_a, mu, _ = model(batch)
        torch.manual_seed(1)
        logits_b, _, _ = model(batch)
        assert torch.equal(logits_a, logits_b)
        assert torch.equal(logits_a, model.decoder(mu))
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model(batch)[0], logits_a)


def test_gathered_rows_equal_the_scipy_rows():
    matrix = _matrix(50, N_ITEMS, seed=5)
    users = np.array([49, 3, 0, 17, 17, 8])
    got = SparseRows(matrix).batch(users)
    want = SparseBatch.from_scipy(matrix[users])
    for field in ("indptr", "indices", "rows"):
        assert torch.equal(getattr(got, field), getattr(want, field)), field
    assert got.n_items == want.n_items == N_ITEMS


def test_an_epochs_batches_are_slices_of_its_order_moved_once():
    matrix = _matrix(50, N_ITEMS, seed=5)
    order = np.random.default_rng(1).permutation(50)
    epoch = SparseRows(matrix).epoch(order)
    for start in range(0, 50, 7):
        got, want = epoch.batch(start, start + 7), SparseBatch.from_scipy(matrix[order[start:start + 7]])
        for field in ("indptr", "indices", "rows"):
            assert torch.equal(getattr(got, field), getattr(want, field)), (start, field)


def test_plain_decode_nll_for_compile_matches_the_eager_loss():
    # train.compile runs the decoder and loss in plain operations; they must agree with the default.
    torch.manual_seed(6)
    model = MultVAE(N_ITEMS, replace(BASE.model, hidden_dims=(64,), latent_dim=16)).double().train()
    batch = SparseBatch.from_scipy(_matrix(20, N_ITEMS, seed=6))
    z = torch.randn(20, 16, dtype=torch.float64)
    results = []
    for fn in (lambda: decode_nll(model, z, batch),
               lambda: plain_decode_nll(model.decoder, z, batch.rows, batch.indices, batch.counts.double())):
        model.zero_grad(set_to_none=True)
        nll = fn()
        nll.sum().backward()
        grads = [p.grad.clone() for p in model.decoder.parameters() if p.grad is not None]
        results.append((nll.detach(), grads))
    (a, grads_a), (b, grads_b) = results
    torch.testing.assert_close(a, b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb)


def test_batch_transpose_on_host_and_device_paths_agree():
    # The first layer's backward groups the non-zeros by item with scipy on the CPU and with a
    # stable argsort elsewhere; both must give the same structure (checked here on the CPU).
    from multvae.model import _transpose_device, _transpose_host

    batch = SparseBatch.from_scipy(_matrix(40, N_ITEMS, seed=7))
    host = _transpose_host(batch.indptr, batch.indices, N_ITEMS)
    device = _transpose_device(batch.indices, batch.rows, N_ITEMS)
    for a, b in zip(host, device, strict=True):
        assert torch.equal(a, b)
    by_item, item_rows, item_offsets = host
    assert torch.equal(batch.indices[by_item], torch.sort(batch.indices).values)
    assert torch.equal(item_rows, batch.rows[by_item])
