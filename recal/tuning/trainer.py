"""The training loop every method shares: accelerate, AdamW, early stopping, checkpoints.

The loop is launched through ``accelerate``: ``Accelerator()`` wraps the model, the optional head,
the optimiser and the data loaders, so the same code trains on one CPU here and on several GPUs
under ``accelerate launch``. After every epoch the validation loss is measured; a better one saves
``checkpoints/best`` (the adapter, the head), and every epoch saves ``checkpoints/last`` (the
same, plus the optimiser state in safetensors and a JSON state), so a killed run keeps its best
adapter and the same command resumes at the next epoch. Nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from recal.tuning.config import TrainConfig
from recal.tuning.sequences import decoder_layers

__all__ = ["TrainResult", "train", "make_peft", "save_weights", "load_weights",
           "CHECKPOINTS", "HEAD_FILE"]

CHECKPOINTS = "checkpoints"
HEAD_FILE = "head.safetensors"
_OPTIMIZER_FILE = "optimizer.safetensors"
_STATE_FILE = "state.json"

LossFn = Callable[[torch.nn.Module, torch.nn.Module | None, dict[str, torch.Tensor]],
                  tuple[torch.Tensor, torch.Tensor]]
"""(model, head, batch) -> (mean loss of the batch, its total weight)."""


@dataclass
class TrainResult:
    initial_val_loss: float
    best_val_loss: float
    best_epoch: int
    epochs: int
    steps: int
    seconds: float
    """Wall time of this process's training (a resumed run adds to the earlier one's)."""
    stopped: str
    resumed: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_peft(model: torch.nn.Module, config: TrainConfig) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter (seeded), only the adapter trainable."""
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in config.target_modules if m not in names]
    if missing:
        raise ValueError(f"target_modules {missing} are not layers of this model (it has, e.g., "
                         f"{sorted(n for n in names if n.endswith('proj'))[:8]})")
    torch.manual_seed(config.seed)
    depth = len(decoder_layers(model))
    layers = (None if config.train_layers is None or config.train_layers >= depth
              else list(range(depth - config.train_layers, depth)))
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=list(config.target_modules), bias="none",
                      task_type="CAUSAL_LM", layers_to_transform=layers,
                      layers_pattern="layers" if layers is not None else None)
    return get_peft_model(model, lora)


def save_weights(folder: Path, model: Any, head: torch.nn.Module | None) -> None:
    """The adapter with ``save_pretrained`` (safetensors + JSON config), the head beside it."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    if head is not None:
        save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()},
                  str(tmp / HEAD_FILE))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def load_weights(folder: Path, model: Any, head: torch.nn.Module | None) -> None:
    """Load adapter (and head) weights saved by :func:`save_weights` into live modules."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    if head is not None:
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))


