"""The datasets of the README on local copies with their published layout and schema (tests/dataset_fixtures.py):
`data.load_splits` finds the right splits, reports sizes without iterating, the real class names and canonical rows;
the Hub-id code path (parquet export of script datasets, config folders, id2label.json) is exercised offline."""

import json

import conftest  # noqa: F401  (HF_HUB_OFFLINE)
import dataset_fixtures as fx
import huggingface_hub
import pytest

from pvt_hf import data

datasets = pytest.importorskip("datasets")
IterableDataset = datasets.IterableDataset


@pytest.fixture(scope="module", autouse=True)
def hf_cache(tmp_path_factory):
    """Keep datasets' caches of the non-streaming loads out of the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
        yield


# (fixture builder, task, load_splits arguments besides the source, expected train / eval split names)
CASES = {
    "imagenet-1k parquet export": (fx.imagenet_parquet_export, "classification", {}, ("train", "validation")),
    "timm/imagenet-1k-wds": (
        fx.imagenet_webdataset,
        "classification",
        {"label_names": "imagenet-1k"},
        ("train", "validation"),
    ),
    "imagenet parquet mirror": (fx.imagenet_parquet_mirror, "classification", {}, ("train", "validation")),
    "frgfm/imagenette 160px": (
        fx.imagenette_parquet_export,
        "classification",
        {"dataset_config_name": "160px"},
        ("train", "validation"),
    ),
    "detection-datasets/coco": (fx.detection_datasets_coco, "detection", {"bbox_format": "xyxy"}, ("train", "val")),
    "coco 2017 folder": (fx.coco2017_folder, "detection", {}, ("train2017", "val2017")),
    "cppe-5": (fx.cppe5, "detection", {"bbox_format": "xywh"}, ("train", "test")),
    "scene_parse_150 export": (
        fx.scene_parse_150_export,
        "segmentation",
        {"dataset_config_name": "scene_parsing", "label_names": "ade20k"},
        ("train", "validation"),
    ),
    "ADEChallengeData2016": (fx.ade_challenge_folder, "segmentation", {}, ("training", "validation")),
    "segments/sidewalk-semantic": (fx.sidewalk_semantic, "segmentation", {"train_val_split": 0.3}, ("train", "train")),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("streaming", [True, False], ids=["stream", "map"])
def test_published_layouts_load(name, streaming, tmp_path):
    build, task, kwargs, (train_split, eval_split) = CASES[name]
    fixture = build(tmp_path / "repo")
    splits = data.load_splits(task, dataset_name=str(fixture.root), streaming=streaming, **kwargs)
    assert (splits.train_split, splits.eval_split) == (train_split, eval_split)
    names = fixture.id2label or data.named_labels("imagenet-1k")
    assert splits.id2label == names and data.label_names(task, splits.train) == names
    train = list(data.SkipCorrupt(splits.train, task))
    evaluation = list(data.SkipCorrupt(splits.eval, task))
    if "train_val_split" in kwargs:  # carved: disjoint, together the whole split
        assert len(train) + len(evaluation) == fixture.sizes["train"] and train and evaluation
        assert not {e["image"].tobytes() for e in train} & {e["image"].tobytes() for e in evaluation}
    else:
        labelled_eval = fixture.sizes[eval_split]
        assert len(train) == fixture.sizes[train_split] and len(evaluation) == labelled_eval
        unsized = streaming and name == "timm/imagenet-1k-wds"  # streamed webdataset tars report no size
        reported = (None, None) if unsized else (fixture.sizes[train_split], labelled_eval)
        assert (splits.train_size, splits.eval_size) == reported
    example = train[0]
    assert set(example) == set(data.DEFAULT_COLUMNS[task]) - {
        "objects",
        "bbox",
        "category",
        "area",
        "iscrowd",
        "segmentation",
    } | ({"objects"} if task == "detection" else set())
    if task == "detection":  # canonical xywh whatever the source's format: the fixture's first box is 10x8 at (2, 3)
        assert example["objects"]["bbox"][0] == [2, 3, 10, 8]


def test_a_stream_is_not_read_to_size_it(tmp_path, monkeypatch):
    """Sizes come from parquet footers: loading reads only each split's first row (the unlabelled-split check)."""
    fixture = fx.imagenet_parquet_mirror(tmp_path / "repo")
    reads = []
    iterate = IterableDataset.__iter__

    def counting(self):
        for example in iterate(self):
            reads.append(1)
            yield example

    monkeypatch.setattr(IterableDataset, "__iter__", counting)
    splits = data.load_splits("classification", dataset_name=str(fixture.root))
    assert len(reads) <= 2 and (splits.train_size, splits.eval_size) == (9, 3)


