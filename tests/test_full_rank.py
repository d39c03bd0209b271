"""The full-ranking scorer against a brute-force NumPy computation, one user and one item at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.common.full_rank import CSR, full_rank_metrics, popularity_scorer, rank_users, target_ranks


def brute_force(scores: np.ndarray, seen: list[set], targets: list[list[int]]) -> dict[str, float]:
    """Textbook definitions, loops only: each held-out item's rank among the unseen items."""
    hr, ndcg, recall, users = 0.0, 0.0, 0.0, 0
    for u, wanted in enumerate(targets):
        if not wanted:
            continue
        users += 1
        ranks = []
        for t in wanted:
            others = [j for j in range(scores.shape[1]) if j != t and j not in seen[u]]
            ranks.append(sum(1 for j in others if scores[u, j] >= scores[u, t]))
        hr += float(any(r < 10 for r in ranks))
        dcg = sum(1 / math.log2(r + 2) for r in ranks if r < 10)
        ndcg += dcg / sum(1 / math.log2(r + 2) for r in range(min(10, len(wanted))))
        recall += sum(r < 20 for r in ranks) / min(20, len(wanted))
    return {"full_hr@10": hr / users, "full_ndcg@10": ndcg / users, "full_recall@20": recall / users}


def random_case(seed: int, n_users: int = 37, n_items: int = 60, max_targets: int = 1, ties: bool = False):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(n_users, n_items)).astype(np.float32)
    if ties:  # few distinct values: ties between a target and other items are common
        scores = np.round(scores * 2) / 2
    seen, targets = [], []
    for _ in range(n_users):
        items = rng.permutation(n_items)
        n_seen = int(rng.integers(0, n_items // 2))
        n_targets = int(rng.integers(0, max_targets + 1)) if max_targets > 1 else 1
        seen.append(set(items[:n_seen].tolist()))
        targets.append(items[n_seen : n_seen + n_targets].tolist())
    return scores, seen, targets


def to_csr(lists) -> CSR:
    rows = np.concatenate([[u] * len(x) for u, x in enumerate(lists)] + [[]]).astype(np.int64)
    items = np.concatenate([sorted(x) for x in lists] + [[]]).astype(np.int64)
    return CSR.from_pairs(rows, items, len(lists))


@pytest.mark.parametrize("max_targets", [1, 3, 30])
@pytest.mark.parametrize("ties", [False, True])
def test_metrics_match_brute_force(max_targets: int, ties: bool) -> None:
    scores, seen, targets = random_case(max_targets + 10 * ties, max_targets=max_targets, ties=ties)
    table = torch.from_numpy(scores)
    expected = brute_force(scores, seen, targets)
    for chunk in (1, 7, 1000):  # chunk boundaries change nothing
        got = full_rank_metrics(
            lambda u: table[u], torch.arange(len(scores)), to_csr(seen), to_csr(targets), chunk=chunk
        )
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-6), (name, chunk)
        assert got["full_users"] == sum(1 for t in targets if t)


def test_compare_and_sort_paths_agree() -> None:
    scores, seen, targets = random_case(3, max_targets=6, ties=True)
    table = torch.from_numpy(scores)
    table[[u for u in range(len(seen)) for _ in seen[u]], [i for s in seen for i in s]] = -torch.inf
    rows = torch.tensor([u for u, t in enumerate(targets) for _ in t])
    items = torch.tensor([i for t in targets for i in t])
    compared = target_ranks(table, rows, items, compare_max=100)
    searched = target_ranks(table, rows, items, compare_max=0)
    assert torch.equal(compared, searched) and len(compared) > len(targets)


def test_top_k_never_holds_seen_items_and_is_the_best_unseen() -> None:
    scores, seen, _ = random_case(5, n_users=20, n_items=30)
    seen[3] = set(range(28))  # two unseen items: the rest of its top-5 is padding
    table = torch.from_numpy(scores)
    users = torch.tensor([3, 0, 19, 7])  # any order, any subset
    parts = list(rank_users(lambda u: table[u], users, to_csr(seen), k=5, chunk=3))
    top = torch.cat([p.top_items for p in parts])
    for row, u in enumerate(users.tolist()):
        unseen = [j for j in np.argsort(-scores[u], kind="stable") if j not in seen[u]]
        want = unseen[:5] + [-1] * (5 - len(unseen[:5]))
        assert sorted(top[row].tolist()) == sorted(want)
        assert not set(top[row].tolist()) & seen[u]
    assert top[0].tolist()[2:] == [-1, -1, -1]


def test_popularity_baseline_ranks_by_training_counts() -> None:
    train_items = torch.tensor([2, 2, 2, 0, 0, 1])
    score = popularity_scorer(train_items, 4)
    seen = to_csr([{2}, set()])
    targets = to_csr([[0], [3]])  # user 0: item 0 is first once 2 is masked; user 1: item 3 is last
    got = full_rank_metrics(score, torch.arange(2), seen, targets)
    assert got["full_hr@10"] == 1.0 and got["full_ndcg@10"] == pytest.approx(0.5 * (1 + 1 / math.log2(5)))


def test_bad_arguments_are_refused() -> None:
    table = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        next(rank_users(lambda u: table[u], torch.arange(2), to_csr([[], []]), k=0))
    with pytest.raises(ValueError, match="targets has 1 rows for 2 users"):
        full_rank_metrics(lambda u: table[u], torch.arange(2), to_csr([[], []]), to_csr([[1]]))


@pytest.mark.parametrize("layers", [(64, 32, 16), (14, 8), ()])
def test_neumf_scores_every_item_as_its_forward_does(layers: tuple[int, ...]) -> None:
    from models.ncf.model import NeuMF, NeuMFConfig

    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(50, 40, 8, layers, 0.3)).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.3)  # far from the small init: every term matters
    users = torch.tensor([3, 7, 0, 49])
    with torch.no_grad():
        shared = model.score_items(users)
        pairwise = model(users, torch.arange(40).expand(4, 40))
    torch.testing.assert_close(shared, pairwise, rtol=1e-5, atol=1e-5)
