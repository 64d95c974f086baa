"""Plain pieces the three training scripts share (the loops themselves live in `examples/run_*.py`): their common
arguments, the data loaders (worker processes, exact resumption), the papers' optimiser and schedules, atomic
checkpoints and their validated resumption, the Hub pre-flight check, and the Hub-ready output folder."""

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from datasets import IterableDataset
from transformers import AutoConfig, get_scheduler

from . import lockstep
from .atomic_output import OutputWriteError, staged_folder, write_failure
from .configuration_pvt import label_fields
from .nonfinite import NonFiniteGuard, check_finite_weights
from .preemption import Preemption, resume_hint
from .replay_resume import exactly_resumable
from .run_layout import check_same_layout, run_layout

logger = get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "training_state.json"
LOADER_STATE_FILE = "dataloader_state_{rank}.pt"
SCHEDULES = ["cosine", "polynomial", "step", "linear", "constant", "constant_with_warmup"]


# ----------------------------------------------------------------------------------------------------- arguments


# The papers' recipes, the scripts' defaults, one column per task. classification: DeiT's, as both papers train (v1
# paper Sec. 5.1; learning rate None: 5e-4 x total batch / 512); detection: PVT + DETR (v1 paper Sec. 5.4, DETR's
# 50-epoch step schedule); segmentation: Semantic FPN (v1 paper Sec. 5.3: AdamW 1e-4, polynomial decay, 512 crops).
_RECIPE_TASKS = ("classification", "detection", "segmentation")
_RECIPE_ROWS = (
    ("model_name_or_path", "pvt-v2-b0", "pvt-small-detr-coco", "pvt-v2-b0-semantic-fpn-ade20k"),
    ("image_size", 224, 800, 512),
    ("learning_rate", None, 1e-4, 1e-4),
    ("weight_decay", 0.05, 1e-4, 1e-4),
    ("lr_scheduler_type", "cosine", "step", "polynomial"),
    ("num_train_epochs", 300, 50, 1),
    ("per_device_train_batch_size", 128, 2, 4),
    ("per_device_eval_batch_size", 128, 2, 4),
    ("drop_path_rate", 0.1, 0.0, 0.0),
    ("max_grad_norm", None, 0.1, None),
    ("output_dir", "pvt-image-classification", "pvt-object-detection", "pvt-semantic-segmentation"),
)
RECIPES = {task: {row[0]: row[1 + i] for row in _RECIPE_ROWS} for i, task in enumerate(_RECIPE_TASKS)}


