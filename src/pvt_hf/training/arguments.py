"""The scripts' arguments: the papers' recipes side by side (the defaults, one column per task), the arguments every
script shares (named as in transformers' `*_no_trainer` examples), the short-run profile of the embedded datasets,
the Hub pre-flight check, and `load_splits` called with the scripts' arguments."""

import argparse
import sys

from accelerate.logging import get_logger
from huggingface_hub import HfApi, constants

from .. import data

logger = get_logger(__name__)

SCHEDULES = ["cosine", "polynomial", "step", "multistep", "linear", "constant", "constant_with_warmup"]


# The papers' recipes, the scripts' defaults, one column per task. classification: DeiT's, as both papers train (v1
# paper Sec. 5.1; learning rate None: 5e-4 x total batch / 512); detection: PVT + DETR (v1 paper Sec. 5.4, DETR's
# 50-epoch step schedule); segmentation: Semantic FPN (v1 paper Sec. 5.3: AdamW 1e-4, polynomial decay, 512 crops).
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
RECIPES = {task: {row[0]: row[1 + i] for row in _RECIPE_ROWS} for i, task in enumerate(data.TASKS)}

# The papers' COCO detectors (v1 paper Sec. 5.2, v2 paper Sec. 5.2), one column per detector, as the official
# mmdetection 2.13 configs train them (whai362/PVT `detection/configs/retinanet_pvt_*_fpn_1x_coco.py`,
# `mask_rcnn_pvt_*_fpn_1x_coco.py`: AdamW without gradient clipping, mmdetection's `schedule_1x` with its 500-step
# linear warm-up from 0.001 of the rate, 8 GPUs x 2 images, the backbones' stochastic depth 0.1, images resized to
# shorter side 800 / longer at most 1333 and flipped). `DETECTOR_SCHEDULES` adds the schedule's columns.
_DETECTOR_RECIPE_ROWS = (  # name, RetinaNet, Mask R-CNN
    ("learning_rate", 1e-4, 2e-4),
    ("weight_decay", 1e-4, 1e-4),
    ("lr_scheduler_type", "multistep", "multistep"),
    ("num_warmup_steps", 500, 500),
    ("per_device_train_batch_size", 2, 2),
    ("per_device_eval_batch_size", 2, 2),
    ("drop_path_rate", 0.1, 0.1),
    ("max_grad_norm", None, None),
    ("image_size", 800, 800),
    ("output_dir", "pvt-retinanet", "pvt-mask-rcnn"),
)
DETECTORS = ("retinanet", "mask-rcnn")
DETECTOR_RECIPES = {name: {row[0]: row[1 + i] for row in _DETECTOR_RECIPE_ROWS} for i, name in enumerate(DETECTORS)}
# 1x: 12 epochs, x0.1 after epochs 8 and 11, single scale (`min_scale` = the shorter side 800). 3x: the official
# `mask_rcnn_pvt_v2_b2_fpn_3x_mstrain.py`: 36 epochs, steps at 27 and 33, AdamW lr 1e-4 with weight decay 0.05, shorter
# side drawn from 480, 512, ..., 800 (its AutoAugment's second policy, a random crop between two resizes, is not
# reproduced); the official repository has no RetinaNet 3x config, so RetinaNet takes the same.
DETECTOR_SCHEDULES = {
    "1x": dict(num_train_epochs=12, lr_decay_epochs=[8, 11], min_scale=800),
    "3x": dict(num_train_epochs=36, lr_decay_epochs=[27, 33], min_scale=480, learning_rate=1e-4, weight_decay=0.05),
}


def detector_recipe(detector: str, schedule: str) -> dict:
    """The defaults of training `detector` ("retinanet" / "mask-rcnn") on `schedule` ("1x" / "3x")."""
    return DETECTOR_RECIPES[detector] | DETECTOR_SCHEDULES[schedule]


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
        help="the learning-rate schedule (polynomial: power 0.9 to 0; step: x0.1 at epoch 33 of 50, PVT+DETR; "
        "multistep: mmdetection's, x0.1 after each of --lr_decay_epochs, warm-up from 0.001 of the rate)",
    )
    group.add_argument(
        "--lr_decay_epochs", type=int, nargs="+", default=None, help="multistep: the epochs after which the rate drops"
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
    if constants.HF_HUB_OFFLINE:  # read now: the environment (or a test) may have changed it since the import
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


def dataset_splits(args, task: str, columns: dict, **extra) -> data.TaskSplits:
    """`pvt_hf.data.load_splits` with the scripts' arguments (train / eval streams, class names, reported sizes)."""
    columns = {k: v for k, v in columns.items() if v}
    same_names = (
        *("dataset_name", "dataset_config_name", "train_dir", "validation_dir", "train_split", "eval_split"),
        *("train_val_split", "streaming", "label_names", "cache_dir", "trust_remote_code", "seed"),
    )
    return data.load_splits(task, columns=columns or None, **{k: getattr(args, k) for k in same_names}, **extra)
