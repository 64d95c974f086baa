"""pvt_hf.data: local formats, Hub-schema adapters (without the Hub), corrupt-sample skipping, sharding, defaults."""

import io
import json
import logging
import shutil
import time

import conftest  # noqa: F401  (HF_HUB_OFFLINE)
import numpy as np
import pytest
from PIL import Image

datasets = pytest.importorskip("datasets")
from dataset_fixtures import CPPE5_NAMES, CPPE5_OBJECT  # noqa: E402
from datasets import ClassLabel, Dataset, Features, IterableDataset, List, Sequence, Value  # noqa: E402
from datasets import Image as ImageFeature  # noqa: E402

from pvt_hf import ade20k_labels, data  # noqa: E402

SHAPE_NAMES = {0: "rectangle", 1: "ellipse", 2: "triangle"}
SIZES = {"classification": (1437, 360), "detection": (200, 50), "segmentation": (200, 50)}


@pytest.fixture(scope="module", autouse=True)
def hf_cache(tmp_path_factory):
    """Keep datasets' arrow caches of the non-streaming loads out of the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The three embedded datasets, generated once (timed) for the module."""
    root = tmp_path_factory.mktemp("pvt_hf_datasets")
    for task in data.TASKS:
        start = time.perf_counter()
        data.embedded_dataset(task, str(root))
        assert time.perf_counter() - start < 10, f"generating the {task} dataset took too long"
    return root


def rgb(size=(40, 36), value=0):
    return Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8))


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def check_canonical(task, example):
    assert isinstance(example["image"], Image.Image) and example["image"].mode == "RGB"
    if task == "classification":
        assert set(example) == {"image", "label"} and isinstance(example["label"], int)
    elif task == "detection":
        assert set(example) == {"image", "image_id", "objects"} and isinstance(example["image_id"], int)
        objects = example["objects"]
        assert set(objects) == {"bbox", "category", "area", "iscrowd", "segmentation"}
        assert len({len(v) for v in objects.values()}) == 1 and objects["bbox"]
        for x, y, w, h in objects["bbox"]:
            assert 0 <= x and 0 <= y and x + w <= example["image"].width and y + h <= example["image"].height
        assert all(c in SHAPE_NAMES for c in objects["category"]) and set(objects["iscrowd"]) == {0}
    else:
        assert set(example) == {"image", "annotation"}
        assert example["annotation"].mode == "L" and example["annotation"].size == example["image"].size
        assert set(np.unique(np.asarray(example["annotation"]))) <= {0, 1, 2, 3}


# ------------------------------------------------------------------------------------ local formats, defaults


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "map-style"])
@pytest.mark.parametrize("task", data.TASKS)
def test_embedded_defaults_load_through_local_loaders(cache, task, streaming):
    split = "validation"
    ds = data.load_task_dataset(task, None, split, streaming=streaming, cache_dir=str(cache))
    assert isinstance(ds, IterableDataset if streaming else Dataset)
    examples = data.SkipCorrupt(ds, task)
    decoded = list(examples)
    assert examples.skipped == 0 and len(decoded) == SIZES[task][1]
    for example in decoded[:5]:
        check_canonical(task, example)
    expected = {str(d): str(d) for d in range(10)} if task == "classification" else SHAPE_NAMES
    assert data.label_names(task, ds) == {int(k): v for k, v in expected.items()}
    if task == "classification":
        assert all(35 <= n <= 37 for n in np.bincount([e["label"] for e in decoded]))  # stratified 80/20


def test_embedded_defaults_are_deterministic(cache, tmp_path):
    for task in data.TASKS:
        again = data.embedded_dataset(task, str(tmp_path))
        first = cache / again.name
        files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files), task
        assert data.embedded_dataset(task, str(tmp_path)) == again  # present: not rewritten
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind
    layout = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")}
    assert {
        "digits-v1-seed0/train",
        "digits-v1-seed0/validation",
        "shapes-coco-v3-seed0/annotations",
        "shapes-coco-v3-seed0/train",
        "shapes-ade20k-v2-seed0/images",
        "shapes-ade20k-v2-seed0/id2label.json",
        "shapes-ade20k-v2-seed0/annotations",
    } <= layout


