import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from multvae.data import HeldOut
from multvae.metrics import score_heldout


def _heldout(foldin_rows, target_rows, n_items):
    def csr(rows):
        m = sp.lil_matrix((len(rows), n_items), dtype=np.float32)
        for i, items in enumerate(rows):
            m[i, items] = 1
        return m.tocsr()

    return HeldOut(users=np.arange(len(foldin_rows)), foldin=csr(foldin_rows), target=csr(target_rows))


def fixed(scores):
    return lambda foldin: torch.tensor(scores, dtype=torch.float32)


def test_hand_computed_ndcg_and_recall():
    # Items ranked by score: 0 > 1 > 2 > 3 > 4 > 5. Item 0 is fold-in, so the ranking is 1,2,3,4,5.
    # Targets {2, 5}: hits at ranks 2 and 5.
    heldout = _heldout([[0]], [[2, 5]], 6)
    scores = [[6, 5, 4, 3, 2, 1]]
    out = score_heldout(fixed(scores), heldout, ks=(2, 3, 100))
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 / math.log2(2) + 1 / math.log2(3)
    assert out["ndcg@100"].item() == pytest.approx(dcg / idcg)
    assert out["recall@2"].item() == pytest.approx(0.5)  # one of min(2, 2) in the top 2
    assert out["recall@3"].item() == pytest.approx(0.5)


def test_recall_denominator_is_min_of_k_and_target_size():
    # 5 targets, k = 2: both top-2 are targets -> recall@2 = 2 / min(2, 5) = 1.
    heldout = _heldout([[9]], [[0, 1, 2, 3, 4]], 10)
    scores = [list(range(10, 0, -1))]
    out = score_heldout(fixed(scores), heldout, ks=(2, 100))
    assert out["recall@2"].item() == 1.0
    assert out["ndcg@100"].item() == pytest.approx(1.0)


def test_ndcg_idcg_uses_min_of_k_and_target_size():
    # 3 targets ranked first with k=2: DCG over 2 positions equals IDCG over min(2, 3) = 2 -> 1.
    heldout = _heldout([[5]], [[0, 1, 2]], 6)
    out = score_heldout(fixed([[6, 5, 4, 3, 2, 1]]), heldout, ks=(1, 2))
    assert out["ndcg@2"].item() == pytest.approx(1.0)


def test_fold_in_items_are_never_counted_as_hits():
    # The best-scored item is both fold-in and (wrongly) target: excluded, so it cannot be a hit.
    heldout = _heldout([[0]], [[0]], 4)
    out = score_heldout(fixed([[9, 1, 1, 1]]), heldout, ks=(1, 3))
    assert out["ndcg@3"].item() == 0.0
    assert out["recall@1"].item() == 0.0


def test_per_user_rows_and_batches_agree():
    rng = np.random.default_rng(0)
    n, items = 37, 50
    foldin = [list(rng.choice(items, 5, replace=False)) for _ in range(n)]
    target = [list(set(rng.choice(items, 4, replace=False)) - set(f)) or [49] for f in foldin]
    heldout = _heldout(foldin, target, items)
    scores = rng.random((n, items))

    offset = [0]

    def scorer(batch):
        out = torch.tensor(scores[offset[0]: offset[0] + batch.shape[0]])
        offset[0] += batch.shape[0]
        return out

    whole = score_heldout(lambda b: torch.tensor(scores), heldout, ks=(5, 10), batch_size=1000)
    batched = score_heldout(scorer, heldout, ks=(5, 10), batch_size=8)
    assert len(whole) == n
    np.testing.assert_allclose(whole[["ndcg@10", "recall@5"]], batched[["ndcg@10", "recall@5"]])