def add_arguments(parser: argparse.ArgumentParser, task: str) -> None:
    """The arguments of every script, named as in transformers' `*_no_trainer` examples, with `RECIPES[task]` as
    defaults; detection and segmentation also take `--backbone_name_or_path`."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model_name_or_path", help="a pvt_hf preset name (trained from scratch), a local folder or a Hub id"
    )
    if task != "classification":
        group.add_argument(
            "--backbone_name_or_path",
            default=None,
            help="start the PVT trunk from this classification or backbone folder / Hub id "
            "(e.g. an ImageNet-1k PVT written by convert/convert_pvt_checkpoint.py)",
        )
    group.add_argument(
        "--ignore_mismatched_sizes",
        action="store_true",
        help="with --model_name_or_path a folder / Hub id: re-initialise the head when its label count differs "
        "(opt-in)",
    )
    group.add_argument("--drop_path_rate", type=float, help="stochastic depth of the PVT trunk")
    group.add_argument(
        "--trust_remote_code", action="store_true", help="allow dataset / model repositories that run their own code"
    )
    group.add_argument("--cache_dir", default=None, help="where downloaded datasets and models are stored")
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset_name", default=None, help="a Hub dataset id or a local path; none: the package's embedded default"
    )
    group.add_argument("--dataset_config_name", default=None, help="the dataset's configuration")
    group.add_argument("--train_dir", default=None, help="a local folder of training data (instead of --dataset_name)")
    group.add_argument("--validation_dir", default=None, help="a local folder of evaluation data")
    group.add_argument("--train_split", default=None, help="the training split (default: the dataset's, e.g. train)")
    group.add_argument(
        "--eval_split",
        default=None,
        help="the evaluation split (default: validation / val / test, as the dataset has it)",
    )
    group.add_argument(
        "--train_val_split",
        type=float,
        default=None,
        help="hold out this fraction of the training split for evaluation when the dataset has no evaluation split",
    )
    group.add_argument(
        "--label_names",
        default=None,
        help="class names when the data has none: a JSON file (a list, or {id: name}) or imagenet-1k / coco / ade20k",
    )
    group.add_argument("--image_column_name", default=None, help="the dataset's image column (default: image)")
    group.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream the dataset (default) rather than download it first",
    )
    group.add_argument(
        "--shuffle_buffer_size",
        type=int,
        default=1000,
        help="streams: examples mixed in the shuffle buffer (on top of the shard order); 1: shard order only. "
        "Resumption is exact either way (a resumed stream re-reads the consumed part of its epoch)",
    )
    group.add_argument(
        "--dataloader_num_workers",
        type=int,
        default=0,
        help="worker processes decoding and augmenting (a stream is split over them by its shards)",
    )
    group.add_argument(
        "--max_train_samples", type=int, default=None, help="use at most this many training examples per epoch"
    )
    group.add_argument("--max_eval_samples", type=int, default=None, help="evaluate on at most this many examples")
    group.add_argument("--image_size", type=int, help="training crop / resize size")
    group = parser.add_argument_group("optimisation (defaults: the paper's recipe)")
    group.add_argument(
        "--learning_rate", type=float, help="AdamW's peak learning rate (classification: 5e-4 x total batch / 512)"
    )
    group.add_argument(
        "--weight_decay", type=float, help="AdamW weight decay (not on biases, norms, position tables, class tokens)"
    )
    group.add_argument(
        "--lr_scheduler_type",
        choices=SCHEDULES,
        help="the learning-rate schedule (polynomial: power 0.9 to 0; step: x0.1 at epoch 33 of 50, PVT+DETR)",
    )
    group.add_argument("--num_warmup_steps", type=int, default=0, help="linear warm-up steps")
    group.add_argument("--num_train_epochs", type=int, help="epochs (when --max_train_steps is not set)")
    group.add_argument(
        "--max_train_steps",
        type=int,
        default=None,
        help="total optimizer steps; overrides the epochs (required for a stream that does not report its size)",
    )
    group.add_argument("--per_device_train_batch_size", type=int, help="training batch per process")
    group.add_argument("--per_device_eval_batch_size", type=int, help="evaluation batch per process")
    group.add_argument("--gradient_accumulation_steps", type=int, default=1, help="batches per optimizer step")
    group.add_argument("--max_grad_norm", type=float, help="gradient clipping (none: no clipping)")
    group.add_argument(
        "--mixed_precision", default=None, choices=["no", "fp16", "bf16"], help="default: accelerate's config"
    )
    group.add_argument("--seed", type=int, default=42, help="seeds the model, the data order and the augmentation")
    group.add_argument(
        "--skip_nonfinite_steps",
        action="store_true",
        help="skip an optimizer step whose loss or gradients are NaN / inf (counted in all_results.json) instead of "
        "stopping with an error naming the step and its samples",
    )
    group = parser.add_argument_group("run management")
    group.add_argument("--output_dir", help="where checkpoints and the final folder are written")
    group.add_argument(
        "--checkpointing_steps", default=None, help="save a resumable checkpoint every N steps, or 'epoch'"
    )
    group.add_argument(
        "--resume_from_checkpoint", default=None, help="a checkpoint folder, or 'latest' in --output_dir"
    )
    group.add_argument(
        "--with_tracking", action="store_true", help="log the loss, learning rate and metrics to --report_to"
    )
    group.add_argument("--report_to", default="all", help="with --with_tracking: tensorboard, wandb, ... or 'all'")
    group.add_argument(
        "--push_to_hub",
        action="store_true",
        help="upload the final folder (token and connection are checked before training)",
    )
    group.add_argument(
        "--hub_model_id", default=None, help="the repository to push to (default: the output folder's name)"
    )
    group.add_argument("--hub_token", default=None, help="the Hub token (default: the stored login / HF_TOKEN)")
    parser.set_defaults(**RECIPES[task])


def parse_arguments(parser: argparse.ArgumentParser, embedded_profile: dict, argv=None) -> argparse.Namespace:
    """Parse `argv`; without a dataset the embedded one is used, with its short-run profile as defaults."""
    argv = sys.argv[1:] if argv is None else argv
    if not any(a.startswith(("--dataset_name", "--train_dir")) for a in argv):
        parser.set_defaults(**embedded_profile)
    args = parser.parse_args(argv)
    if args.checkpointing_steps not in (None, "epoch") and not str(args.checkpointing_steps).isdigit():
        parser.error(f"--checkpointing_steps takes a number of steps or 'epoch', got {args.checkpointing_steps!r}")
    return args


def check_hub_access(args) -> None:
    """With --push_to_hub, fail now (not after the run) when the Hub cannot be reached or the token is missing."""
    if not args.push_to_hub:
        return
    from huggingface_hub import HfApi
    from huggingface_hub.constants import HF_HUB_OFFLINE

    if HF_HUB_OFFLINE:
        raise SystemExit(
            "--push_to_hub: HF_HUB_OFFLINE is set, so nothing could be pushed. Unset it, or drop --push_to_hub."
        )
    try:
        user = HfApi(token=args.hub_token).whoami()
    except Exception as error:  # noqa: BLE001 - no token, a refused token, no network: all end the run here
        raise SystemExit(
            f"--push_to_hub: cannot use the Hub ({type(error).__name__}: {error}). Log in with "
            "`hf auth login` (or pass --hub_token / set HF_TOKEN) and check the connection."
        ) from None
    logger.info("pushing to the Hub as %s", user.get("name"))


# -------------------------------------------------------------------------------------------------------- data


def load_splits(args, task: str, columns: dict, **extra):
    """`pvt_hf.data.load_splits` with the scripts' arguments (train / eval streams, class names, reported sizes)."""
    from . import data

    columns = {k: v for k, v in columns.items() if v}
    same_names = (
        *("dataset_name", "dataset_config_name", "train_dir", "validation_dir", "train_split", "eval_split"),
        *("train_val_split", "streaming", "label_names", "cache_dir", "trust_remote_code", "seed"),
    )
    return data.load_splits(task, columns=columns or None, **{k: getattr(args, k) for k in same_names}, **extra)


