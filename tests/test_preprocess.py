"""The data stage on small fixture files written here: readers, both protocols, bad input, the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from e2e_stack import wait_until

from configs import Columns, PreprocessConfig, dataset_spec
from ncflow.cli import main as cli
from ncflow.data.interactions import to_interactions
from ncflow.data.log_files import read_log
from ncflow.data.ncf_split import ncf_split
from ncflow.data.preprocess import _write_processed, output_dir, preprocess, source_checksum
from ncflow.data.readers import read_movielens
from ncflow.data.sources import obtain_raw
from ncflow.data.vae_split import vae_split
from ncflow.errors import NcflowError
from ncflow.locks import exclusive

# (user, item, rating, timestamp): user 1 rates item 20 twice (kept once, dated by the later rating);
# user 2's two latest ratings tie in time (the larger item index is held out).
ROWS = [(1, 10, 4.0, 100), (1, 20, 3.0, 200), (1, 20, 5.0, 300), (1, 30, 2.0, 250),
        (2, 10, 5.0, 50), (2, 30, 4.0, 90), (2, 40, 1.0, 90), (3, 20, 4.5, 10), (3, 40, 4.0, 20),
        (3, 50, 3.5, 30)]  # fmt: skip


def write_format(folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "ml-100k":
        (folder / "u.data").write_text("".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ROWS))
    elif fmt == "ml-1m":
        (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in ROWS))
    else:
        body = "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS)
        (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + body)
    return folder


@pytest.mark.parametrize(
    ("dataset", "fmt"), [("ml-100k", "ml-100k"), ("ml-1m", "ml-1m"), ("ml-20m", "ml-csv")]
)
def test_each_movielens_format_is_parsed(tmp_path: Path, dataset: str, fmt: str) -> None:
    got = to_interactions(
        read_movielens(write_format(tmp_path / "nested" / dataset, fmt), dataset_spec(dataset))
    )
    expected = np.array(ROWS)
    assert np.array_equal(got.user, expected[:, 0]) and np.array_equal(got.item, expected[:, 1])
    ratings = expected[:, 2] if fmt == "ml-csv" else expected[:, 2].astype(int)
    assert np.allclose(got.rating, ratings) and np.array_equal(got.timestamp, expected[:, 3])


def brute_force_split(rows) -> tuple[dict, dict]:
    """Per original user: the held-out item and the training items, by plain Python."""
    latest: dict[tuple[int, int], int] = {}
    for u, i, _, t in rows:
        latest[(u, i)] = max(t, latest.get((u, i), t))
    items = sorted({i for _, i in latest})
    by_user: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (u, i), t in latest.items():
        by_user[u].append((t, items.index(i)))
    test = {u: max(pairs)[1] for u, pairs in by_user.items()}  # latest time, then the larger index
    train = {u: sorted(i for _, i in pairs if i != test[u]) for u, pairs in by_user.items()}
    return test, train


def random_rows(seed: int, users: int = 40, items: int = 60, n: int = 900):
    rng = np.random.default_rng(seed)
    u = rng.integers(1, users + 1, n) * 7  # sparse original ids
    i = rng.integers(1, items + 1, n) * 3
    t = rng.integers(0, 50, n)  # many ties in time
    return [(int(a), int(b), 1.0, int(c)) for a, b, c in zip(u, i, t)]


@pytest.mark.parametrize("distinct", [False, True])
@pytest.mark.parametrize(
    "rows", [ROWS, random_rows(1), random_rows(2)], ids=["fixture", "random1", "random2"]
)
def test_leave_one_out_and_test_negatives_match_brute_force(rows, distinct: bool) -> None:
    array = np.array([r[:2] + (r[3],) for r in rows], dtype=np.int64)
    k = 20 if len(rows) > 100 else 2  # the fixture's users have only 2 unseen items besides the test one
    split = ncf_split(np, array[:, 0], array[:, 1], array[:, 2], negatives=k, distinct=distinct, seed=3)
    test, train = brute_force_split(rows)
    users = sorted(test)
    assert split.user_ids.tolist() == users
    assert split.test_item.tolist() == [test[u] for u in users]
    pairs = list(zip(split.train_user.tolist(), split.train_item.tolist()))
    assert pairs == sorted((users.index(u), i) for u in users for i in train[u])  # sorted, no duplicates
    for index, u in enumerate(users):
        negatives = split.test_negatives[index].tolist()
        assert len(negatives) == k and not set(negatives) & set(train[u])
        assert all(0 <= n < split.n_items for n in negatives)
        if distinct:
            assert len(set(negatives)) == k and test[u] not in negatives


def test_vae_split_invariants() -> None:
    rng = np.random.default_rng(0)
    n = 6000
    user, item = rng.integers(0, 300, n), rng.integers(0, 200, n)
    rating = rng.choice([1.0, 3.0, 4.0, 5.0], n)
    split = vae_split(np, user, item, rating, heldout_users=1000, heldout_fraction_cap=0.1, seed=1)
    parts = split.parts
    train, valid, test = (set(parts[k].row_ids.tolist()) for k in ("train", "valid_foldin", "test_foldin"))
    assert not train & valid and not train & test and not valid & test
    assert len(valid) == len(test) > 0
    strong = defaultdict(set)
    for u, i, r in zip(user.tolist(), item.tolist(), rating.tolist()):
        if r >= 4.0:
            strong[u].add(i)
    assert all(len(strong[u]) >= 5 for u in train | valid | test)
    item_ids = split.item_ids.tolist()
    for name in ("valid", "test"):
        foldin, target = parts[f"{name}_foldin"], parts[f"{name}_target"]
        assert foldin.row_ids.tolist() == target.row_ids.tolist()
        for row, u in enumerate(foldin.row_ids.tolist()):
            a = set(foldin.indices[foldin.indptr[row] : foldin.indptr[row + 1]].tolist())
            b = set(target.indices[target.indptr[row] : target.indptr[row + 1]].tolist())
            assert a and b and not a & b  # a partition of the user's known items
            assert {item_ids[i] for i in a | b} == strong[u] & set(item_ids)


def test_processed_folder_has_parquet_manifest_and_id_maps(tmp_path: Path) -> None:
    out = preprocess(
        "ml-20m", write_format(tmp_path / "raw", "ml-csv"), tmp_path, PreprocessConfig(test_negatives=3)
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {
        "users": 3,
        "items": 5,
        "train_positives": 6,
        "test_users": 3,
        "test_negatives": 3,
    }
    assert len(manifest["source"]["md5"]) == 32 and manifest["config"]["test_negatives"] == 3
    assert pq.read_table(out / "users.parquet").column("id").to_pylist() == [1, 2, 3]
    assert pq.read_table(out / "items.parquet").column("id").to_pylist() == [10, 20, 30, 40, 50]
    assert (
        preprocess("ml-20m", tmp_path / "raw", tmp_path, PreprocessConfig(test_negatives=3)) == out
    )  # cached


def test_cli_reports_the_ml100k_counts_from_a_local_folder(tmp_path: Path, capsys) -> None:
    assert cli(["data", "ml-100k", "--source", str(write_format(tmp_path / "src", "ml-100k")),
                "--data-dir", str(tmp_path / "data")]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert "users            3" in lines and "train positives  6" in lines and "test users       3" in lines
    assert (Path(lines[-1]) / "manifest.json").is_file()


def test_local_files_with_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("who,what,when\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in ROWS))
    got = read_log(path, Columns(user="who", item="what", timestamp="when")).table
    assert got.column("user").to_pylist() == [r[0] for r in ROWS]
    assert got.column("rating").to_pylist() == [1.0] * len(ROWS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user,thing\n1,2\n", r"lacks column\(s\) item"),
        ("user,item\n1,2\n1.5,3\n", "column 'user' of .* holds numbers that are not whole"),
        ("user,item\n1,2\n,3\n", "has empty fields in its user column"),
        (
            "user,item\ntrue,2\nfalse,3\n",
            "column 'user' of .* has type bool: ids must be integers or strings",
        ),
        ("", "is empty"),
        ("user,item\n", "holds no interactions"),
    ],
    ids=["missing column", "fractional id", "missing id", "boolean id", "empty file", "header only"],
)
def test_bad_local_files_give_one_clear_error_and_no_output(
    tmp_path: Path, capsys, text: str, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert cli(["data", str(path), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ncflow: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "data" / "processed").exists() or not any(
        (tmp_path / "data" / "processed").iterdir()
    )


def test_unknown_dataset_name_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert cli(["data", "ml-30m", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ncflow: error: unknown dataset 'ml-30m'") and "synth-tiny" in err
    assert not any(tmp_path.iterdir())


def test_too_few_unseen_items_for_distinct_negatives_is_refused() -> None:
    user, item = np.array([1, 1, 2, 2]), np.array([5, 6, 5, 6])  # 2 items: 1 trained, 1 held out each
    assert ncf_split(np, user, item, np.array([1, 2, 1, 2]), negatives=2).test_negatives.shape == (2, 2)
    with pytest.raises(NcflowError, match="too few unseen items to draw 2 distinct test negatives"):
        ncf_split(np, user, item, np.array([1, 2, 1, 2]), negatives=2, distinct=True)


def test_a_zip_source_is_read_like_the_archive(tmp_path: Path, capsys) -> None:
    """`--source` with a local archive: ml-100k's layout inside a zip, checked against the given md5."""
    folder = write_format(tmp_path / "ml-100k", "ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(folder / "u.data", "ml-100k/u.data")
    assert cli(["data", "ml-100k", "--source", str(archive), "--data-dir", str(tmp_path / "d")]) == 2
    assert "checksum mismatch" in capsys.readouterr().err  # not GroupLens' archive: refused, not trusted
    assert not (tmp_path / "d" / "raw" / "ml-100k").exists()


def blocked_on_a_lock(pid: int) -> bool:
    """The kernel lists `pid` as waiting for a file lock (a `->` line of /proc/locks)."""
    return any("->" in line and f" {pid} " in line for line in Path("/proc/locks").read_text().splitlines())


def test_a_second_data_run_waits_for_the_first_then_reuses_its_output(tmp_path: Path) -> None:
    """This test holds the processed folder's lock, as a first run does while it writes. A second run
    (`ncflow data`, another process) must block on it, not write alongside; once the first run's folder
    is complete and the lock released, it reports that folder and leaves it untouched."""
    raw = obtain_raw("synth-tiny", tmp_path)
    config = PreprocessConfig()
    md5 = source_checksum("synth-tiny", raw)
    out = output_dir(tmp_path, "synth-tiny", md5, config)
    script = "import sys; from ncflow.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [
        sys.executable,
        "-c",
        script,
        "data",
        "synth-tiny",
        "--data-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with exclusive(out):
        second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(
            lambda: blocked_on_a_lock(second.pid) or second.poll() is not None, "the second run to wait", 120
        )
        assert second.poll() is None, (
            "the second run did not wait for the lock: " + second.communicate()[1][-2000:]
        )
        _write_processed("synth-tiny", raw, out, md5, config, "cpu", {})  # the first run's work
        written = (out / "manifest.json").stat().st_mtime_ns
        assert second.poll() is None  # still waiting while the lock is held
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr[-2000:]
    assert stdout.strip().splitlines()[-1] == str(out)
    assert (out / "manifest.json").stat().st_mtime_ns == written  # reused, not rewritten
    assert [
        p.name for p in tmp_path.rglob("*") if p.name.startswith(".")
    ] == []  # no temporary or lock file left
