import math
import random

import pytest
import torch

from models.ncf.metrics import hit_ndcg, mask_duplicates


def reference(scores: list[float], cands: list[int], k: int) -> tuple[float, float, list[bool]]:
    """Brute force, one user: the MLPerf duplicate rule and pessimistic ties, straight from the text."""
    keep, seen = [True], {cands[0]}
    for item in cands[1:]:
        keep.append(item not in seen)
        seen.add(item)
    rank = sum(1 for j in range(1, len(cands)) if keep[j] and scores[j] >= scores[0])
    hit = rank < k
    return float(hit), (1.0 / math.log2(rank + 2) if hit else 0.0), keep


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force(seed):
    rng = random.Random(seed)
    n_users, n_cands, n_items, k = 200, 101, 40, 10  # 40 items for 101 draws: many duplicates
    cands = [[rng.randrange(n_items) for _ in range(n_cands)] for _ in range(n_users)]
    for row in cands[:20]:  # some negatives equal to the positive
        row[rng.randrange(1, n_cands)] = row[0]
    # Scores quantised to 6 values: ties everywhere. Per-column noise: duplicates may differ in score.
    scores = [[rng.randrange(6) / 5.0 for _ in range(n_cands)] for _ in range(n_users)]
    hits, ndcg = hit_ndcg(torch.tensor(scores), torch.tensor(cands), k=k)
    mask = mask_duplicates(torch.tensor(cands))
    assert hits.dtype == ndcg.dtype == torch.float32 and hits.shape == ndcg.shape == (n_users,)
    for u in range(n_users):
        h, n, keep = reference(scores[u], cands[u], k)
        assert hits[u].item() == h
        assert ndcg[u].item() == pytest.approx(n, abs=1e-6)
        assert mask[u].tolist() == keep
    assert 0 < hits.sum() < n_users  # the case mix hits both branches


@pytest.mark.parametrize("k", [1, 5, 100])
def test_k_and_small_cases(k):
    rng = random.Random(k)
    cands = [[rng.randrange(8) for _ in range(6)] for _ in range(300)]
    scores = [[rng.randrange(3) for _ in range(6)] for _ in range(300)]
    hits, ndcg = hit_ndcg(torch.tensor(scores, dtype=torch.float16), torch.tensor(cands), k=k)
    for u in range(300):
        h, n, _ = reference(scores[u], cands[u], k)
        assert (hits[u].item(), ndcg[u].item()) == pytest.approx((h, n), abs=1e-6)


def test_handmade():
    cands = torch.tensor([[5, 1, 2, 3], [5, 5, 5, 5], [5, 1, 1, 1], [5, 1, 2, 3]])
    scores = torch.tensor(
        [[0.9, 0.1, 0.2, 0.3], [0.0, 9.0, 9.0, 9.0], [0.5, 0.5, 0.9, 0.9], [0.2, 0.2, 0.3, 0.1]]
    )
    hits, ndcg = hit_ndcg(scores, cands, k=2)
    # row 0: rank 0. row 1: every negative is the positive, rank 0. row 2: only the first 1 counts and it
    # ties: rank 1. row 3: 0.2 tie and 0.3 above: rank 2, a miss at k=2.
    assert hits.tolist() == [1.0, 1.0, 1.0, 0.0]
    torch.testing.assert_close(ndcg, torch.tensor([1.0, 1.0, 1.0 / math.log2(3), 0.0]))
    assert mask_duplicates(cands).tolist() == [
        [True, True, True, True],
        [True, False, False, False],
        [True, True, False, False],
        [True, True, True, True],
    ]


def test_shape_mismatch():
    with pytest.raises(ValueError):
        hit_ndcg(torch.zeros(3, 4), torch.zeros(3, 5, dtype=torch.long))