def plan_steps(args, train_size: int | None, num_processes: int) -> SimpleNamespace:
    """Optimizer steps per epoch and in all, from the size the dataset reports (no pass over the data).

    Every process takes the same number of steps per epoch (their shards differ by at most one example), so DDP
    never waits on a process that ran out; a smaller last batch trains."""
    if train_size is not None and args.max_train_samples:
        train_size = min(train_size, args.max_train_samples)
    if train_size == 0:
        raise ValueError("the training split is empty")
    if train_size is None:
        if args.max_train_steps is None:
            raise ValueError(
                "the training stream does not report its size, so epochs cannot be counted: pass "
                "--max_train_steps (or --max_train_samples)"
            )
        return SimpleNamespace(steps_per_epoch=None, total_steps=args.max_train_steps, per_process=None)
    per_process = train_size // num_processes
    if per_process == 0:
        raise ValueError(f"the training split has {train_size} example(s), fewer than the {num_processes} processes")
    batches = math.ceil(per_process / args.per_device_train_batch_size)
    steps_per_epoch = math.ceil(batches / args.gradient_accumulation_steps)
    return SimpleNamespace(
        steps_per_epoch=steps_per_epoch,
        per_process=per_process,
        total_steps=args.max_train_steps or steps_per_epoch * args.num_train_epochs,
    )


