"""The training loop on a CUDA device: the same batches and loss as on the CPU, no host round trip
inside an update, and runs that agree within float tolerance. Skipped where there is no GPU (the
development machine and CI have none; run `pytest tests/test_gpu.py` on one)."""

from __future__ import annotations

import dataclasses
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_model import BETA, N_ITEMS, _dense_loss, _loss_and_grads, _matrix, _sparse_loss

from multvae.model import SparseBatch, SparseRows, _transpose_device, _transpose_host
from multvae.params import defaults

BASE, RUNTIME = defaults()

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
SMALL = replace(BASE,
    data=replace(BASE.data, dataset="synthetic", heldout_users=30),
    model=replace(BASE.model, hidden_dims=(32,), latent_dim=8),
    beta=replace(BASE.beta, total_anneal_steps=20),
    train=replace(BASE.train, epochs=4, batch_size=50),
)
GPU = replace(RUNTIME, device="cuda", checkpoint_seconds=0)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset  # conftest: the tiny ratings, 30 validation and 30 test users


def test_batches_gathered_on_the_gpu_equal_the_cpu_ones():
    matrix = _matrix(60, N_ITEMS, seed=2)
    order = np.random.default_rng(0).permutation(60)
    cpu, gpu = SparseRows(matrix).epoch(order), SparseRows(matrix, CUDA).epoch(order)
    for start in range(0, 60, 9):
        a, b = cpu.batch(start, start + 9), gpu.batch(start, start + 9)
        for field in ("indptr", "indices", "rows"):
            assert torch.equal(getattr(a, field), getattr(b, field).cpu()), (start, field)


def test_the_first_layers_backward_groups_by_item_on_the_gpu_as_on_the_host():
    batch = SparseBatch.from_scipy(_matrix(40, N_ITEMS, seed=7))
    host = _transpose_host(batch.indptr, batch.indices, N_ITEMS)
    device = _transpose_device(batch.indices.to(CUDA), batch.rows.to(CUDA), N_ITEMS)
    for a, b in zip(host, device, strict=True):
        assert torch.equal(a, b.cpu())


def test_sparse_loss_and_gradients_on_the_gpu_match_the_dense_formulation():
    from multvae.model import MultVAE

    torch.manual_seed(0)
    model = MultVAE(N_ITEMS, replace(BASE.model, hidden_dims=(64,), latent_dim=16)).double().to(CUDA).eval()
    batch = SparseBatch.from_scipy(_matrix(30, N_ITEMS, seed=3), CUDA)
    sparse_loss, sparse_grads = _loss_and_grads(model, _sparse_loss, batch, seed=1)
    with torch.device(CUDA):
        dense_loss, dense_grads = _loss_and_grads(model, _dense_loss, batch, seed=1)
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-9) and BETA > 0
    for name, grad in sparse_grads.items():
        torch.testing.assert_close(grad, dense_grads[name], rtol=1e-7, atol=1e-9, msg=name)


def test_an_update_makes_no_host_round_trip(dataset):
    """From gathering a batch to the end of its update nothing waits for the GPU: CUDA's sync debug
    mode turns any synchronising call in that window into an error."""
    from multvae.training import train_model

    def before_batch(step: int) -> None:
        if step > 0:  # the first update also allocates and initialises; check the steady state
            torch.cuda.set_sync_debug_mode("error")

    def on_update(step: int, model) -> bool:
        torch.cuda.set_sync_debug_mode("default")
        return False

    try:
        result = train_model(SMALL, dataset, seed=0, runtime=GPU, log=lambda _: None,
                             before_batch=before_batch, on_update=on_update)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(result.curves) == SMALL.train.epochs


def test_gpu_runs_agree_within_float_tolerance(dataset):
    """Two runs with one seed, and the compiled decoder and loss against the eager ones. On a GPU
    the sums of index_add and embedding_bag use atomic adds, whose order varies between runs, so
    agreement is within float tolerance rather than bit for bit as on the CPU."""
    from multvae.training import train_model

    runs = [train_model(SMALL, dataset, seed=4, runtime=runtime, log=lambda _: None)
            for runtime in (GPU, GPU, dataclasses.replace(GPU, compile=True))]
    first = runs[0].curves
    for other in runs[1:]:
        for column in ("loss", "nll", "kl", "beta", "val_ndcg@100"):
            np.testing.assert_allclose(other.curves[column], first[column], rtol=1e-3, atol=1e-4,
                                       err_msg=column)