def _fake_hub(monkeypatch, repos: dict, script_ids=()):
    """datasets.load_dataset_builder as the Hub answers it: `repos` maps a Hub id to a local folder with the layout
    of its repository (for `script_ids`, of its `refs/convert/parquet` branch; their `main` is a refused script).
    Returns the recorded calls (id, config name, data_dir, revision)."""
    real, calls = datasets.load_dataset_builder, []

    def load_dataset_builder(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("data_dir"), kwargs.get("revision")))
        if path in repos:
            if path in script_ids and kwargs.pop("revision", None) != "refs/convert/parquet":
                raise RuntimeError(f"Dataset scripts are no longer supported, but found {path.split('/')[-1]}.py")
            path = str(repos[path])
        return real(path, name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", load_dataset_builder)
    return calls


def _fake_downloads(monkeypatch, repos: dict):
    """huggingface_hub.hf_hub_download answered from the local copies in `repos`; returns the recorded calls."""
    downloads = []

    def hf_hub_download(repo_id, filename, repo_type=None, **kwargs):
        downloads.append((repo_id, filename, repo_type))
        path = repos[repo_id] / filename
        if not path.exists():
            raise FileNotFoundError(path)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return downloads


def test_script_datasets_are_read_from_their_parquet_export(tmp_path, monkeypatch):
    imagenet = fx.imagenet_parquet_export(tmp_path / "imagenet")
    scene = fx.scene_parse_150_export(tmp_path / "scene")
    imagenette = fx.imagenette_parquet_export(tmp_path / "imagenette")
    calls = _fake_hub(
        monkeypatch,
        {"ILSVRC/imagenet-1k": imagenet.root, "scene_parse_150": scene.root, "frgfm/imagenette": imagenette.root},
        script_ids=("ILSVRC/imagenet-1k", "scene_parse_150", "frgfm/imagenette"),
    )
    splits = data.load_splits("classification", dataset_name="ILSVRC/imagenet-1k")
    assert calls == [
        ("ILSVRC/imagenet-1k", None, None, None),
        ("ILSVRC/imagenet-1k", None, "default", "refs/convert/parquet"),
    ]
    assert (splits.train_split, splits.eval_split, splits.train_size, splits.eval_size) == ("train", "validation", 6, 3)
    assert splits.id2label == imagenet.id2label

    with pytest.raises(ValueError, match="no config folder 'default'.*--dataset_config_name"):
        data.load_splits("classification", dataset_name="frgfm/imagenette")  # its export has no default config
    data.load_splits("segmentation", dataset_name="scene_parse_150")  # the card's semantic config by default
    assert calls[-1] == ("scene_parse_150", None, "scene_parsing", "refs/convert/parquet")
    calls.clear()  # a config of a script dataset is the export's folder, not `name=` (one `default` config there)
    splits = data.load_splits("segmentation", dataset_name="scene_parse_150", dataset_config_name="scene_parsing")
    assert calls[-1] == ("scene_parse_150", None, "scene_parsing", "refs/convert/parquet")
    assert splits.id2label == data.named_labels("ade20k")  # the card's classes: no --label_names needed by Hub id
    assert (splits.train_size, splits.eval_size) == (4, 2)
    assert len(list(data.SkipCorrupt(splits.eval, "segmentation"))) == 2

    splits = data.load_splits("classification", dataset_name="frgfm/imagenette", dataset_config_name="320px")
    assert calls[-1] == ("frgfm/imagenette", None, "320px", "refs/convert/parquet")
    assert next(iter(data.SkipCorrupt(splits.train, "classification")))["image"].size == (40, 40)  # that config's


def test_hub_ids_with_documented_defaults(tmp_path, monkeypatch):
    """What the cards document (timm's wds: ImageNet's names; detection-datasets/coco: xyxy boxes; sidewalk: its
    id2label.json) is used by Hub id, still validated."""
    repos = {
        "timm/imagenet-1k-wds": fx.imagenet_webdataset(tmp_path / "wds").root,
        "detection-datasets/coco": fx.detection_datasets_coco(tmp_path / "coco").root,
        "segments/sidewalk-semantic": fx.sidewalk_semantic(tmp_path / "sidewalk").root,
    }
    calls, downloads = _fake_hub(monkeypatch, repos), _fake_downloads(monkeypatch, repos)
    splits = data.load_splits("classification", dataset_name="timm/imagenet-1k-wds")
    assert calls[-1] == ("timm/imagenet-1k-wds", None, None, None)
    assert splits.id2label == data.named_labels("imagenet-1k") and len(splits.id2label) == 1000

    splits = data.load_splits("detection", dataset_name="detection-datasets/coco")
    assert next(iter(data.SkipCorrupt(splits.train, "detection")))["objects"]["bbox"][0] == [2, 3, 10, 8]
    with pytest.raises(ValueError, match="leaves its 32x32 image"):  # a declared format is still checked
        data.load_splits("detection", dataset_name="detection-datasets/coco", bbox_format="xywh")

    splits = data.load_splits("segmentation", dataset_name="segments/sidewalk-semantic", train_val_split=0.3)
    assert ("segments/sidewalk-semantic", "id2label.json", "dataset") in downloads
    assert splits.id2label == {0: "flat-road", 1: "flat-sidewalk", 2: "flat-crosswalk"}  # after reduce-labels


def test_clear_errors(tmp_path):
    coco = fx.detection_datasets_coco(tmp_path / "coco").root
    with pytest.raises(ValueError, match="--bbox_format xywh"):  # a mirror of no known schema: never guessed
        data.load_splits("detection", dataset_name=str(fx.cppe5(tmp_path / "cppe5").root))
    with pytest.raises(ValueError, match="cannot be xyxy"):
        data.load_splits("detection", dataset_name=str(fx.cppe5(tmp_path / "cppe5").root), bbox_format="xyxy")
    with pytest.raises(ValueError, match="COCO folder"):
        data.load_splits("detection", dataset_name=str(fx.coco2017_folder(tmp_path / "c17").root), bbox_format="xyxy")
    with pytest.raises(ValueError, match="--label_names"):
        data.load_splits("classification", dataset_name=str(fx.imagenet_webdataset(tmp_path / "wds").root))
    with pytest.raises(FileNotFoundError, match="imagenet-1k"):
        data.load_splits("detection", dataset_name=str(coco), bbox_format="xyxy", label_names="imagenet-21k")
    with pytest.raises(ValueError, match="label_names has 80 names.* 3 classes"):
        data.load_splits("detection", dataset_name=str(coco), bbox_format="xyxy", label_names="coco")
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["human", "bike", "automobile"]))  # as many as the data's: they replace its names
    splits = data.load_splits("detection", dataset_name=str(coco), bbox_format="xyxy", label_names=str(names))
    assert splits.id2label == {0: "human", 1: "bike", 2: "automobile"}

    mirror = fx.imagenet_parquet_mirror(tmp_path / "mirror").root
    with pytest.raises(ValueError, match="unlabelled"):  # ImageNet's test split: label -1 everywhere
        data.load_splits("classification", dataset_name=str(mirror), eval_split="test")
    with pytest.raises(ValueError, match="training data"):
        data.load_splits("classification", dataset_name=str(mirror), eval_split="train")
    with pytest.raises(FileNotFoundError, match="--eval_split"):
        data.load_splits("classification", dataset_name=str(mirror), eval_split="holdout")
    single = str(mirror / "data" / "train-*.parquet")  # one parquet source: no evaluation split
    with pytest.raises(ValueError, match="--train_val_split"):
        data.load_splits("classification", dataset_name=single)
    splits = data.load_splits("classification", dataset_name=single, train_val_split=0.25, streaming=False)
    assert (splits.train_size, splits.eval_size) == (6, 3) and splits.eval_split == splits.train_split == "train"
    with pytest.raises(ValueError, match="--train_val_split"):
        data.load_splits("segmentation", dataset_name=str(fx.sidewalk_semantic(tmp_path / "sw").root))


