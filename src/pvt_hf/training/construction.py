"""What the scripts build before the loop: the model (a preset trained from scratch, or a folder / Hub id, with an
optional pretrained trunk), the accelerator, and the papers' optimiser (AdamW without decay on biases, norms,
position tables and class tokens) and schedules."""

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoConfig, get_scheduler

from ..configuration_pvt import label_fields
from ..cpu_threads import use_available_cores
from ..transfer import load_pretrained_backbone
from .arguments import check_hub_access


def label_kwargs(id2label: dict) -> dict:
    """The config fields of a classification head over `id2label`."""
    return dict(num_labels=len(id2label), **label_fields(id2label))


def build_model(args, id2label: dict, auto_class, presets, config_from_preset):
    """The model for `id2label`: from a preset's config (`config_from_preset(name, **label fields)`; trained from
    scratch, nothing is downloaded) or `auto_class.from_pretrained` (a folder or Hub id; with a different label set
    only under --ignore_mismatched_sizes). `--drop_path_rate` reaches the PVT trunk on both paths;
    `--backbone_name_or_path` then loads the trunk's pretrained weights (`pvt_hf.transfer`)."""
    labels = label_kwargs(id2label)
    hub = dict(cache_dir=args.cache_dir, token=getattr(args, "hub_token", None))
    if args.model_name_or_path in presets:
        config = config_from_preset(args.model_name_or_path, **labels)
    else:
        config = AutoConfig.from_pretrained(args.model_name_or_path, **labels, **hub)
    getattr(config, "backbone_config", config).drop_path_rate = args.drop_path_rate
    if args.model_name_or_path in presets:
        model = auto_class.from_config(config)
    else:
        model = auto_class.from_pretrained(
            args.model_name_or_path, config=config, ignore_mismatched_sizes=args.ignore_mismatched_sizes, **hub
        )
    if getattr(args, "backbone_name_or_path", None):
        load_pretrained_backbone(model, args.backbone_name_or_path, **hub)
    return model


def start_run(args) -> Accelerator:
    """What every script does first: the Hub pre-flight (a push that would fail says so before any work), all of
    this process's share of the cores (`accelerate launch` leaves a CPU-only process one thread), the accelerator,
    the seed."""
    check_hub_access(args)
    use_available_cores()
    accelerator = make_accelerator(args)
    set_seed(args.seed)
    return accelerator


def make_accelerator(args) -> Accelerator:
    return Accelerator(
        # The loop steps the schedule once per optimizer step, and its length counts this process's steps. (By default
        # accelerate steps a prepared scheduler num_processes times per call, which would end it N times too early.)
        step_scheduler_with_optimizer=False,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=args.report_to if args.with_tracking else None,
        project_dir=args.output_dir,
    )


def no_weight_decay(name: str, param: torch.nn.Parameter) -> bool:
    """As the official code (timm's optimiser factory): biases, norms, position tables and class tokens are not
    decayed."""
    return param.ndim <= 1 or name.endswith(("position_embedding.table", "cls_token"))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in params if not no_weight_decay(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in params if no_weight_decay(n, p)], "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=learning_rate)


MMDET_WARMUP_RATIO = 0.001  # mmdetection's schedules: the linear warm-up starts at 0.001 of the learning rate


def build_scheduler(
    optimizer,
    name: str,
    num_warmup_steps: int,
    total_steps: int,
    steps_per_epoch: int | None,
    *,
    decay_epochs: list[int] | None = None,
    num_epochs: int | None = None,
):
    """transformers' `get_scheduler` (cosine for DeiT; polynomial with power 0.9 to 0 for Semantic FPN), and the two
    step schedules it lacks: PVT+DETR's "step", x0.1 at epoch 33 of 50 (at 2/3 of the steps in a shorter run), and
    mmdetection's "multistep" (RetinaNet / Mask R-CNN), x0.1 after each epoch of `decay_epochs` of `num_epochs`."""
    if name == "multistep":
        return multistep_schedule(optimizer, decay_epochs, num_warmup_steps, total_steps, steps_per_epoch, num_epochs)
    if name == "step":
        (drop,) = _decay_steps([33], 50, total_steps, steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (step + 1) / num_warmup_steps if step < num_warmup_steps else 0.1 if step >= drop else 1.0,
        )
    specific = {"power": 0.9, "lr_end": 0.0} if name == "polynomial" else None
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=specific,
    )


def _decay_steps(decay_epochs, num_epochs: int, total_steps: int, steps_per_epoch: int | None) -> list[int]:
    """The steps at which a step schedule divides the rate by 10: the first step of each of `decay_epochs` (of
    `num_epochs`), or the same fraction of a run's steps when the run is shorter than its epochs."""
    drops = [round(total_steps * epoch / num_epochs) for epoch in decay_epochs]
    if steps_per_epoch:
        drops = [min(epoch * steps_per_epoch, drop) for epoch, drop in zip(decay_epochs, drops, strict=True)]
    return drops


def multistep_schedule(optimizer, decay_epochs, num_warmup_steps, total_steps, steps_per_epoch, num_epochs):
    """mmdetection's step policy with its linear warm-up (`schedule_1x`: steps [8, 11] of 12 epochs, 500 warm-up
    iterations from ratio 0.001): the rate x0.1 once each epoch of `decay_epochs` is reached (a run shorter than its
    epochs decays at the same fractions of its steps), times 1 - (1 - step / warm-up) x (1 - 0.001) while warming up."""
    if not decay_epochs or not num_epochs:
        raise ValueError("the multistep schedule needs the epochs it decays at (--lr_decay_epochs) and the epoch count")
    drops = _decay_steps(decay_epochs, num_epochs, total_steps, steps_per_epoch)

    def factor(step: int) -> float:
        decayed = 0.1 ** sum(step >= drop for drop in drops)
        if step < num_warmup_steps:
            return decayed * (1 - (1 - step / num_warmup_steps) * (1 - MMDET_WARMUP_RATIO))
        return decayed

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def optimizer_and_scheduler(model, args, plan):
    """AdamW over the decayed / non-decayed parameter groups and `--lr_scheduler_type` over `plan`'s steps."""
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    return optimizer, build_scheduler(
        optimizer,
        args.lr_scheduler_type,
        args.num_warmup_steps,
        plan.total_steps,
        plan.steps_per_epoch,
        decay_epochs=getattr(args, "lr_decay_epochs", None),
        num_epochs=args.num_train_epochs,
    )
