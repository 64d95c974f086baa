"""Atomic checkpoints (model, optimiser, scheduler, RNG states, each process's data-loader position, the loop's
state) and their validated resumption: a damaged or incomplete checkpoint is an error naming the file."""

import json
import os
import shutil
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger

from ..atomic_output import OutputWriteError, write_failure
from ..modeling_pvt import check_safetensors_file
from ..run_layout import check_same_layout

logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"
LOADER_STATE_FILE = "dataloader_state_{rank}.pt"


def checkpoint_due(args, step: int, end_of_epoch: bool) -> bool:
    every = args.checkpointing_steps
    if every == "epoch":
        return end_of_epoch
    return every is not None and not end_of_epoch and step % int(every) == 0


def save_checkpoint(accelerator: Accelerator, output_dir: str, state: dict, loader=None) -> None:
    """Model, optimiser, scheduler and RNG states, each process's data-loader position and `state` (step, epoch,
    ...), written to a temporary folder and renamed: a run killed mid-save leaves only complete checkpoints."""
    final = Path(output_dir) / f"{CHECKPOINT_PREFIX}{state['step']}"
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
        torch.save(
            loader.state_dict() if loader is not None else None,
            partial / LOADER_STATE_FILE.format(rank=accelerator.process_index),
        )
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            (partial / STATE_FILE).write_text(json.dumps(state))
            with open(partial / STATE_FILE, "rb") as f:  # flushed to disk before the rename makes it visible
                os.fsync(f.fileno())
            os.replace(partial, final)
    except Exception as error:  # disk full, no permission (torch and safetensors raise their own types)
        shutil.rmtree(partial, ignore_errors=True)
        raise OutputWriteError(write_failure(partial, error)) from error
    accelerator.wait_for_everyone()


def latest_checkpoint(output_dir: str) -> Path | None:
    """The checkpoint folder with the highest step (`*.partial` ones, interrupted saves, are never considered)."""
    candidates = [
        p
        for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name.removeprefix(CHECKPOINT_PREFIX).isdigit()
    ]
    return max(candidates, key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)), default=None)


def resume(accelerator: Accelerator, args) -> dict | None:
    """Restore `--resume_from_checkpoint` (a folder, or 'latest' in --output_dir) into the prepared objects; returns
    its state ({"step", "epoch", "skipped", "loader"}) or None for a fresh run. Anything missing or unreadable is an
    error naming the file: a run never continues from step 0 or with other random states without a word."""
    if args.resume_from_checkpoint is None:
        return None
    if args.resume_from_checkpoint == "latest":
        path = latest_checkpoint(args.output_dir)
        if path is None:
            logger.warning(
                "--resume_from_checkpoint latest: no checkpoint in %s, starting from scratch", args.output_dir
            )
            return None
    else:
        path = Path(args.resume_from_checkpoint)
    state = _read_state(path)
    check_same_layout(state, accelerator.num_processes, args, path)
    rank = accelerator.process_index
    required = [STATE_FILE, f"random_states_{rank}.pkl", LOADER_STATE_FILE.format(rank=rank)]
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is incomplete: missing {missing} (exact resumption needs them)")
    for weights in sorted(path.glob("*.safetensors")):
        _check_safetensors(weights)
    accelerator.load_state(str(path))
    state["loader"] = torch.load(path / LOADER_STATE_FILE.format(rank=rank), weights_only=False)
    logger.info("resumed from %s at step %d (epoch %d)", path, state["step"], state["epoch"])
    return state


def _read_state(path: Path) -> dict:
    file = path / STATE_FILE
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint folder {path}")
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a complete pvt_hf checkpoint: {STATE_FILE} is missing")
    try:
        state = json.loads(file.read_text())
        int(state["step"]), int(state["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{file} is unreadable or truncated ({type(error).__name__}: {error})") from None
    return state


def _check_safetensors(file: Path) -> None:
    """The model file's check (`check_safetensors_file`), raised as the other damaged-checkpoint errors are."""
    try:
        check_safetensors_file(file)
    except OSError as error:
        raise ValueError(f"{file} is truncated or not a safetensors file ({error})") from None
