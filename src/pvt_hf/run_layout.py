"""The layout of a run that a checkpoint's data position and schedule depend on: the number of processes (each
saves its own shard's position), the batch per process and the gradient accumulation (the steps per epoch). A
resumed run must have the same, or it would silently read other samples and another schedule."""

from pathlib import Path

LAYOUT_FIELDS = ("num_processes", "per_device_train_batch_size", "gradient_accumulation_steps")


def run_layout(num_processes: int, args) -> dict:
    return {
        "num_processes": num_processes,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
    }


def check_same_layout(saved: dict, num_processes: int, args, checkpoint: Path) -> None:
    """Raise naming both values of every field in which this run differs from the checkpoint's `saved` state
    (a checkpoint written before the layout was recorded is not checked)."""
    if not any(field in saved for field in LAYOUT_FIELDS):
        return
    current = run_layout(num_processes, args)
    different = [
        f"{f}: {saved[f]} in the checkpoint, {current[f]} now" for f in LAYOUT_FIELDS if saved[f] != current[f]
    ]
    if different:
        raise ValueError(
            f"cannot resume exactly from {checkpoint}: the run's layout differs ({'; '.join(different)}). Resume with "
            "the checkpoint's number of processes, --per_device_train_batch_size and --gradient_accumulation_steps "
            "(or start a new run from its weights with --model_name_or_path)."
        )
