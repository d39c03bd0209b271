"""A fitted EASE model that stands alone: B, the lambda chosen, item and user ids, users' known items.

    bundle/
      model.safetensors   {"B": (items, items) fp32} (no pickle: safe to load from anywhere)
      config.json         {"model": {"kind": "ease", "n_items", "lambda", "protocol"}, "train": TrainConfig}
      metrics.json        validation per lambda, test of the chosen one
      data.json           the processed dataset's manifest (source checksum, counts, split config)
      items.parquet       index -> original item id, title
      users.parquet       index -> original user id: the users `recommend --all` scores
      seen.parquet        row u: user u's known items (models/common/heldout.known_items): their input
                          x, and never recommended to them

EASE folds users in: a user, known or new, is the row x of their items, scored x B. No retraining.
Ids are carried as stored (integers or strings), never cast.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from models.common.heldout import known_items
from models.common.ids import known_indices
from models.common.parquet import read_table
from ncflow.atomic import atomic_dir


def write_bundle(path: Path, b: torch.Tensor, lam: float, protocol: str, train_config, data_dir: Path,
                 metrics: dict) -> Path:  # fmt: skip
    data_dir = Path(data_dir)
    with atomic_dir(path) as tmp:
        save_file({"B": b.detach().float().cpu().contiguous()}, str(tmp / "model.safetensors"))
        model = {"kind": "ease", "n_items": b.shape[0], "lambda": lam, "protocol": protocol}
        config = {"model": model, "train": dataclasses.asdict(train_config)}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        shutil.copyfile(data_dir / "manifest.json", tmp / "data.json")
        shutil.copyfile(data_dir / "items.parquet", tmp / "items.parquet")
        user_ids, indptr, items = known_items(data_dir)
        index = pa.array(range(len(user_ids)), pa.int32())
        pq.write_table(pa.table({"index": index, "id": user_ids}), tmp / "users.parquet")
        seen = pa.ListArray.from_arrays(pa.array(indptr.astype("int32")), pa.array(items.astype("int32")))
        pq.write_table(pa.table({"items": seen}), tmp / "seen.parquet")
    return Path(path)


@dataclass
class Bundle:
    b: torch.Tensor  # (items, items)
    lam: float
    protocol: str
    config: dict
    metrics: dict
    data: dict
    item_ids: list  # index -> original item id
    item_index: dict  # original item id -> index
    titles: list[str | None]
    user_ids: list  # index -> original user id
    user_index: dict  # original user id -> index
    seen: pa.ListArray  # row u: user u's known items

    @property
    def device(self) -> torch.device:
        return self.b.device


def load_bundle(path: Path, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    config_file = path / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if config.get("model", {}).get("kind") != "ease":
        raise ValueError(f"{path} is not an EASE model bundle")
    items, users = read_table(path / "items.parquet"), read_table(path / "users.parquet")
    item_ids, user_ids = items.column("id").to_pylist(), users.column("id").to_pylist()
    return Bundle(
        b=load_file(str(path / "model.safetensors"))["B"].to(device),
        lam=float(config["model"]["lambda"]),
        protocol=config["model"]["protocol"],
        config=config,
        metrics=json.loads((path / "metrics.json").read_text()),
        data=json.loads((path / "data.json").read_text()),
        item_ids=item_ids,
        item_index={item: index for index, item in enumerate(item_ids)},
        titles=items.column("title").to_pylist(),
        user_ids=user_ids,
        user_index={user: index for index, user in enumerate(user_ids)},
        seen=read_table(path / "seen.parquet").column("items").combine_chunks(),
    )


@torch.no_grad()
def top_items(bundle: Bundle, known: list[int], k: int) -> list[dict]:
    """Top-k of x B for the user whose items (indices) are `known`, those items excluded."""
    x = torch.zeros(1, bundle.b.shape[0], device=bundle.device)
    x[0, known] = 1.0
    scores = (x @ bundle.b)[0]
    scores[known] = -torch.inf
    top = torch.topk(scores, min(k, len(bundle.item_ids) - len(set(known))))
    return [
        {"item": bundle.item_ids[i], "title": bundle.titles[i], "score": float(s)}
        for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def recommend(bundle: Bundle, user_id, k: int = 10) -> list[dict]:
    """The top-k items (original ids, titles, scores) for a user of the bundle, from their known items."""
    if user_id not in bundle.user_index:
        raise KeyError(f"user {user_id} is not in this model's data")
    return top_items(bundle, bundle.seen[bundle.user_index[user_id]].values.to_pylist(), k)


def recommend_foldin(bundle: Bundle, item_ids: list, k: int = 10) -> list[dict]:
    """Top-k items for a new user who liked `item_ids` (original ids): x B, no retraining. Unknown ids
    are ignored with a warning; the liked items are never recommended."""
    return top_items(bundle, known_indices(item_ids, bundle.item_index, stacklevel=2), k)
