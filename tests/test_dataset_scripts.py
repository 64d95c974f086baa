"""Acceptance of issue 10's datasets: each command of README.md's Datasets table, exactly as written, trains 2 steps and
evaluates through its script on a local copy with the dataset's published layout (tests/dataset_fixtures.py).

Hub ids are answered offline by the local copies (datasets' `load_dataset_builder` and `hf_hub_download` are
redirected, a script dataset's `main` refused as the Hub does), so the Hub code path runs; a folder in a command is
replaced by the copy. The saved config must hold the dataset's class names, and the evaluation must have read
exactly the evaluation split (its images are 36x36, the training ones 32x32)."""

import json
import re
import shlex
import sys
from pathlib import Path

import conftest  # noqa: F401  (HF_HUB_OFFLINE)
import dataset_fixtures as fx
import pytest
from test_datasets import _fake_downloads, _fake_hub

from pvt_hf import data, training

pytestmark = pytest.mark.slow  # each documented dataset command runs its training script

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "examples"))

FIXTURES = {  # the rows of README.md's Datasets table -> the local copy of that dataset
    "ImageNet-1k, `ILSVRC/imagenet-1k`": fx.imagenet_parquet_export,
    "ImageNet-1k, `timm/imagenet-1k-wds`": fx.imagenet_webdataset,
    "ImageNet-1k, a parquet mirror": fx.imagenet_parquet_mirror,
    "Imagenette, `frgfm/imagenette`": fx.imagenette_parquet_export,
    "COCO, `detection-datasets/coco`": fx.detection_datasets_coco,
    "COCO 2017 folder": fx.coco2017_folder,
    "`cppe-5`": fx.cppe5,
    "ADE20K, `scene_parse_150`": fx.scene_parse_150_export,
    "`ADEChallengeData2016` folder": fx.ade_challenge_folder,
    "`segments/sidewalk-semantic`": fx.sidewalk_semantic,
}
SCRIPT_DATASETS = ("ILSVRC/imagenet-1k", "frgfm/imagenette", "scene_parse_150")
TINY = {  # 2 steps of a small model at a small size
    "run_image_classification.py": ["--model_name_or_path", "pvt-v2-b0", "--image_size", "32"],
    "run_object_detection.py": [
        "--model_name_or_path",
        "pvt-v2-b0-deformable-detr-coco",
        "--transformer_size",
        "small",
        "--image_size",
        "64",
        "--min_scale",
        "48",
        "--max_size",
        "64",
    ],
    "run_semantic_segmentation.py": ["--model_name_or_path", "pvt-v2-b0-semantic-fpn-ade20k", "--image_size", "32"],
}
COMMON = ["--max_train_steps", "2", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4"]


def documented_commands():
    table = (ROOT / "README.md").read_text().split("### Datasets", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| `(run_\w+\.py) (.+?)` \|", table, re.MULTILINE)
    assert {name for name, _, _ in rows} == set(FIXTURES), (
        "README.md's Datasets table and the fixtures list other datasets"
    )
    return rows


@pytest.mark.parametrize("name, script, arguments", documented_commands(), ids=lambda v: str(v)[:24])
def test_documented_command_trains_and_evaluates(name, script, arguments, tmp_path, monkeypatch):
    fixture = FIXTURES[name](tmp_path / "copy")
    argv = shlex.split(arguments)
    dataset = argv[argv.index("--dataset_name") + 1]
    if dataset.startswith(("/", "<")):  # a folder, or a placeholder for any mirror: the local copy
        argv[argv.index("--dataset_name") + 1] = str(fixture.root)
    else:  # a Hub id: answered by the local copy
        _fake_hub(monkeypatch, {dataset: fixture.root}, script_ids=SCRIPT_DATASETS)
        _fake_downloads(monkeypatch, {dataset: fixture.root})
    evaluated = []
    eval_batches = training.Progress.eval_batches

    def recording(self, loader):
        for examples in eval_batches(self, loader):
            evaluated.extend(e["image"].size for e in examples)
            yield examples

    monkeypatch.setattr(training.Progress, "eval_batches", recording)
    module = __import__(script.removesuffix(".py"))
    output = tmp_path / "out"
    module.main([*argv, *TINY[script], *COMMON, "--output_dir", str(output)])

    config = json.loads((output / "config.json").read_text())
    names = fixture.id2label or data.named_labels("imagenet-1k")
    assert {int(k): v for k, v in config["id2label"].items()} == names
    assert json.loads((output / "all_results.json").read_text())["skipped_corrupt_samples"] == 0
    if "--train_val_split" in argv:  # the held-out part of the only split: some, not all, of its 32x32 images
        assert 0 < len(evaluated) < fixture.sizes["train"]
    else:
        eval_split = next(s for s in fixture.sizes if s not in ("train", "training", "train2017"))
        config = argv[argv.index("--dataset_config_name") + 1] if "--dataset_config_name" in argv else None
        size = fixture.extra.get("eval_size", {}).get(config, fx.EVAL_SIZE)
        assert evaluated == [size] * fixture.sizes[eval_split]
