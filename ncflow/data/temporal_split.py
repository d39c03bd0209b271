"""The temporal protocol: train on everything before a cutoff T, test on what users did in [T, T + horizon).

This is how a retrained model is judged in production: on interactions that happened after all of its
training data. Beside leave-latest-out (ncflow/data/ncf_split.py) it answers "how good will next
week's recommendations be", and it is the held-out data on which a new model and the current
champion can be compared fairly (neither trained on it).

One code path for NumPy and CuPy. Decisions:
- the vocabulary (user and item indices) is what appears before T: a model can only score those;
- a test target is a (user, item) pair first seen in the window whose user and item are both known;
  every target of a user counts (full-ranking HR, NDCG and Recall over all of them);
- what cannot be tested is counted and reported apart, never silently dropped: window users never
  seen before T (cold-start users), window items never seen before T (cold-start items), the window
  rows they take part in, and repeats of a pair the user already had before T (seen items are never
  recommended, so they cannot be hits);
- each test user also gets one held-out item (their earliest target; ties to the smallest item
  index) with sampled negatives, so the trainer's per-epoch sampled HR@10 works unchanged;
- with `validation`, each user's latest pre-T pair is held out as validation (users with >= 2 pairs),
  for early stopping and model selection that never looks at the window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from types import ModuleType

from configs import PreprocessConfig
from ncflow.data.arrays import bit_length, dense_rank, member, renumber, run_ends, sort_order
from ncflow.data.interactions import Interactions, seconds_since_epoch
from ncflow.data.ncf_split import NCFSplit, draw_test_negatives
from ncflow.errors import NcflowError


def temporal_split(
    xp: ModuleType,
    user,
    item,
    timestamp,
    *,
    cutoff: int,
    horizon: int,
    negatives: int = 100,
    distinct: bool = False,
    seed: int = 0,
    validation: bool = False,
) -> NCFSplit:
    """Split at `cutoff` (in the timestamps' ticks) with a test window of `horizon` ticks."""
    before = timestamp < cutoff
    window = (timestamp >= cutoff) & (timestamp < cutoff + horizon)
    if not bool(before.any()):
        raise NcflowError(
            "no interactions before the temporal cutoff: nothing to train on (set an earlier cutoff)"
        )
    u, user_ids = renumber(xp, user[before])
    i, item_ids = renumber(xp, item[before])
    n_items = len(item_ids)
    t = timestamp[before] - timestamp[before].min()
    pair = u.astype(xp.int64) * n_items + i
    order = sort_order(xp, pair, t)
    order = order[run_ends(xp, pair[order])]  # one row per pair, its latest time
    u, i, t = u[order], i[order], t[order]  # sorted by (user, item)

    is_train = xp.ones(len(u), dtype=bool)
    valid_pos = None
    if validation:
        by_time = sort_order(xp, u, time_then_item(xp, t, i, n_items))
        ends = xp.nonzero(run_ends(xp, u[by_time]))[0]
        counts = xp.bincount(u, minlength=len(user_ids))
        valid_pos = by_time[ends[counts >= 2]]  # each user's latest pre-cutoff pair, users in order
        is_train[valid_pos] = False

    w_user, w_item, w_time = user[window], item[window], timestamp[window]
    known_user, wu = lookup(xp, user_ids, w_user)
    known_item, wi = lookup(xp, item_ids, w_item)
    known = known_user & known_item
    wu, wi, w_time = wu[known], wi[known], w_time[known]
    w_pair = wu.astype(xp.int64) * n_items + wi
    repeat = member(xp, pair[order], w_pair)  # already had before the cutoff: never recommended
    wu, wi, w_time, w_pair = wu[~repeat], wi[~repeat], w_time[~repeat], w_pair[~repeat]
    first = sort_order(xp, w_pair, w_time - (w_time.min() if len(w_time) else 0))
    first = first[run_starts(xp, w_pair[first])]  # each new pair once, at its first time
    target_user, target_item, target_time = wu[first], wi[first], w_time[first]  # (user, item)-sorted
    cold = {
        "window_rows": int(window.sum()),
        "cold_start_users": int(len(xp.unique(w_user[~known_user]))),
        "cold_start_items": int(len(xp.unique(w_item[~known_item]))),
        "cold_start_rows": int((~known).sum()),
        "repeat_rows": int(repeat.sum()),
    }
    if len(target_user) == 0:
        raise NcflowError(
            f"no testable interactions in the temporal window ({cold['window_rows']} rows, "
            f"{cold['cold_start_rows']} of them with cold-start users or items): widen the horizon or move the cutoff"
        )

    test_user = xp.unique(target_user)  # ascending
    earliest = sort_order(xp, target_user, time_then_item(xp, target_time, target_item, n_items))
    test_item = target_item[earliest[run_starts(xp, target_user[earliest])]]
    options = {"negatives": negatives, "distinct": distinct, "seed": seed}
    test_negatives = draw_test_negatives(xp, u, i, test_item, n_items, users=test_user, **options)
    indptr = xp.zeros(len(test_user) + 1, dtype=xp.int64)
    indptr[1:] = xp.cumsum(xp.bincount(target_user, minlength=len(user_ids))[test_user])
    split = {
        "train_user": u[is_train], "train_item": i[is_train], "test_item": test_item,
        "test_negatives": test_negatives, "user_ids": user_ids, "item_ids": item_ids,
        "test_user": test_user.astype(xp.int32), "targets": (indptr, target_item.astype(xp.int32)),
        "cold": cold,
    }  # fmt: skip
    if valid_pos is not None:
        valid_user, valid_item = u[valid_pos], i[valid_pos]
        split["valid_user"], split["valid_item"] = valid_user, valid_item
        split["valid_negatives"] = draw_test_negatives(
            xp, split["train_user"], split["train_item"], valid_item, n_items, users=valid_user, stream=0x7A11D,
            **options,
        )  # fmt: skip
    return NCFSplit(**split)


def time_then_item(xp: ModuleType, t, i, n_items: int):
    """One sortable key ordering by time, then item index (wide clocks shrunk to their ranks)."""
    t = t - t.min() if len(t) else t
    shift = max(n_items - 1, 1).bit_length()
    if bit_length(xp, t) + shift > 62:
        t = dense_rank(xp, t)
    return (t.astype(xp.int64) << shift) | i.astype(xp.int64)


def lookup(xp: ModuleType, sorted_ids, ids):
    """(found, index) of `ids` in the ascending `sorted_ids` (index meaningless where not found)."""
    if len(sorted_ids) == 0:
        return xp.zeros(len(ids), dtype=bool), xp.zeros(len(ids), dtype=xp.int32)
    pos = xp.minimum(xp.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids, pos.astype(xp.int32)


def run_starts(xp: ModuleType, sorted_keys):
    """Mask of the first element of each run of equal keys in a sorted array."""
    first = xp.ones(len(sorted_keys), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return first


@dataclass(frozen=True)
class TemporalWindow:
    cutoff: dt.date  # training is before 00:00 UTC of this day; testing starts there
    horizon_days: int

    def ticks(self, ticks_per_second: int) -> dict[str, int]:
        """temporal_split's `cutoff` and `horizon` in the data's time unit."""
        return {
            "cutoff": seconds_since_epoch(self.cutoff) * ticks_per_second,
            "horizon": self.horizon_days * 86_400 * ticks_per_second,
        }

    def describe(self) -> dict[str, str | int]:
        end = self.cutoff + dt.timedelta(days=self.horizon_days)
        return {"cutoff": str(self.cutoff), "horizon_days": self.horizon_days, "test_until": str(end)}


def temporal_window(interactions: Interactions, config: PreprocessConfig) -> TemporalWindow:
    """The configured cutoff, or by default the one leaving the data's last `horizon_days` days as test."""
    if not interactions.ticks_per_second:
        raise NcflowError("the temporal protocol needs a time column (set the timestamp column's name)")
    if config.cutoff is not None:
        return TemporalWindow(config.cutoff, config.horizon_days)
    last = int(interactions.timestamp.max()) // interactions.ticks_per_second
    last_day = dt.datetime.fromtimestamp(last, dt.UTC).date()
    return TemporalWindow(last_day + dt.timedelta(days=1 - config.horizon_days), config.horizon_days)
