"""RecVAE's ingredients against direct computations on small tensors: the composite prior and its
KL estimate, the dense encoder, the linear decoder, and the alternating update scheme."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F

from multvae.model import DenseLayers, MultVAE, SparseBatch
from multvae.params import defaults
from multvae.prior import WIDE_LOGVAR, composite_kl, composite_log_prior, log_normal, standard_kl
from multvae.training import epoch_count, epoch_phases, train_model, updates_per_epoch

BASE, RUNTIME = defaults()

WEIGHTS = (0.15, 0.75, 0.1)


def test_log_normal_is_scipys_log_density():
    x, mu, logvar = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64), \
        torch.randn(5, 3, dtype=torch.float64)
    expected = scipy.stats.norm.logpdf(x.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy()))
    np.testing.assert_allclose(log_normal(x, mu, logvar).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("weights", [WEIGHTS, (1.0, 0.0, 0.0), (0.5, 0.0, 0.5)])
def test_composite_log_prior_is_the_per_dimension_mixture(weights):
    g = torch.Generator().manual_seed(0)
    z, old_mu = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g,
                                                                                 dtype=torch.float64)
    old_logvar = torch.randn(4, 6, generator=g, dtype=torch.float64)
    zn, mun, sdn = z.numpy(), old_mu.numpy(), np.exp(0.5 * old_logvar.numpy())
    densities = [scipy.stats.norm.logpdf(zn, 0, 1), scipy.stats.norm.logpdf(zn, mun, sdn),
                 scipy.stats.norm.logpdf(zn, 0, math.exp(0.5 * WIDE_LOGVAR))]
    with np.errstate(divide="ignore"):
        expected = scipy.special.logsumexp(np.stack(densities), axis=0, b=np.array(weights)[:, None, None])
    np.testing.assert_allclose(composite_log_prior(z, old_mu, old_logvar, weights).numpy(), expected,
                               rtol=1e-12)


def test_the_kl_estimate_with_only_the_standard_normal_averages_to_the_closed_form():
    g = torch.Generator().manual_seed(1)
    mu, logvar = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g,
                                                                                  dtype=torch.float64) * 0.3
    draws = 200_000
    z = mu + torch.randn(draws, 3, 4, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    estimates = composite_kl(z.reshape(-1, 4), mu.repeat(draws, 1), logvar.repeat(draws, 1),
                             torch.zeros(draws * 3, 4, dtype=torch.float64),
                             torch.zeros(draws * 3, 4, dtype=torch.float64), (1.0, 0.0, 0.0))
    mean = estimates.reshape(draws, 3).mean(dim=0)
    stderr = estimates.reshape(draws, 3).std(dim=0) / math.sqrt(draws)
    assert torch.all((mean - standard_kl(mu, logvar)).abs() < 4 * stderr)


def test_the_kl_estimate_is_log_q_minus_log_prior_summed_over_dimensions():
    g = torch.Generator().manual_seed(2)
    z, mu, logvar, old_mu, old_logvar = (torch.randn(2, 3, generator=g, dtype=torch.float64)
                                         for _ in range(5))
    kl = composite_kl(z, mu, logvar, old_mu, old_logvar, WEIGHTS).numpy()
    q = scipy.stats.norm.logpdf(z.numpy(), mu.numpy(), np.exp(0.5 * logvar.numpy()))
    prior = composite_log_prior(z, old_mu, old_logvar, WEIGHTS).numpy()
    np.testing.assert_allclose(kl, (q - prior).sum(axis=1), rtol=1e-12)


def _batch(n_users: int = 8, n_items: int = 30, seed: int = 0) -> SparseBatch:
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.3).astype(np.float32)
    dense[:, 0] = 1
    return SparseBatch.from_scipy(sp.csr_matrix(dense))


def test_the_dense_encoder_is_recvaes_formula():
    torch.manual_seed(0)
    model = MultVAE(30, replace(BASE.model, hidden_dims=(16, 16, 16), latent_dim=4,
                                     encoder="dense")).double().eval()
    batch = _batch()
    x = batch.to_dense().double()
    body = model.encoder
    assert isinstance(body, DenseLayers)
    h1 = body.first_norm(F.silu(F.normalize(x, dim=1) @ model.enc_in.weight + model.enc_in_bias))
    h2 = body.norms[0](F.silu(body.linears[0](h1) + h1))
    h3 = body.norms[1](F.silu(body.linears[1](h2) + h1 + h2))
    out = body.out(h3)
    mu, logvar = model.encode(batch)
    torch.testing.assert_close(mu, out[:, :4])
    torch.testing.assert_close(logvar, out[:, 4:])
    assert body.first_norm.eps == 0.1


def test_the_linear_decoder_is_one_layer_and_the_dense_encoder_needs_one_width():
    model = MultVAE(30, replace(BASE.model, hidden_dims=(16,), latent_dim=4, decoder="linear"))
    assert [type(m).__name__ for m in model.decoder] == ["Linear"]
    assert model.decoder[0].in_features == 4 and model.decoder[0].out_features == 30
    from multvae.config import ConfigError, from_dict, to_dict

    def checked(**changes):
        return from_dict({**to_dict(BASE), "model": {**to_dict(BASE.model), **changes}})

    with pytest.raises(ConfigError, match="model.hidden_dims: the dense encoder .* one width"):
        checked(encoder="dense", hidden_dims=[16, 8])
    with pytest.raises(ConfigError, match="model.prior_weights"):
        checked(prior_weights=[0.0, 1.0, 0.0])


def test_dropout_can_be_switched_off_for_a_pass_while_sampling_stays_on():
    torch.manual_seed(0)
    model = MultVAE(30, replace(BASE.model, hidden_dims=(16,), latent_dim=4, dropout=0.5)).train()
    batch = _batch()
    reference = model.eval().encode(batch)
    model.train()
    no_dropout = model.encode(batch, dropout=0.0)
    with_dropout = model.encode(batch)
    torch.testing.assert_close(no_dropout, reference)
    assert not torch.allclose(with_dropout[0], reference[0])


TINY = replace(BASE,
    data=replace(BASE.data, dataset="synthetic", heldout_users=30),
    model=replace(BASE.model, hidden_dims=(16, 16), latent_dim=4, encoder="dense", decoder="linear",
                      prior="composite"),
    beta=replace(BASE.beta, method="user_scaled"),
    optim=replace(BASE.optim, scheme="alternating", encoder_passes=2, decoder_passes=1,
                  decoder_dropout=False),
    train=replace(BASE.train, epochs=6, batch_size=60),  # 6 passes: 2 epochs of 2 encoder + 1 decoder pass
)


@pytest.fixture(scope="module")
def dataset(tiny_dataset):
    return tiny_dataset  # conftest: the tiny ratings, 30 validation and 30 test users


def test_alternating_passes_update_one_half_at_a_time_and_refresh_the_prior(dataset):
    """Per epoch: 2 encoder passes (the decoder's weights do not move), then 1 decoder pass (the
    encoder's do not), and after the encoder passes the prior's copy equals the encoder."""
    batches = -(-dataset.train.shape[0] // TINY.train.batch_size)
    snapshots: list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]] = []

    def on_update(step: int, model: MultVAE) -> bool:
        assert model.previous is not None
        snapshots.append(([p.detach().clone() for p in model.encoder_parameters()],
                          [p.detach().clone() for p in model.decoder.parameters()],
                          [p.detach().clone() for p in model.previous.parameters()]))
        return False

    result = train_model(TINY, dataset, seed=0, log=lambda _: None, on_update=on_update)
    per_epoch = batches * 3
    assert epoch_count(TINY, dataset.train.shape[0]) == 2
    assert len(snapshots) == per_epoch * 2
    for epoch in range(2):
        first = epoch * per_epoch
        encoder_phase = range(first, first + 2 * batches)
        decoder_phase = range(first + 2 * batches, first + per_epoch)
        before = snapshots[first - 1] if first else None
        for i in encoder_phase:
            if before is not None:
                assert all(torch.equal(a, b) for a, b in zip(snapshots[i][1], before[1], strict=True))
        for i in decoder_phase:
            assert all(torch.equal(a, b) for a, b in zip(snapshots[i][0], snapshots[encoder_phase[-1]][0],
                                                         strict=True))
            assert not all(torch.equal(a, b) for a, b in zip(snapshots[i][1], snapshots[encoder_phase[-1]][1],
                                                             strict=True))
            # The prior's copy is the encoder as it left the encoder passes.
            assert all(torch.equal(a, b) for a, b in zip(snapshots[i][2], snapshots[encoder_phase[-1]][0],
                                                         strict=True))
    assert len(result.curves) == 2 and np.isfinite(result.curves["loss"]).all()


def test_the_joint_scheme_is_one_pass_updating_everything():
    assert [(p.passes, p.train_encoder, p.train_decoder, p.dropout) for p in epoch_phases(BASE)] == [
        (1, True, True, None)]
    decoder_dropout = dataclasses.replace(TINY, optim=dataclasses.replace(TINY.optim, decoder_dropout=True))
    assert [p.dropout for p in epoch_phases(decoder_dropout)] == [None, None]
    assert [p.dropout for p in epoch_phases(TINY)] == [None, 0.0]


def test_a_recvae_model_resumes_and_loads_with_its_prior(dataset, tmp_path):
    from multvae.model_file import SavedModel, load_model, save_model

    every_epoch = replace(RUNTIME, checkpoint_seconds=0)
    full = train_model(TINY, dataset, seed=3, runtime=every_epoch, log=lambda _: None)
    checkpoint = tmp_path / "ckpt.pt"
    updates = -(-dataset.train.shape[0] // TINY.train.batch_size) * 3
    train_model(TINY, dataset, seed=3, runtime=every_epoch, checkpoint=checkpoint,
                log=lambda _: None, on_update=lambda step, model: step == updates + 2)  # epoch 2
    resumed = train_model(TINY, dataset, seed=3, runtime=every_epoch, checkpoint=checkpoint,
                          log=lambda _: None)
    assert resumed.curves["loss"].tolist() == full.curves["loss"].tolist()
    assert full.state_dict is not None
    save_model(tmp_path / "m.pt", full.state_dict, SavedModel(
        config=TINY, seed=3, movie_ids=dataset.movie_ids, data_fingerprint=dataset.fingerprint,
        best_epoch=full.best_epoch, best_validation=full.best_validation))
    model, _ = load_model(tmp_path / "m.pt", "cpu", dataset.fingerprint, "retrain")
    assert model.previous is not None


def test_train_epochs_counts_passes_so_one_budget_serves_every_scheme():
    """The paper's 200 epochs are 200 passes; RecVAE's epoch is 3 encoder + 1 decoder pass, so the
    same budget is its 50 epochs, and a shortened budget shortens both (rounded up)."""
    alternating = replace(BASE.optim, scheme="alternating")
    assert epoch_count(BASE, ML1M_USERS) == 200
    assert epoch_count(replace(BASE, optim=alternating), ML1M_USERS) == 50
    assert epoch_count(replace(BASE, optim=alternating, train=replace(BASE.train, epochs=5)), ML1M_USERS) == 2
    assert epoch_count(replace(BASE, train=replace(BASE.train, epochs=5)), ML1M_USERS) == 5


ML1M_USERS, SMALL_USERS = 4_834, 483  # training users: ml1m_* (600 + 600 held out), ml-latest-small (60 + 60)


def test_min_updates_adds_epochs_only_where_train_epochs_make_fewer_updates():
    """train.min_updates 2000 is what 200 passes make on ML-1M, for the paper's joint epochs and for
    RecVAE's alternating ones, so it changes nothing there; on ml-latest-small, one batch a pass,
    it takes the paper's 200 updates to 2,000 and RecVAE's 50 epochs to 500."""
    floor = replace(BASE.train, min_updates=2000)
    for optim, epochs in ((BASE.optim, 200), (replace(BASE.optim, scheme="alternating"), 50)):
        cfg = replace(BASE, optim=optim, train=floor)
        assert epoch_count(cfg, ML1M_USERS) == epochs
        assert epochs * updates_per_epoch(cfg, ML1M_USERS) == 2000
        assert epoch_count(cfg, SMALL_USERS) * updates_per_epoch(cfg, SMALL_USERS) == 2000
    assert epoch_count(replace(BASE, optim=replace(BASE.optim, scheme="alternating"), train=floor),
                       SMALL_USERS) == 500
    assert epoch_count(replace(BASE, train=floor), 120_000) == 200  # ML-20M: 240 batches an epoch