def test_embedded_shapes_carry_instance_masks_of_their_shapes(cache):
    # the masks are the shapes' pixels: the class colour inside (the background is dark), tight in their boxes
    rows = data.load_task_dataset("detection", None, "validation", data_dir=str(cache / "shapes-coco-v3-seed0"))
    for row in list(rows)[:10]:
        sample = data.decode_example(row, "detection")
        image, objects = np.asarray(sample["image"], dtype=np.float64), sample["objects"]
        masks = data.detection.instance_masks(objects["segmentation"], *image.shape[:2]).astype(bool)
        for mask, box, cls in zip(masks, objects["bbox"], objects["category"], strict=True):
            x, y, w, h = (int(v) for v in box)
            rows_, cols = np.where(mask)
            assert (cols.min(), rows_.min(), cols.max() + 1 - cols.min(), rows_.max() + 1 - rows_.min()) == (x, y, w, h)
            assert np.abs(image[mask].mean(0) - data.embedded.SHAPE_COLOURS[cls]).max() < 40
            corners = ~mask[y : y + h, x : x + w]  # in the box, off the shape (none for a rectangle): background
            assert not corners.any() or image[y : y + h, x : x + w][corners].mean() < 110


def test_training_split_and_aliases(cache):
    # ADE folders say "training"; "train" finds it. A data_dir with dataset_name=None is the local source.
    ds = data.load_task_dataset("segmentation", None, "train", data_dir=str(cache / "shapes-ade20k-v2-seed0"))
    assert sum(1 for _ in ds) == SIZES["segmentation"][0]
    with pytest.raises(FileNotFoundError, match="test"):
        data.load_task_dataset("detection", None, "test", data_dir=str(cache / "shapes-coco-v3-seed0"))


def test_coco_folder_maps_category_ids_and_reads_images_folder(tmp_path):
    (tmp_path / "images").mkdir()
    rgb((50, 40)).save(tmp_path / "images" / "a.png")
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 50, "height": 40}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 10, 20], "segmentation": [[1, 2, 11, 2, 1, 22]]},
            {
                "id": 2,
                "image_id": 7,
                "category_id": 3,
                "bbox": [5, 5, 4, 4],
                "iscrowd": 1,
                "segmentation": {"size": [40, 50], "counts": [100, 4, 1896]},  # COCO's crowds: uncompressed RLE
            },
        ],
    }
    (tmp_path / "train.json").write_text(json.dumps(coco))
    ds = data.load_task_dataset("detection", str(tmp_path), "train", streaming=False)
    assert data.label_names("detection", ds) == {0: "car", 1: "toothbrush"}
    (example,) = data.SkipCorrupt(ds, "detection")
    assert example["image_id"] == 7
    assert example["objects"] == {
        "bbox": [[1, 2, 10, 20], [5, 5, 4, 4]],
        "category": [1, 0],
        "area": [200, 16],
        "iscrowd": [0, 1],
        "segmentation": [[[1, 2, 11, 2, 1, 22]], {"size": [40, 50], "counts": [100, 4, 1896]}],
    }


# ------------------------------------------------------------------- Hub schemas, without the Hub (adapters)


def imagenet_like(n=6):
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=["tench", "goldfish", "shark"])})
    return Dataset.from_dict(
        {"image": [rgb(value=i) for i in range(n)], "label": [i % 3 for i in range(n)]}, features=features
    )


def coco_xyxy_like():
    """detection-datasets/coco: objects {bbox_id, category, bbox (x0, y0, x1, y1), area}."""
    features = Features(
        {
            "image_id": Value("int64"),
            "image": ImageFeature(),
            "width": Value("int32"),
            "height": Value("int32"),
            "objects": Sequence(
                {
                    "bbox_id": Value("int64"),
                    "category": ClassLabel(names=["person", "bicycle", "car"]),
                    "bbox": Sequence(Value("float64"), length=4),
                    "area": Value("int64"),
                }
            ),
        }
    )
    objects = [
        {"bbox_id": [1, 2], "category": [2, 0], "bbox": [[1, 2, 11, 22], [0, 0, 5, 5]], "area": [200, 25]},
        {"bbox_id": [3], "category": [1], "bbox": [[3, 3, 4, 4]], "area": [1]},
    ]
    return Dataset.from_dict(
        {"image_id": [10, 11], "image": [rgb(), rgb()], "width": [40, 40], "height": [36, 36], "objects": objects},
        features=features,
    )


