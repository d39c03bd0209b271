"""A trained Mult-VAE that stands alone: weights, config, item ids and titles, metrics, data manifest.

    bundle/
      model.safetensors   weights (no pickle: safe to load from anywhere)
      config.json         model and training config
      metrics.json        final validation and test metrics, per-epoch history
      data.json           the processed dataset's manifest (source checksum, counts, split config)
      items.parquet       index -> original item id, title
      train_users.parquet the training users' original ids (models/vaecf/compare.py)

No user table is needed: Mult-VAE is a fold-in model. A user, new or old, is the list of items they
liked; `recommend_foldin` encodes that list and ranks the rest, with no retraining.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file

from models.common.ids import as_id, known_indices
from models.common.parquet import read_table
from models.vaecf.model import MultVAE, VAEConfig
from ncflow.atomic import atomic_dir


def write_bundle(path: Path, model: MultVAE, train_config, data_dir: Path, metrics: dict) -> Path:
    data_dir = Path(data_dir)
    with atomic_dir(path) as tmp:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        config = {"model": dataclasses.asdict(model.config), "train": dataclasses.asdict(train_config)}
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        shutil.copyfile(data_dir / "manifest.json", tmp / "data.json")
        shutil.copyfile(data_dir / "items.parquet", tmp / "items.parquet")
        # Who it trained on: the champion rule never scores a later model's test users it knows.
        train = read_table(data_dir / "train.parquet")
        if "user_id" in train.column_names:  # the VAE-CF split: its training users' rows
            users = train.select(["user_id"]).rename_columns(["id"])
        else:  # the NCF split: every user trains
            users = read_table(data_dir / "users.parquet", columns=["id"])
        pq.write_table(users, tmp / "train_users.parquet")
    return Path(path)


@dataclass
class Bundle:
    model: MultVAE
    config: dict
    metrics: dict
    data: dict
    item_index: dict[int | str, int]  # original item id (int64 or string) -> index
    item_ids: np.ndarray  # index -> original item id (int64, or object holding strings)
    titles: list[str | None]


def load_bundle(path: Path, device: str | torch.device = "cpu") -> Bundle:
    path = Path(path)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} is not a VAE-CF model bundle (no model.safetensors)")
    config = json.loads((path / "config.json").read_text())
    if "latent" not in config.get("model", {}):
        raise ValueError(f"{path} holds another model's bundle, not Mult-VAE")
    model = MultVAE(VAEConfig(**config["model"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.to(device).eval()
    items = read_table(path / "items.parquet")
    item_ids = items.column("id").to_numpy(zero_copy_only=False)
    return Bundle(
        model=model,
        config=config,
        metrics=json.loads((path / "metrics.json").read_text()),
        data=json.loads((path / "data.json").read_text()),
        item_index={item: index for index, item in enumerate(item_ids.tolist())},
        item_ids=item_ids,
        titles=items.column("title").to_pylist(),
    )


@torch.no_grad()
def recommend_foldin(bundle: Bundle, item_ids: list[int | str], k: int = 10) -> list[dict]:
    """Top-k items (original id, title, score) for a user who liked `item_ids` (original ids).

    Ids the model has never seen are ignored (a warning gives their count); the liked items themselves
    are never recommended. Scores are logits: higher is better, comparable within one call.
    """
    keys = [as_id(i, bundle.item_index) for i in item_ids]
    known = known_indices(keys, bundle.item_index, stacklevel=3)
    model = bundle.model.eval()
    device = next(model.parameters()).device
    indices = torch.tensor(known, dtype=torch.int64, device=device)
    offsets = torch.zeros(1, dtype=torch.int64, device=device)
    weights = model.input_weights(torch.zeros_like(indices), torch.tensor([len(known)], device=device))
    mu, _ = model.encode(indices, offsets, weights)
    scores = model.decode(mu)[0].float()  # (items,)
    scores[indices] = -torch.inf
    top = torch.topk(scores, min(k, len(bundle.item_ids) - len(known)))
    indices = top.indices.tolist()
    return [
        {"item": item, "title": bundle.titles[i], "score": float(s)}
        for s, i, item in zip(top.values.tolist(), indices, bundle.item_ids[indices].tolist(), strict=True)
    ]