def train_loader(train_set, args, epoch: int, task: str, transform, collate, num_processes: int, num_labels=None):
    """This epoch's loader of this process's shard: shuffled with seed + epoch, decoded, validated and augmented in
    `--dataloader_num_workers` workers (corrupt samples skipped and counted; a label outside `num_labels` classes
    stops the run), collated with `collate`.

    torchdata's `StatefulDataLoader`: its `state_dict` (the stream's position per worker) is saved with each
    checkpoint, so a resumed run seeks to where it stopped instead of reading the consumed batches again."""
    from torchdata.stateful_dataloader import StatefulDataLoader

    from . import data

    limit = args.max_train_samples // num_processes if args.max_train_samples else None
    stream = data.epoch_stream(
        train_set,
        args.seed + epoch,
        args.shuffle_buffer_size,
        limit,
        num_shards=max(1, args.dataloader_num_workers) * 8,
    )
    stream = exactly_resumable(stream, isinstance(train_set, IterableDataset) and args.shuffle_buffer_size > 1)
    examples = data.SkipCorrupt(stream, task, transform=transform, seed=args.seed, epoch=epoch, num_labels=num_labels)
    with warnings.catch_warnings():
        # torchdata 0.11's constructor calls a torch API that torch 2.13 deprecates (once per loader, i.e. per epoch):
        # not the user's concern; silenced here only
        warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)
        return StatefulDataLoader(
            examples,
            batch_size=args.per_device_train_batch_size,
            num_workers=args.dataloader_num_workers,
            collate_fn=_Collate(collate),
            persistent_workers=False,
        )