def cppe5_like(list_of_dicts=False):
    """cppe-5: objects {id, area, bbox (x, y, w, h), category}; also as a list of dicts, as some parquet exports."""
    feature = List(CPPE5_OBJECT) if list_of_dicts else Sequence(CPPE5_OBJECT)
    features = Features({"image_id": Value("int64"), "image": ImageFeature(), "objects": feature})
    objects = [{"id": [1], "area": [30], "bbox": [[2.0, 3.0, 5.0, 6.0]], "category": [4]}]
    if list_of_dicts:
        objects = [[dict(zip(o, values, strict=True)) for values in zip(*o.values(), strict=True)] for o in objects]
    return Dataset.from_dict({"image_id": [5], "image": [rgb()], "objects": objects}, features=features), CPPE5_NAMES


def scene_parse_like():
    label_map = Image.fromarray(np.arange(36 * 40).reshape(36, 40).astype(np.uint8) % 151)
    return Dataset.from_dict(
        {"image": [rgb()], "annotation": [label_map], "scene_category": [3]},
        features=Features({"image": ImageFeature(), "annotation": ImageFeature(), "scene_category": Value("int64")}),
    )


@pytest.mark.parametrize("streaming", [False, True], ids=["map-style", "streaming"])
def test_hub_schema_adapters(streaming):
    stream = (lambda ds: ds.to_iterable_dataset(num_shards=1)) if streaming else (lambda ds: ds)

    ds = data.adapt(stream(imagenet_like()), "classification")
    assert data.label_names("classification", ds) == {0: "tench", 1: "goldfish", 2: "shark"}
    assert [e["label"] for e in data.SkipCorrupt(ds, "classification")] == [0, 1, 2, 0, 1, 2]

    ds = data.adapt(stream(coco_xyxy_like()), "detection", bbox_format="xyxy")
    assert data.label_names("detection", ds) == {0: "person", 1: "bicycle", 2: "car"}
    first, second = data.SkipCorrupt(ds, "detection")
    assert first["image_id"] == 10 and first["objects"] == {
        "bbox": [[1, 2, 10, 20], [0, 0, 5, 5]],
        "category": [2, 0],
        "area": [200, 25],
        "iscrowd": [0, 0],
        "segmentation": [],  # the schema has none
    }
    assert second["objects"]["bbox"] == [[3, 3, 1, 1]]

    for list_of_dicts in (False, True):
        cppe5, names = cppe5_like(list_of_dicts)
        ds = data.adapt(stream(cppe5), "detection", bbox_format="xywh")
        assert data.label_names("detection", ds) == dict(enumerate(names))
        (example,) = data.SkipCorrupt(ds, "detection")
        assert example["objects"] == {
            "bbox": [[2, 3, 5, 6]],
            "category": [4],
            "area": [30],
            "iscrowd": [0],
            "segmentation": [],
        }

    ds = data.adapt(stream(scene_parse_like()), "segmentation", id2label=ade20k_labels())
    assert data.label_names("segmentation", ds) == ade20k_labels()
    (example,) = data.SkipCorrupt(ds, "segmentation")
    assert example["annotation"].mode == "L" and np.asarray(example["annotation"]).max() == 150  # 0 kept as is


def test_column_overrides_and_bbox_format():
    ds = imagenet_like().rename_columns({"image": "img", "label": "fine_label"})
    with pytest.raises(ValueError, match="columns"):
        data.adapt(ds, "classification")
    ds = data.adapt(ds, "classification", columns={"image": "img", "label": "fine_label"})
    assert ds.column_names == ["image", "label"] and len(list(data.SkipCorrupt(ds, "classification"))) == 6

    raw = coco_xyxy_like().rename_column("objects", "annotations")
    ds = data.adapt(raw, "detection", columns={"objects": "annotations"}, bbox_format="xyxy")
    assert next(iter(data.SkipCorrupt(ds, "detection")))["objects"]["bbox"][0] == [1, 2, 10, 20]
    with pytest.raises(ValueError, match="bbox_format"):
        data.adapt(raw, "detection", columns={"objects": "annotations"}, bbox_format="cxcywh")


