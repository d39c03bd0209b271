"""Synthetic MovieLens-shaped data: the pipeline runs and is tested without downloading MovieLens.

The files match MovieLens-20M's format, and the ratings carry a planted low-rank preference, so a
model trained under the NCF leave-one-out protocol has something real to learn (and the tests can
check that it is learnable). Everything is drawn with NumPy from one seed; the factors are
integer-valued so the matrix products are exact whatever BLAS runs them.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ncflow.atomic import atomic_dir
from ncflow.errors import NcflowError


@dataclass(frozen=True)
class SynthPreset:
    """Shape and statistics of one synthetic data set (MovieLens-like marginals, planted rank-`rank` model)."""

    n_users: int
    n_items: int
    mean_per_user: float  # mean ratings per user, including the 20 every user has
    rank: int = 16  # rank of the planted user x item preference
    temperature: float = 0.5  # lower: choices follow the preference more closely
    zipf_a: float = 1.0  # item popularity ~ 1 / (popularity rank + zipf_k) ** zipf_a
    zipf_k: float = 10.0
    user_sigma: float = 1.2  # lognormal spread of activity beyond the minimum
    cap_frac: float = 0.5  # no user rates more than this fraction of the items
    min_per_user: int = 20  # as in MovieLens
    max_movie_id: int = 131262  # movieIds are a sample of 1..max_movie_id, as in ML-20M
    description: str = ""


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(
        500,
        300,
        40.0,
        rank=8,
        user_sigma=1.0,
        zipf_a=1.5,
        zipf_k=3.0,
        description="tests: 500 users x 300 items, ~20k ratings",
    ),
    "ml1m": SynthPreset(
        6040,
        3706,
        165.6,
        user_sigma=1.15,
        cap_frac=0.6,
        zipf_a=1.15,
        description="MovieLens-1M shape: 6,040 users x 3,706 items, ~1M ratings",
    ),
    "ml20m": SynthPreset(
        138493,
        26744,
        144.41,
        user_sigma=1.4,
        cap_frac=0.35,
        zipf_a=1.1,
        description="MovieLens-20M shape: 138,493 users x 26,744 items, ~20M ratings",
    ),
}

RATINGS_HEADER = "userId,movieId,rating,timestamp\n"
RATING_LABELS = ("0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")
# Share of each half star in MovieLens-20M; thresholds on a standard-normal latent reproduce it.
_RATING_SHARE = (0.011, 0.034, 0.014, 0.072, 0.044, 0.214, 0.105, 0.278, 0.077, 0.151)
_RATING_CUTS = np.array([NormalDist().inv_cdf(c) for c in np.cumsum(_RATING_SHARE)[:-1]])
_T0, _T1 = 789_652_009, 1_427_784_002  # first and last ML-20M timestamps (1995-01-09 .. 2015-03-31)
_GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_SCHEMA = pa.schema(
    [("userId", pa.int32()), ("movieId", pa.int32()), ("rating", pa.string()), ("timestamp", pa.int64())]
)
_DENSE_CELLS = 1 << 24  # users per chunk * n_items: bounds the dense score block (128 MiB of float64)


def write_synthetic(preset: str, out: Path, seed: int = 0) -> Path:
    """Write `ratings.csv`, `movies.csv` and `synth.json` into `out`, atomically; return `out`."""
    if preset not in PRESETS:
        raise NcflowError(f"unknown synthetic preset {preset!r}: use one of {', '.join(PRESETS)}")
    if not isinstance(seed, int) or seed < 0:
        raise NcflowError(f"synthetic seed must be a non-negative integer, got {seed!r}")
    p = PRESETS[preset]
    out = Path(out)
    log = _progress(p.n_users * p.mean_per_user > 2e6)
    model = _Model(p, seed)
    spans = [
        (lo, min(lo + model.chunk, p.n_users), i) for i, lo in enumerate(range(0, p.n_users, model.chunk))
    ]
    log(f"synth {preset}: model ready, sampling {int(model.counts.sum()):,} ratings in {len(spans)} chunks")
    with atomic_dir(out) as tmp, ThreadPoolExecutor(min(os.cpu_count() or 1, 4)) as pool:
        # Threads, not processes: NumPy's heavy loops release the GIL, and nothing is pickled or forked.
        # map() keeps chunk order, and each chunk has its own seed: the file is the same for any pool.
        tables = pool.map(lambda span: model.sample(*span), spans)
        n_ratings = 0
        opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
        with open(tmp / "ratings.csv", "wb") as fh:
            fh.write(RATINGS_HEADER.encode())
            with pacsv.CSVWriter(fh, _SCHEMA, write_options=opts) as writer:
                for (lo, _, i), table in zip(spans, tables, strict=True):
                    writer.write_table(table)
                    n_ratings += table.num_rows
                    if i and i % 40 == 0:
                        log(f"synth {preset}: {lo:,}/{p.n_users:,} users, {n_ratings:,} ratings")
        _write_movies(tmp / "movies.csv", model.movie_ids, _rng(seed, 2))
        meta = {
            "preset": preset,
            "seed": seed,
            "n_users": p.n_users,
            "n_items": p.n_items,
            "n_ratings": n_ratings,
            "description": _describe(p),
            "params": asdict(p),
        }
        (tmp / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"synth {preset}: wrote {n_ratings:,} ratings to {out}")
    return out


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per (seed, purpose, chunk): output does not depend on how chunks are spread."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class _Model:
    """The planted model: activity per user, item popularity, integer factors, biases; samples per chunk."""

    def __init__(self, p: SynthPreset, seed: int) -> None:
        self.p, self.seed = p, seed
        rng = _rng(seed, 0)
        n, m = p.n_users, p.n_items
        self.movie_ids = np.sort(rng.choice(p.max_movie_id, size=m, replace=False) + 1).astype(np.int32)
        # Activity: the MovieLens minimum plus a lognormal extra, capped, scaled to the target mean.
        z = rng.standard_normal(n)
        cap = max(int(p.cap_frac * m), p.min_per_user)
        counts = _scaled_counts(np.exp(p.user_sigma * z), p.min_per_user, cap, round(n * p.mean_per_user))
        # Popularity: Zipf over a random order of the items.
        zipf = 1.0 / (rng.permutation(m) + p.zipf_k) ** p.zipf_a
        self.log_pop = np.log(zipf / zipf.sum())
        # Integer-valued factors: exact dot products on any BLAS; scale makes U_u . V_i about N(0, 1).
        self.U = np.clip(np.rint(rng.standard_normal((n, p.rank)) * 8), -40, 40)
        self.V = np.clip(np.rint(rng.standard_normal((m, p.rank)) * 8), -40, 40)
        self.scale = 1.0 / (64.0 * np.sqrt(p.rank))
        # log weight = U_u . V_i * scale / T + log pop_i as ONE product of augmented factors, every term
        # on a 2**-20 grid: the sums are exact in float64, so any BLAS and summation order agree.
        grid = 2.0**-20
        self.Ua = np.c_[np.rint(self.U * (self.scale / p.temperature) / grid) * grid, np.ones(n)]
        self.Va = np.c_[self.V, np.rint(self.log_pop / grid) * grid]
        self.user_bias = rng.normal(0.0, 0.45, n)
        self.item_bias = rng.normal(0.0, 0.35, m) + 0.15 * (self.log_pop - self.log_pop.mean())
        self.gap_days = rng.lognormal(np.log(30.0), 1.0, n)  # mean pause between one user's sessions
        # Every item gets one rater: the best of 16 activity-weighted users under the same model.
        self.forced_user, self.forced_item = self._cover_items(counts, rng)
        forced_per_user = np.bincount(self.forced_user, minlength=n)
        self.counts = np.maximum(counts, forced_per_user)
        self.chunk = max(1, min(n, _DENSE_CELLS // m))
        self._local = threading.local()  # a dense block per thread, reused: fresh ones cost page faults

    def _cover_items(self, counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Pick, per item, a user who will surely rate it, so every item appears at least once."""
        m = self.p.n_items
        ucdf = np.cumsum(counts, dtype=np.float64)
        cand = np.searchsorted(ucdf, rng.random((m, 16)) * ucdf[-1], side="right")
        uv = np.einsum("ijk,ik->ij", self.U[cand], self.V) * self.scale
        best = np.argmax(uv / self.p.temperature + rng.gumbel(size=uv.shape), axis=1)
        users = cand[np.arange(m), best]
        order = np.lexsort((np.arange(m), users))
        return users[order], np.arange(m)[order]

    def sample(self, lo: int, hi: int, index: int) -> pa.Table:
        """Ratings of users lo..hi-1, rows ordered by (userId, movieId) as in MovieLens.

        Each user's items are an exact draw without replacement from weights pop_i * exp(U_u . V_i / T):
        draws with replacement, first occurrences kept in draw order (successive sampling). The few
        users whose draws hold too few distinct items use Gumbel top-k over all items instead.
        """
        m, nu = self.p.n_items, hi - lo
        cnt = self.counts[lo:hi]
        rng = _rng(self.seed, 1, index)
        if not hasattr(self._local, "buf"):
            self._local.buf = np.empty((self.chunk, m))
        cdf = np.matmul(self.Ua[lo:hi], self.Va.T, out=self._local.buf[:nu]).ravel()
        np.exp(cdf, out=cdf)
        np.cumsum(cdf, out=cdf)  # one running sum over the block: row u spans cdf[u*m : (u+1)*m]
        row_end = cdf[m - 1 :: m]
        row_start = np.r_[0.0, row_end[:-1]]
        # Each user's block of "draws": their forced items first, then 3x their count from the weights.
        f0, f1 = np.searchsorted(self.forced_user, [lo, hi])
        fu, fi = self.forced_user[f0:f1] - lo, self.forced_item[f0:f1]
        n_forced = np.bincount(fu, minlength=nu)
        per = n_forced + 3 * cnt + 20
        lu = np.repeat(np.arange(nu, dtype=np.int64), per)
        within = np.arange(lu.size) - np.repeat(np.cumsum(per) - per, per)
        forced = within < n_forced[lu]
        item = np.empty(lu.size, dtype=np.int64)
        item[forced] = fi
        ud = lu[~forced]
        target = row_start[ud] + rng.random(ud.size) * (row_end[ud] - row_start[ud])
        order = np.argsort(target)  # sorted keys make searchsorted twice as fast
        found = np.empty(ud.size, dtype=np.int64)
        found[order] = np.searchsorted(cdf, target[order], side="right")
        item[~forced] = np.clip(found - ud * m, 0, m - 1)
        flat = lu * m + item
        _, first = np.unique(flat, return_index=True)  # first occurrence of each (user, item)
        first.sort()  # back to draw order, grouped by user
        fu_ = lu[first]
        rank = np.arange(first.size) - np.searchsorted(fu_, fu_)
        chosen = flat[first[rank < cnt[fu_]]]
        short = np.flatnonzero(np.bincount(fu_, minlength=nu) < cnt)
        if short.size:  # peaked or heavy users: Gumbel top-k over every item, same weights
            extra = self._top_k(lo, short, cnt[short], fu, fi, rng)
            chosen = np.concatenate([chosen[~np.isin(chosen // m, short)], extra])
        chosen.sort()
        cu, ci = chosen // m, chosen % m
        uv = np.einsum("ij,ij->i", self.U[lo + cu], self.V[ci]) * self.scale
        # Ratings rise with the preference; biases and noise make them MovieLens-like.
        latent = 0.55 * uv + self.user_bias[lo + cu] + self.item_bias[ci] + rng.normal(0.0, 0.6, cu.size)
        stars = np.searchsorted(_RATING_CUTS, (latent - 0.8) / 0.97)  # ~N(0, 1) on the chosen items
        ts = self._timestamps(lo, cu, rng)
        return pa.table(
            {
                "userId": pa.array(lo + cu + 1, pa.int32()),
                "movieId": pa.array(self.movie_ids[ci], pa.int32()),
                "rating": pa.array(RATING_LABELS).take(pa.array(stars.astype(np.int8))),
                "timestamp": pa.array(ts, pa.int64()),
            }
        )

    def _top_k(
        self,
        lo: int,
        rows: np.ndarray,
        k: np.ndarray,
        fu: np.ndarray,
        fi: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Exact weighted sampling without replacement for chunk rows `rows`: the k largest w_i / E_i.

        w_i / E_i with E_i ~ Exp(1) ranks like log w_i + Gumbel (Efraimidis-Spirakis); forced items
        come first. Returns flat indices row * n_items + item.
        """
        m = self.p.n_items
        key = np.exp(self.Ua[lo + rows] @ self.Va.T)
        key /= rng.standard_exponential(key.shape)
        sel = np.isin(fu, rows)
        key[np.searchsorted(rows, fu[sel]), fi[sel]] = np.inf
        kmax = int(k.max())
        top = np.argpartition(key, m - kmax, axis=1)[:, m - kmax :]  # the kmax largest, unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(key, top, axis=1), axis=1), axis=1)
        return (rows[:, None] * m + top)[np.arange(kmax)[None, :] < k[:, None]]

    def _timestamps(self, lo: int, cu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Sessions per user in a random order of their items, so the latest rating is a typical one."""
        k = cu.size
        perm = np.lexsort((rng.random(k), cu))
        u = cu[perm]
        first = np.r_[True, u[1:] != u[:-1]]
        new_session = rng.random(k) < 0.04
        gap = np.where(
            new_session, rng.exponential(1.0, k) * self.gap_days[lo + u] * 86400.0, rng.exponential(45.0, k)
        )
        gap[first] = 0.0
        csum = np.cumsum(gap)
        starts = np.flatnonzero(first)
        within = csum - np.repeat(csum[starts], np.diff(np.r_[starts, k]))
        span = within[np.r_[starts[1:], k] - 1]
        room = float(_T1 - _T0)
        shrink = np.minimum(1.0, room / np.maximum(span, 1.0))
        begin = _T0 + rng.random(starts.size) * np.maximum(room - span, 0.0)
        grp = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, k]))
        ts = np.empty(k, dtype=np.int64)
        ts[perm] = np.floor(begin[grp] + within * shrink[grp]).astype(np.int64)
        return ts


def _scaled_counts(extra: np.ndarray, lo: int, cap: int, target: int) -> np.ndarray:
    """lo + c * extra, capped at `cap`, with c found by bisection so the total is close to `target`."""
    a, b = 0.0, float(cap)
    for _ in range(60):
        c = (a + b) / 2
        total = int(np.minimum(lo + np.floor(c * extra), cap).sum())
        a, b = (c, b) if total < target else (a, c)
    return np.minimum(lo + np.floor(a * extra), cap).astype(np.int64)


def _write_movies(path: Path, movie_ids: np.ndarray, rng: np.random.Generator) -> None:
    """movies.csv as MovieLens writes it: quoted only where needed; some titles carry ', The'."""
    years = rng.integers(1920, 2016, movie_ids.size)
    n_genres = rng.integers(1, 4, movie_ids.size)
    picks = rng.random((movie_ids.size, len(_GENRES))).argsort(axis=1)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["movieId", "title", "genres"])
        for i, mid in enumerate(movie_ids.tolist()):
            name = f"Synthetic Movie {mid}, The" if mid % 7 == 0 else f"Synthetic Movie {mid}"
            genres = "|".join(_GENRES[g] for g in sorted(picks[i, : n_genres[i]]))
            w.writerow([mid, f"{name} ({years[i]})", genres])


def _describe(p: SynthPreset) -> str:
    return (
        f"{p.description}. Synthetic, MovieLens-20M format: lognormal user activity (>= "
        f"{p.min_per_user} each), Zipf item popularity, planted rank-{p.rank} preference "
        f"(temperature {p.temperature}); ratings rise with it; timestamps in sessions, 1995-2015."
    )


def _progress(on: bool):
    """A line per stage on stderr, only for big presets: small ones run inside tests."""
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if on:
            print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return log