def eval_loader(eval_set, args, task: str, num_processes: int):
    """Decoded, validated evaluation examples (lists of dicts) of this process's shard, read by the workers."""
    from . import data

    if args.max_eval_samples:
        eval_set = data.take(eval_set, args.max_eval_samples // num_processes)
    stream = data.epoch_stream(eval_set, None, 0, None, num_shards=max(1, args.dataloader_num_workers) * 8)
    return torch.utils.data.DataLoader(
        data.SkipCorrupt(stream, task, transform=_decoded),
        batch_size=args.per_device_eval_batch_size,
        num_workers=args.dataloader_num_workers,
        collate_fn=_Collate(_examples),
    )


def _decoded(example, rng):
    return example


def _examples(items):
    return {"examples": items}


class _Collate:
    """Picklable collate for the workers: `data.collate_skipping` around the script's collate."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, items):
        from .data import collate_skipping

        return collate_skipping(items, self.collate)


def check_progress(step_before: int, step: int, skipped: int, epoch: int) -> None:
    """After an epoch: an epoch that took no step would repeat forever (an empty split, or every sample corrupt)."""
    if step == step_before:
        reason = (
            f"all {skipped} sample(s) read so far were corrupt" if skipped else "the training split yielded no example"
        )
        raise RuntimeError(
            f"epoch {epoch} took no training step: {reason}. Check the dataset (see the warnings above)."
        )


class Progress:
    """The loop's bookkeeping, so the scripts' loops show only what they do: where the run is (step, epoch, corrupt
    samples skipped), when an epoch or the run ends, logging, and the checkpoints (`--checkpointing_steps`).

        progress = Progress(accelerator, args, plan, "project")   # trackers; restores --resume_from_checkpoint
        for epoch in progress.epochs(model):
            for batch in progress.batches(train_loader(...)):
                ...  # forward, backward, optimizer step
                progress.after_batch(loss, scheduler)
    """

    def __init__(self, accelerator: Accelerator, args, plan, project: str):
        from tqdm.auto import tqdm

        if args.with_tracking:
            accelerator.init_trackers(project, config={k: str(v) for k, v in vars(args).items() if k != "hub_token"})
        self.accelerator, self.args, self.plan = accelerator, args, plan
        self.resumed = resumed = resume(accelerator, args)
        resumed = resumed or {}
        self.step, self.epoch = resumed.get("step", 0), resumed.get("epoch", 0)
        self.epoch_step, self.skipped = resumed.get("epoch_step", 0), resumed.get("skipped", 0)
        self.loader = self.model = None
        self.guard = NonFiniteGuard(accelerator, args.skip_nonfinite_steps)  # passed to backward_step
        self.preemption = Preemption()
        self.preemption.install()
        self.bar = tqdm(
            total=plan.total_steps, initial=self.step, disable=not accelerator.is_local_main_process, desc="train"
        )

    @property
    def done(self) -> bool:
        return self.step >= self.plan.total_steps

    def epochs(self, model):
        """The epochs to run (from the resumed one), with `model` in training mode."""
        self.model = model
        try:
            while not self.done:
                model.train()
                yield self.epoch
                self.epoch, self.epoch_step = self.epoch + 1, 0
                if checkpoint_due(self.args, self.step, end_of_epoch=True):
                    self._save()
        finally:  # also when the loop raises (once this generator is closed)
            self.preemption.restore()
        self.bar.close()

    def batches(self, loader):
        """`loader`'s batches (resumed at the saved position in the resumed epoch), the corrupt-sample counts taken
        out; it ends with the epoch (`plan.steps_per_epoch`, the same on every process), the run, or when any
        process has no batch left (`pvt_hf.lockstep`: no process waits for another forever)."""
        self.loader, step_before, resumed = loader, self.step, self.resumed and self.resumed["epoch"] == self.epoch
        if resumed and self.resumed.get("loader") is not None:
            loader.load_state_dict(self.resumed["loader"])
        for batch in lockstep.in_lockstep(self.accelerator, self._own_batches(loader)):
            self.guard.add_batch(batch.pop("samples"), self.step + 1)
            yield batch
        if not resumed:
            check_progress(step_before, self.step, self.skipped, self.epoch)

    def _own_batches(self, loader):
        per_epoch = self.plan.steps_per_epoch
        for batch in loader:
            if self.done or (per_epoch and self.epoch_step >= per_epoch):  # also a resumed, already full epoch
                return
            self.skipped += batch.pop("skipped")
            if len(batch) > 1:  # more than its "samples"
                yield batch

    def after_batch(self, loss: torch.Tensor, scheduler) -> None:
        """After each batch's optimizer call: on an optimizer step, advance the schedule, log, checkpoint."""
        if not self.accelerator.sync_gradients:
            return
        scheduler.step()
        self.step, self.epoch_step = self.step + 1, self.epoch_step + 1
        self.bar.update(1)
        if self.step % 10 == 0 or self.done:
            lr, last_loss = scheduler.get_last_lr()[0], loss.item()  # one device sync
            self.bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
            if self.args.with_tracking:
                self.accelerator.log(
                    {"train_loss": last_loss, "learning_rate": lr, "epoch": self.epoch}, step=self.step
                )
        saved = checkpoint_due(self.args, self.step, end_of_epoch=False)
        if saved:
            self._save(self.loader)
        if lockstep.any_process(self.accelerator, self.preemption.received is not None):
            self._stop_preempted(saved)

    def _stop_preempted(self, saved: bool):
        """SIGTERM / SIGINT: this step's checkpoint, then exit non-zero saying how to resume."""
        if not saved:
            self._save(self.loader)
        self.bar.close()
        received = self.preemption.received or "a stop signal (on another process)"
        raise SystemExit(
            resume_hint(received, self.step, Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.step}")
        )

    def _save(self, loader=None):
        state = {"step": self.step, "epoch": self.epoch, "epoch_step": self.epoch_step, "skipped": self.skipped}
        state |= run_layout(self.accelerator.num_processes, self.args)
        check_finite_weights(self.model, Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.step}")
        save_checkpoint(self.accelerator, self.args.output_dir, state, loader)

    def eval_batches(self, loader):
        """The evaluation loader's lists of examples, its corrupt-sample counts added to `skipped`."""
        for batch in loader:
            self.skipped += batch.pop("skipped")
            if batch:
                yield batch["examples"]

    def skipped_in_all_processes(self) -> int:
        return sum_over_processes(self.skipped)


def backward_step(
    accelerator: Accelerator, model, optimizer, loss: torch.Tensor, max_grad_norm: float | None, guard: NonFiniteGuard
) -> None:
    """Backward, clipping on the accumulation boundary, optimizer step (a no-op between boundaries) unless `guard`
    (`Progress.guard`) finds the loss or gradients non-finite."""
    accelerator.backward(loss)
    if accelerator.sync_gradients and max_grad_norm:
        accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    if guard.allows_step(loss, model):
        optimizer.step()
    optimizer.zero_grad()


@contextlib.contextmanager
def batch_norm_on_running_stats_for_one_sample(model, batch_size: int):
    """A batch of one image (a partial last batch, or --per_device_train_batch_size 1) has one value per channel in
    1x1 maps (UperNet's pooling pyramid, Semantic FPN's stride-32 level of small crops), where BatchNorm's batch
    statistics do not exist and PyTorch raises. For such a batch the BatchNorm layers normalise with their running
    statistics (and do not update them); every process still takes its step, so distributed runs stay in lockstep."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    if batch_size > 1 or not norms:
        yield
        return
    for norm in norms:
        norm.eval()
    try:
        yield
    finally:
        for norm in norms:
            norm.train()


# ------------------------------------------------------------------------------------------------------- model


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
        from .transfer import load_pretrained_backbone

        load_pretrained_backbone(model, args.backbone_name_or_path, **hub)
    return model


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


def build_scheduler(optimizer, name: str, num_warmup_steps: int, total_steps: int, steps_per_epoch: int | None):
    """transformers' `get_scheduler` (cosine for DeiT; polynomial with power 0.9 to 0 for Semantic FPN), and PVT+DETR's
    step schedule, which it lacks: x0.1 at epoch 33 of 50 (at 2/3 of the steps in a shorter run)."""
    if name == "step":
        drop = round(total_steps * 33 / 50)
        if steps_per_epoch:
            drop = min(33 * steps_per_epoch, drop)
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


def optimizer_and_scheduler(model, args, plan):
    """AdamW over the decayed / non-decayed parameter groups and `--lr_scheduler_type` over `plan`'s steps."""
    optimizer = build_optimizer(model, args.learning_rate, args.weight_decay)
    return optimizer, build_scheduler(
        optimizer, args.lr_scheduler_type, args.num_warmup_steps, plan.total_steps, plan.steps_per_epoch
    )


def mixing_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The batch-mixing generator of one optimizer step on one process: a resumed run mixes exactly as before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + rank)