def test_parquet_sources(tmp_path):
    """Hub-schema parquet: a file, a glob, and a folder with datasets' split naming; streamed and not."""
    cppe5, names = cppe5_like()
    (tmp_path / "folder" / "data").mkdir(parents=True)
    cppe5.to_parquet(tmp_path / "cppe5.parquet")
    cppe5.to_parquet(tmp_path / "folder" / "data" / "validation-00000-of-00001.parquet")
    datasets.concatenate_datasets([cppe5] * 2).to_parquet(tmp_path / "folder" / "data" / "train-00000-of-00001.parquet")
    for streaming in (True, False):
        for source in (tmp_path / "cppe5.parquet", tmp_path / "*.parquet"):
            ds = data.load_task_dataset("detection", str(source), "train", streaming=streaming, bbox_format="xywh")
            assert data.label_names("detection", ds) == dict(enumerate(names))
            assert [e["objects"]["bbox"] for e in data.SkipCorrupt(ds, "detection")] == [[[2, 3, 5, 6]]]
        ds = data.load_task_dataset(
            "detection", str(tmp_path / "folder"), "validation", streaming=streaming, bbox_format="xywh"
        )
        assert [e["image_id"] for e in data.SkipCorrupt(ds, "detection")] == [5]
        ds = data.load_task_dataset(
            "detection", str(tmp_path / "folder"), "train", streaming=streaming, bbox_format="xywh"
        )
        assert [e["image_id"] for e in data.SkipCorrupt(ds, "detection")] == [5, 5]
    imagenet_like(4).to_parquet(tmp_path / "imagenet.parquet")
    ds = data.load_task_dataset("classification", str(tmp_path / "imagenet.parquet"), "train")  # a file: one split
    assert [e["label"] for e in data.SkipCorrupt(ds, "classification")] == [0, 1, 2, 0]


# ------------------------------------------------------------------------------------------- corrupt samples


def test_corrupt_images_in_an_image_folder_are_skipped_and_counted(tmp_path, caplog):
    for label in ("cat", "dog"):  # class folders straight under the root: one "train" split
        (tmp_path / label).mkdir()
        for i in range(3):
            rgb(value=10 * i).save(tmp_path / label / f"{i}.jpg")
    good = (tmp_path / "cat" / "0.jpg").read_bytes()
    (tmp_path / "cat" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "dog" / "not_an_image.jpg").write_text("hello")
    for streaming in (True, False):
        ds = data.load_task_dataset("classification", str(tmp_path), "train", streaming=streaming)
        examples = data.SkipCorrupt(ds, "classification", max_warnings=1)
        with caplog.at_level(logging.WARNING, logger="pvt_hf.data"):
            caplog.clear()
            assert len(list(examples)) == 6 and examples.skipped == 2
            assert len(list(examples)) == 6 and examples.skipped == 4  # counted over passes (epochs)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("skipping corrupt" in m for m in messages) == 1  # the rest only counted
        assert sum("skipped 2 corrupt" in m for m in messages) == 2