def test_unlabelled_rows_are_never_used(tmp_path):
    """label -1 (ImageNet's unlabelled test images) is dropped from training and evaluation; an unlabelled split
    cannot be either."""
    mirror = fx.imagenet_parquet_mirror(tmp_path / "mirror").root
    with pytest.raises(ValueError, match="unlabelled"):
        data.load_splits("classification", dataset_name=str(mirror), train_split="test")
    mixed = tmp_path / "mixed.parquet"
    datasets.Dataset.from_dict(
        fx._classification_rows(6, 0, labels=[0, -1, 2, -1, 1, 0]),
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=fx.IMAGENET_NAMES)}),
    ).to_parquet(str(mixed))
    for streaming in (False, True):
        splits = data.load_splits("classification", dataset_name=str(mixed), train_val_split=0.5, streaming=streaming)
        labels = [e["label"] for ds in (splits.train, splits.eval) for e in data.SkipCorrupt(ds, "classification")]
        assert sorted(labels) == [0, 0, 1, 2]
        if not streaming:
            assert splits.train_size + splits.eval_size == 4


def test_local_copies_of_script_datasets(tmp_path):
    """A clone of `main` of a script dataset is refused with the way out; a copy of its export with several configs
    needs one named."""
    clone = tmp_path / "imagenet-1k"
    clone.mkdir()
    (clone / "imagenet-1k.py").write_text("import datasets\n")
    with pytest.raises(ValueError, match="refs/convert/parquet"):
        data.load_splits("classification", dataset_name=str(clone))
    export = fx.imagenette_parquet_export(tmp_path / "imagenette").root
    with pytest.raises(ValueError, match="160px.*--dataset_config_name"):
        data.load_splits("classification", dataset_name=str(export))


def test_train_dir_and_validation_dir(tmp_path):
    """transformers' --train_dir / --validation_dir: two sources, one split each, never the same."""
    mirror = fx.imagenet_parquet_mirror(tmp_path / "mirror").root
    with pytest.raises(ValueError, match="training data"):
        data.load_splits("classification", train_dir=str(mirror), validation_dir=str(mirror) + "/")
    export = fx.imagenet_parquet_export(tmp_path / "export").root
    splits = data.load_splits(
        "classification",
        train_dir=str(mirror / "data" / "train-*.parquet"),
        validation_dir=str(export / "default" / "validation"),
    )
    assert (splits.train_size, splits.eval_size) == (9, 3)
    assert len(list(data.SkipCorrupt(splits.eval, "classification"))) == 3