def _save_optimizer(path: Path, optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {}
    for pid, entry in state["state"].items():
        for key, value in entry.items():
            tensors[f"{pid}.{key}"] = (value if isinstance(value, torch.Tensor)
                                       else torch.tensor(value)).detach().contiguous().cpu()
    save_file(tensors, str(path))
    return [{k: v for k, v in g.items()} for g in state["param_groups"]]


def _load_optimizer(path: Path, optimizer: torch.optim.Optimizer,
                    groups: list[dict[str, Any]]) -> None:
    from safetensors.torch import load_file

    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(path)).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _evaluate(model: Any, head: torch.nn.Module | None, loader: Any, loss_fn: LossFn,
              accelerator: Any) -> float:
    model.eval()
    if head is not None:
        head.eval()
    total = torch.zeros(2)
    with torch.no_grad():
        for batch in loader:
            loss, weight = loss_fn(model, head, batch)
            total += torch.stack([loss.detach().float().cpu() * weight.cpu(), weight.cpu()])
    total = accelerator.reduce(total.to(accelerator.device), reduction="sum").cpu()
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def train(model: Any, head: torch.nn.Module | None, train_rows: Sequence[Any],
          val_rows: Sequence[Any], collate: Callable[[Sequence[Any]], dict[str, torch.Tensor]],
          loss_fn: LossFn, config: TrainConfig, out: Path, *,
          head_learning_rate: float | None = None, progress: bool = True,
          origin: str = "") -> TrainResult:
    """Train the adapter (and head) on ``train_rows``, stop early on ``val_rows``' loss.

    Leaves the best epoch's weights in ``model``/``head`` and in ``out/checkpoints/best``.
    ``origin`` names what is trained on (model, run, split): a checkpoint of another origin is
    not resumed.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    if not train_rows or not val_rows:
        raise ValueError(f"training needs rows in both parts; got {len(train_rows)} training "
                         f"and {len(val_rows)} validation rows")
    accelerator = Accelerator()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad],
               "lr": config.learning_rate}]
    if head is not None:
        groups.append({"params": list(head.parameters()),
                       "lr": head_learning_rate or config.learning_rate})
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    val_loader = DataLoader(list(val_rows), batch_size=config.batch_size, collate_fn=collate)
    if head is not None:
        model, head, optimizer, val_loader = accelerator.prepare(model, head, optimizer,
                                                                  val_loader)
    else:
        model, optimizer, val_loader = accelerator.prepare(model, optimizer, val_loader)

    ckpt = out / CHECKPOINTS
    best_dir, last_dir = ckpt / "best", ckpt / "last"
    unwrap = accelerator.unwrap_model
    plain_head = unwrap(head) if head is not None else None
    state: dict[str, Any] = {"digest": config.digest(), "origin": origin, "epoch": 0,
                             "steps": 0, "best": None, "best_epoch": 0, "bad": 0,
                             "initial": None, "history": [], "seconds": 0.0, "stopped": None}
    resumed = False
    if (last_dir / _STATE_FILE).exists():
        saved = json.loads((last_dir / _STATE_FILE).read_text())
        if saved.get("digest") != state["digest"]:
            raise ValueError(f"{out} holds a training run with other settings; use another "
                             "output folder, or delete it to start again")
        if saved.get("origin", "") != origin:
            raise ValueError(f"{out} holds a training run of another model, run or split; use "
                             "another output folder, or delete it to start again")
        load_weights(last_dir, unwrap(model), plain_head)
        _load_optimizer(last_dir / _OPTIMIZER_FILE, optimizer, saved.pop("param_groups"))
        state, resumed = saved, True
        if state["stopped"] in ("max epochs", "max steps"):
            state["stopped"] = None  # the limits are checked again below (they may be higher)

    if state["initial"] is None:
        state["initial"] = _evaluate(model, head, val_loader, loss_fn, accelerator)
        state["best"] = state["initial"]
        if accelerator.is_main_process:  # the untrained adapter (it adds zero) is best so far
            save_weights(best_dir, unwrap(model), plain_head)
    n_batches = -(-len(train_rows) // config.batch_size)
    total = config.max_epochs * n_batches
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    bar = tqdm(total=total, initial=min(state["steps"], total), unit="step", desc="tuning",
               disable=not progress or not accelerator.is_main_process, dynamic_ncols=True)
    start = time.perf_counter()
    stopped = state["stopped"]
    while stopped is None:
        if state["epoch"] >= config.max_epochs:
            stopped = "max epochs"
            break
        # A seeded permutation per epoch: a resumed run sees the same order it would have seen.
        order = np.random.default_rng([config.seed, state["epoch"]]).permutation(len(train_rows))
        loader = accelerator.prepare(DataLoader([train_rows[i] for i in order],
                                                batch_size=config.batch_size, collate_fn=collate))
        model.train()
        if head is not None:
            head.train()
        losses = []
        for batch in loader:
            loss, _ = loss_fn(model, head, batch)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            state["steps"] += 1
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", best_val=f"{state['best']:.4f}")
            if config.max_steps is not None and state["steps"] >= config.max_steps:
                stopped = "max steps"
                break
        state["epoch"] += 1
        val = _evaluate(model, head, val_loader, loss_fn, accelerator)
        state["history"].append({"epoch": state["epoch"], "train_loss": float(np.mean(losses)),
                                 "val_loss": val})
        if val < state["best"] - 1e-6:
            state["best"], state["best_epoch"], state["bad"] = val, state["epoch"], 0
            if accelerator.is_main_process:
                save_weights(best_dir, unwrap(model), plain_head)
        else:
            state["bad"] += 1
        if stopped is None and state["bad"] >= config.patience:
            stopped = "early stop"
        state["seconds"] += time.perf_counter() - start
        start = time.perf_counter()
        state["stopped"] = stopped
        if accelerator.is_main_process:
            save_weights(last_dir, unwrap(model), plain_head)
            groups_saved = _save_optimizer(last_dir / _OPTIMIZER_FILE, optimizer)
            (last_dir / _STATE_FILE).write_text(
                json.dumps({**state, "param_groups": groups_saved}, indent=1, default=float))
        accelerator.wait_for_everyone()
    bar.close()
    load_weights(best_dir, unwrap(model), plain_head)
    model.eval()
    if head is not None:
        head.eval()
    return TrainResult(initial_val_loss=state["initial"], best_val_loss=state["best"],
                       best_epoch=state["best_epoch"], epochs=state["epoch"],
                       steps=state["steps"], seconds=state["seconds"], stopped=stopped,
                       resumed=resumed, history=state["history"])

