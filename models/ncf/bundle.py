"""A trained model that stands alone: weights, config, id maps, seen items, metrics, data checksum.

bundle/
  model.safetensors   weights (no pickle: safe to load from anywhere)
  config.json         model and training config
  metrics.json        final and per-epoch metrics
  data.json           the processed dataset's manifest (source checksum, counts, split config)
  users.parquet       index -> original user id
  items.parquet       index -> original item id, title
  seen.parquet        each user's training items (excluded from recommendations)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from models.common.ids import as_id
from models.common.parquet import read_table
from models.ncf.model import NeuMF, NeuMFConfig
from ncflow.atomic import atomic_dir, atomic_file


def write_bundle(
    path: Path, model: NeuMF, model_config: NeuMFConfig, train_config, data_dir: Path, metrics: dict
) -> Path:
    data_dir = Path(data_dir)
    with atomic_dir(path) as tmp:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        config = {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config)}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        shutil.copyfile(data_dir / "manifest.json", tmp / "data.json")
        for name in ("users.parquet", "items.parquet"):
            shutil.copyfile(data_dir / name, tmp / name)
        try:
            link_or_copy(seen_items(data_dir, data_dir, model_config.n_users), tmp / "seen.parquet")
        except OSError:  # a read-only dataset folder: build it into the bundle itself
            seen_items(data_dir, tmp, model_config.n_users)
    return Path(path)


def seen_items(data_dir: Path, where: Path, n_users: int) -> Path:
    """Each user's training items as one Parquet list column, derived once per dataset folder.

    The processed folder never changes (its name hashes its inputs), so every bundle trained on it can
    share this file: a retraining run links it instead of rebuilding 20M rows (about a second).
    """
    path = where / "seen.parquet"
    if not path.is_file():
        train = read_table(data_dir / "train.parquet")
        counts = np.bincount(train.column("user").to_numpy(), minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)  # train is sorted by user
        seen = pa.ListArray.from_arrays(pa.array(offsets), train.column("item").combine_chunks())
        with atomic_file(path) as tmp:
            pq.write_table(pa.table({"items": seen}), tmp)
    return path


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, target)


@dataclass
class Bundle:
    model: NeuMF
    config: dict
    metrics: dict
    data: dict
    user_ids: (
        np.ndarray
    )  # index -> original user id (int64, or object holding strings, as the source had them)
    user_index: dict[int | str, int]  # original user id -> index
    item_ids: np.ndarray  # index -> original item id (int64, or object holding strings)
    titles: list[str | None]
    seen: pa.ListArray  # row u: the item indices user u trained on


def load_bundle(path: Path, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not an NCF model bundle (no model.safetensors)")
    config = json.loads((path / "config.json").read_text())
    model_config = NeuMFConfig(**{**config["model"], "mlp_layers": tuple(config["model"]["mlp_layers"])})
    model = NeuMF(model_config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.to(device).eval()
    users = read_table(path / "users.parquet")
    items = read_table(path / "items.parquet")
    return Bundle(
        model=model,
        config=config,
        metrics=json.loads((path / "metrics.json").read_text()),
        data=json.loads((path / "data.json").read_text()),
        user_ids=users.column("id").to_numpy(zero_copy_only=False),
        user_index={u: i for i, u in enumerate(users.column("id").to_pylist())},
        item_ids=items.column("id").to_numpy(zero_copy_only=False),
        titles=items.column("title").to_pylist(),
        seen=read_table(path / "seen.parquet").column("items").combine_chunks(),
    )


@torch.no_grad()
def recommend(bundle: Bundle, user_id: int | str, k: int = 10) -> list[dict]:
    """The top-k items (original ids, titles, scores) for an original user id, minus items it has."""
    user_id = as_id(user_id, bundle.user_index)
    if user_id not in bundle.user_index:
        raise KeyError(f"user {user_id} is not in this model's training data")
    index = bundle.user_index[user_id]
    device = next(bundle.model.parameters()).device
    n_items = len(bundle.item_ids)
    scores = bundle.model(
        torch.tensor([index], device=device), torch.arange(n_items, device=device)[None, :]
    )[0]
    seen = torch.as_tensor(
        bundle.seen[index].values.to_numpy(zero_copy_only=False).astype(np.int64), device=device
    )
    scores[seen] = -torch.inf
    top = torch.topk(scores, min(k, n_items - len(seen)))
    indices = top.indices.tolist()
    return [
        {"item": item, "title": bundle.titles[i], "score": float(s)}
        for s, i, item in zip(top.values.tolist(), indices, bundle.item_ids[indices].tolist(), strict=True)
    ]