# ------------------------------------------------------------------------------------ checkpoints, resumption


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
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not iterable
                f.get_slice(key)
    except Exception as error:  # noqa: BLE001 - SafetensorError names no file
        raise ValueError(f"{file} is truncated or not a safetensors file ({error})") from None
    if file.stat().st_size < 8:
        raise ValueError(f"{file} is truncated or not a safetensors file (empty)")


# ------------------------------------------------------------------------------------------------------ output


def write_results(output_dir: str, metrics: dict) -> None:
    path = Path(output_dir) / "all_results.json"
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def sum_over_processes(value: int) -> int:
    from accelerate.utils import gather_object

    return sum(gather_object([value]))


def save_outputs(accelerator: Accelerator, model, processor, args, metrics: dict, task: str) -> None:
    """The Hub-ready folder (weights, config, processor, remote code, model card, all_results.json), then the push."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        check_finite_weights(unwrapped, args.output_dir)
        from .hub import push_folder, training_card

        with staged_folder(Path(args.output_dir)) as staging:  # all written, or the folder left as it was
            unwrapped.save_pretrained(staging)
            processor.save_pretrained(staging)
            write_results(staging, metrics)
            Path(staging, "README.md").write_text(training_card(task, args, metrics))
        if args.push_to_hub:
            repo = args.hub_model_id or Path(args.output_dir).name
            push_folder(args.output_dir, repo, f"Fine-tuned {task} with pvt_hf", token=args.hub_token)
    accelerator.wait_for_everyone()
    accelerator.end_training()


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
