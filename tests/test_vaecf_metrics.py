"""VAE-CF metrics against a brute-force pure-Python reference written straight from the definitions."""

import math
import random

import numpy as np
import pytest
import torch

from models.vaecf.data import CSRTensors
from models.vaecf.evaluate import evaluate, popularity_scorer
from models.vaecf.metrics import mask_foldin, ranking_metrics


def reference(scores: list[float], foldin: set[int], targets: set[int]) -> dict[str, float]:
    """One user: drop the fold-in items, rank the rest by score, compare the top with the targets."""
    ranked = sorted((i for i in range(len(scores)) if i not in foldin), key=lambda i: -scores[i])
    out = {}
    dcg = sum(1.0 / math.log2(r + 2) for r, item in enumerate(ranked[:100]) if item in targets)
    idcg = sum(1.0 / math.log2(r + 2) for r in range(min(100, len(targets))))
    out["ndcg@100"] = dcg / idcg
    for k in (20, 50):
        out[f"recall@{k}"] = len(set(ranked[:k]) & targets) / min(k, len(targets))
    return out


def random_case(rng: random.Random, n_users: int, n_items: int):
    # Distinct scores: the top-k is then unique, whatever order topk breaks ties in.
    scores = [rng.sample(range(10 * n_items), n_items) for _ in range(n_users)]
    foldins, targets = [], []
    for _ in range(n_users):
        n_target = rng.choice([1, 2, 5, 30, 60, 150]) if n_items > 200 else rng.randint(1, n_items // 3)
        n_foldin = rng.randint(1, n_items // 3)
        chosen = rng.sample(range(n_items), n_target + n_foldin)
        targets.append(set(chosen[:n_target]))
        foldins.append(set(chosen[n_target:]))
    return scores, foldins, targets


def nonzeros(sets: list[set[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [u for u, s in enumerate(sets) for _ in s]
    items = [i for s in sets for i in sorted(s)]
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(items, dtype=torch.int64)


@pytest.mark.parametrize(("seed", "n_items"), [(0, 400), (1, 400), (2, 120), (3, 60)])
def test_against_brute_force(seed, n_items):
    # 400 items: targets beyond k (150 > 100 > 50); 60 items: fewer items than k = 100
    rng = random.Random(seed)
    scores, foldins, targets = random_case(rng, 40, n_items)
    s = mask_foldin(torch.tensor(scores, dtype=torch.float32), *nonzeros(foldins))
    got = ranking_metrics(s, *nonzeros(targets))
    for u in range(40):
        want = reference(scores[u], foldins[u], targets[u])
        for name, value in want.items():
            assert got[name][u].item() == pytest.approx(value, rel=1e-5, abs=1e-6), (u, name)


def test_handmade():
    # 6 items; fold-in {0}; targets {2, 5}; order by score: 0 (masked), 5, 1, 2, 3, 4
    scores = torch.tensor([[9.0, 5.0, 4.0, 3.0, 2.0, 8.0]])
    mask_foldin(scores, torch.tensor([0]), torch.tensor([0]))
    m = ranking_metrics(scores, torch.tensor([0, 0]), torch.tensor([2, 5]), recall_ks=(1, 2, 3))
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@100"].item() == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    assert m["recall@1"].item() == 1.0  # 1 hit / min(1, 2)
    assert m["recall@2"].item() == 0.5
    assert m["recall@3"].item() == 1.0


def test_perfect_ranking_is_one_and_fold_in_never_counts():
    n_items = 300
    targets = set(range(120))  # more targets than k: Recall@k and NDCG@k are still 1 at best
    scores = torch.tensor([[float(n_items - i) for i in range(n_items)]])
    scores[0, 250] = 1e9  # the fold-in item scores highest; masked, it must not push targets down
    mask_foldin(scores, torch.tensor([0]), torch.tensor([250]))
    m = ranking_metrics(scores, *nonzeros([targets]))
    assert all(v.item() == pytest.approx(1.0) for v in m.values())


def csr_of(sets: list[set[int]]) -> CSRTensors:
    indptr = np.cumsum([0] + [len(s) for s in sets])
    indices = np.array([i for s in sets for i in sorted(s)], dtype=np.int64)
    return CSRTensors.from_numpy(indptr, indices, np.arange(len(sets)), "cpu")


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_evaluate_chunks_and_rank_shares_add_up(chunk):
    rng = random.Random(5)
    n_items = 150
    scores, foldins, targets = random_case(rng, 23, n_items)
    table = torch.tensor(scores, dtype=torch.float32)
    foldin, target = csr_of(foldins), csr_of(targets)
    row = iter(range(23))  # the score function sees rows in order: give it those rows' scores

    def score_fn(batch):
        return torch.stack([table[next(row)] for _ in range(batch.size)])

    # 3 "ranks" without a process group: each scores its share; the shares' sums are the whole.
    means = [evaluate(score_fn, foldin, target, rank=r, world_size=3, chunk=chunk) for r in range(3)]
    total = {name: sum(m[name] for m in means) for name in means[0]}
    refs = [reference(scores[u], foldins[u], targets[u]) for u in range(23)]
    for name in total:
        assert total[name] == pytest.approx(sum(r[name] for r in refs) / 23, rel=1e-6)


def test_popularity_scorer():
    train = csr_of([{0, 1}, {1}, {1, 2}])
    scores = popularity_scorer(train, 4)(type("B", (), {"size": 2})())
    assert scores.tolist() == [[1.0, 3.0, 1.0, 0.0]] * 2
