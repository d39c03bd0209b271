"""The registry: immutable versions, a champion that only moves to a better model, safe under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest

from ncflow import registry
from ncflow.errors import NcflowError


def make_bundle(tmp_path, name: str, hr: float):
    bundle = tmp_path / "bundles" / name
    bundle.mkdir(parents=True)
    (bundle / "model.safetensors").write_bytes(os.urandom(64))
    (bundle / "metrics.json").write_text(json.dumps({"hr@10": hr}))
    return bundle


def reg(root, bundle, hr, test_set="t1", **kw):
    return registry.register(
        root, "ncf", "synth-tiny", bundle, metrics={"hr@10": hr}, test_set=test_set, **kw
    )


def test_first_is_champion_worse_is_kept_out_better_promoted(tmp_path):
    root = tmp_path / "registry"
    first = reg(root, make_bundle(tmp_path, "a", 0.5), 0.5)
    assert first.promoted and first.entry.version == 1 and first.previous is None
    worse = reg(root, make_bundle(tmp_path, "b", 0.4), 0.4)
    assert not worse.promoted and worse.entry.version == 2
    assert "does not beat" in worse.reason and worse.previous_score == 0.5
    assert registry.champion(root, "ncf", "synth-tiny").version == 1
    tie = reg(root, make_bundle(tmp_path, "c", 0.5), 0.5)
    assert not tie.promoted  # equal is not better: the champion stays
    better = reg(root, make_bundle(tmp_path, "d", 0.6), 0.6)
    assert better.promoted and registry.champion(root, "ncf", "synth-tiny").version == 4
    assert [e.version for e in registry.versions(root, "ncf", "synth-tiny")] == [1, 2, 3, 4]
    # every version is there whole, with its record, and read-only
    v2 = registry.resolve(root, "ncf", "synth-tiny", "2")
    assert (v2 / "model.safetensors").read_bytes() == (
        tmp_path / "bundles" / "b" / "model.safetensors"
    ).read_bytes()
    assert json.loads((v2 / registry.RECORD).read_text())["promoted"] is False
    assert not os.stat(v2 / "model.safetensors").st_mode & 0o222
    assert registry.resolve(root, "ncf", "synth-tiny") == root / "ncf" / "synth-tiny" / "v4"
    assert registry.resolve(root, "ncf", "synth-tiny", "latest").name == "v4"


def test_champion_rule_on_ndcg100_for_vae_cf(tmp_path):
    """VAE-CF's champion rule: NDCG@100, whatever the other metrics say."""
    root = tmp_path / "registry"

    def vae(name, ndcg, recall):
        metrics = {"ndcg@100": ndcg, "recall@20": recall}
        return registry.register(
            root,
            "vae-cf",
            "synth-tiny",
            make_bundle(tmp_path, name, 0.0),
            metrics=metrics,
            test_set="t",
            metric="ndcg@100",
        )

    assert vae("a", 0.40, 0.50).promoted
    worse = vae("b", 0.35, 0.90)  # better recall, worse NDCG@100: registered, not promoted
    assert not worse.promoted and worse.entry.version == 2 and "ndcg@100 0.3500 does not beat" in worse.reason
    assert registry.champion(root, "vae-cf", "synth-tiny").version == 1
    assert vae("c", 0.45, 0.10).promoted and registry.champion(root, "vae-cf", "synth-tiny").version == 3
    assert json.loads((root / "vae-cf" / "synth-tiny" / registry.CHAMPION).read_text())["ndcg@100"] == 0.45
    assert registry.champion(root, "ncf", "synth-tiny") is None  # per model: nothing shared with NCF


def test_other_test_set_needs_a_rescore(tmp_path):
    root = tmp_path / "registry"
    reg(root, make_bundle(tmp_path, "a", 0.9), 0.9, test_set="old")
    kept = reg(root, make_bundle(tmp_path, "b", 0.95), 0.95, test_set="new")
    assert not kept.promoted and "another test set" in kept.reason
    rescored = reg(root, make_bundle(tmp_path, "c", 0.95), 0.95, test_set="new", rescore=lambda path: 0.97)
    assert (
        not rescored.promoted and rescored.previous_score == 0.97
    )  # the champion is better on this test set
    promoted = reg(root, make_bundle(tmp_path, "d", 0.95), 0.95, test_set="new", rescore=lambda path: 0.8)
    assert promoted.promoted
    failing = reg(root, make_bundle(tmp_path, "e", 0.99), 0.99, test_set="newer", rescore=lambda p: 1 / 0)
    assert not failing.promoted and "could not be scored" in failing.reason


def test_card_is_written_into_the_version(tmp_path):
    root = tmp_path / "registry"
    result = reg(
        root, make_bundle(tmp_path, "a", 0.5), 0.5, card=lambda r: f"# v{r.entry.version} {r.reason}\n"
    )
    assert (result.entry.path / registry.CARD).read_text() == "# v1 first model: champion\n"


def test_missing_champion_is_a_clear_error(tmp_path):
    with pytest.raises(NcflowError, match="no ncf champion for synth-tiny"):
        registry.resolve(tmp_path, "ncf", "synth-tiny")
    with pytest.raises(NcflowError, match="no version v3"):
        registry.resolve(tmp_path, "ncf", "synth-tiny", "v3")


def _register_one(args):
    root, bundle, hr = args
    result = reg(root, bundle, hr)
    return result.entry.version, result.promoted


def test_concurrent_registrations_leave_a_consistent_registry(tmp_path):
    root = tmp_path / "registry"
    scores = [0.30, 0.80, 0.55, 0.90, 0.10, 0.70, 0.85, 0.20]
    jobs = [(root, make_bundle(tmp_path, f"b{i}", hr), hr) for i, hr in enumerate(scores)]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.map(_register_one, jobs)
    numbers = sorted(v for v, _ in results)
    assert numbers == list(range(1, len(scores) + 1))  # each got its own version, none lost
    entries = registry.versions(root, "ncf", "synth-tiny")
    assert len(entries) == len(scores)
    assert registry.champion(root, "ncf", "synth-tiny").metrics["hr@10"] == max(scores)
    # in version order, a model was promoted exactly when it beat every model before it
    best = -1.0
    for entry in entries:
        assert entry.record["promoted"] == (entry.metrics["hr@10"] > best)
        best = max(best, entry.metrics["hr@10"])
    leftovers = [p.name for p in (root / "ncf" / "synth-tiny").iterdir() if p.name.startswith(".staging")]
    assert leftovers == []
