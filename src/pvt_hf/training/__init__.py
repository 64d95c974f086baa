"""The pieces the three training scripts share (the loops themselves live in `examples/run_*.py`), one concern per
module:

    arguments.py     the papers' recipes (the defaults), the shared arguments, the Hub pre-flight check, the splits
                     the arguments name
    construction.py  the model, the accelerator, the papers' optimiser and schedules
    loop.py          the step plan, the loop's bookkeeping (`Progress`), the backward step
    checkpoints.py   atomic checkpoints and their validated resumption
    outputs.py       the Hub-ready output folder and the push
"""

from .arguments import (
    DETECTOR_RECIPES,
    DETECTOR_SCHEDULES,
    DETECTORS,
    RECIPES,
    SCHEDULES,
    add_arguments,
    check_hub_access,
    dataset_splits,
    detector_recipe,
    parse_arguments,
)
from .checkpoints import (
    CHECKPOINT_PREFIX,
    LOADER_STATE_FILE,
    STATE_FILE,
    checkpoint_due,
    latest_checkpoint,
    resume,
    save_checkpoint,
)
from .construction import (
    build_model,
    build_optimizer,
    build_scheduler,
    label_kwargs,
    make_accelerator,
    no_weight_decay,
    optimizer_and_scheduler,
    parameter_groups,
    start_run,
)
from .loop import (
    Progress,
    backward_step,
    batch_norm_on_running_stats_for_one_sample,
    check_progress,
    evaluated_over_processes,
    mixing_generator,
    plan_steps,
    sum_over_processes,
)
from .outputs import save_outputs, write_results

__all__ = [
    "CHECKPOINT_PREFIX",
    "DETECTORS",
    "DETECTOR_RECIPES",
    "DETECTOR_SCHEDULES",
    "LOADER_STATE_FILE",
    "RECIPES",
    "SCHEDULES",
    "STATE_FILE",
    "Progress",
    "add_arguments",
    "backward_step",
    "batch_norm_on_running_stats_for_one_sample",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "check_hub_access",
    "check_progress",
    "checkpoint_due",
    "label_kwargs",
    "latest_checkpoint",
    "make_accelerator",
    "start_run",
    "evaluated_over_processes",
    "mixing_generator",
    "no_weight_decay",
    "optimizer_and_scheduler",
    "parameter_groups",
    "parse_arguments",
    "plan_steps",
    "resume",
    "save_checkpoint",
    "save_outputs",
    "dataset_splits",
    "detector_recipe",
    "sum_over_processes",
    "write_results",
]