def test_corrupt_detection_and_segmentation_samples_are_skipped(cache, tmp_path):
    cppe5, _ = cppe5_like()
    bad = [
        {"id": [1], "area": [30], "bbox": [[2.0, float("nan"), 5.0, 6.0]], "category": [4]},  # NaN box
        {"id": [1], "area": [30], "bbox": [[2.0, 3.0, -5.0, 6.0]], "category": [4]},  # negative width
        {"id": [1, 2], "area": [30, 1], "bbox": [[2.0, 3.0, 5.0, 6.0]], "category": [4, 1]},
    ]  # lengths differ
    rows = Dataset.from_dict({"image_id": [6, 7, 8], "image": [rgb()] * 3, "objects": bad}, features=cppe5.features)
    for streaming in (False, True):
        mixed = datasets.concatenate_datasets([cppe5, rows])
        ds = data.adapt(mixed.to_iterable_dataset() if streaming else mixed, "detection", bbox_format="xywh")
        examples = data.SkipCorrupt(ds, "detection")
        assert [e["image_id"] for e in examples] == [5] and examples.skipped == 3

    # missing keys and undecodable bytes, straight from an iterable of dicts
    examples = data.SkipCorrupt(
        [
            {"label": 1},
            {"image": {"bytes": b"xx", "path": None}, "label": 0},
            {"image": {"bytes": png_bytes(rgb()), "path": None}, "label": 2},
        ],
        "classification",
    )
    assert [e["label"] for e in examples] == [2] and examples.skipped == 2

    # an ADE folder with a label map of the wrong size and one missing
    root = tmp_path / "ade"
    shutil.copytree(cache / "shapes-ade20k-v2-seed0", root)
    annotations = sorted((root / "annotations" / "validation").iterdir())
    Image.open(annotations[0]).resize((20, 20)).save(annotations[0])
    annotations[1].unlink()
    for streaming in (True, False):
        ds = data.load_task_dataset("segmentation", None, "validation", data_dir=str(root), streaming=streaming)
        examples = data.SkipCorrupt(ds, "segmentation")
        assert len(list(examples)) == SIZES["segmentation"][1] - 2 and examples.skipped == 2


def test_decode_example_label_maps():
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8)).convert("P")
    example = {"image": rgb((2, 2)), "annotation": palette}
    assert np.asarray(data.decode_example(example, "segmentation")["annotation"]).tolist() == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="single-channel"):
        data.decode_example({"image": rgb((2, 2)), "annotation": rgb((2, 2))}, "segmentation")
    with pytest.raises(ValueError, match="bad box"):
        data.decode_example(
            {
                "image": rgb(),
                "image_id": 1,
                "objects": {"bbox": [[1, 2, 3]], "category": [0], "area": [1.0], "iscrowd": [0]},
            },
            "detection",
        )


# ----------------------------------------------------------------------------------- sharding, shuffling


def ids(task, examples):
    key = "image_id" if task == "detection" else "annotation"
    return [e[key] if task == "detection" else e[key]["path"] for e in examples]


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "map-style"])
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_shards_are_disjoint_and_cover_everything(cache, task, streaming):
    ds = data.load_task_dataset(task, None, "validation", streaming=streaming, cache_dir=str(cache))
    everything = ids(task, ds)
    parts = [ids(task, data.shard_for_process(ds, rank, 2)) for rank in range(2)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(everything) and len(set(everything)) == len(everything)
    # uneven shard counts (50 images, 3 processes) fall back to every world_size-th example: still a partition
    parts = [ids(task, data.shard_for_process(ds, rank, 3)) for rank in range(3)]
    assert sorted(sum(parts, [])) == sorted(everything)


def test_shuffle_and_set_epoch(cache):
    ds = data.load_task_dataset("detection", None, "validation", cache_dir=str(cache))
    ranks = [data.shuffle_stream(data.shard_for_process(ds, rank, 2), seed=1, buffer_size=16) for rank in range(2)]
    orders = []
    for epoch in (0, 0, 1):
        for shard in ranks:
            data.set_epoch(shard, epoch)
        parts = [ids("detection", shard) for shard in ranks]
        assert sorted(parts[0] + parts[1]) == list(range(1, 51))  # each epoch: a partition among processes
        orders.append(parts[0])
    assert orders[0] == orders[1] != orders[2]  # the same epoch replays, a new one reshuffles
    assert data.label_names("detection", ranks[0]) == SHAPE_NAMES  # label names survive shard + shuffle
    mapped = data.load_task_dataset("detection", None, "validation", streaming=False, cache_dir=str(cache))
    before = ids("detection", mapped)
    order = ids("detection", data.shuffle_stream(mapped, seed=1))
    assert order != before and sorted(order) == sorted(before)
    data.set_epoch(mapped, 1)  # map-style datasets have no epoch (they reshuffle through shuffle_stream): unchanged
    assert ids("detection", mapped) == before


def test_label_names_from_classlabel_fallback():
    assert data.label_names("classification", imagenet_like()) == {0: "tench", 1: "goldfish", 2: "shark"}
    assert data.label_names("segmentation", scene_parse_like()) is None
