"""Sources that datasets' builders read: Hub ids (a loading script through its parquet export,
`revision="refs/convert/parquet"`, `data_dir=<config or "default">`), local copies of Hub repositories (parquet /
webdataset tars / images with datasets' split naming, README configs; a copy of a parquet export picks its config
folder), parquet files or globs (the splits their file names carry, else one "train" split) and image folders
(`<root>/<split>/<class>/*` or `<root>/<class>/*`)."""

import glob
import json
import logging
from pathlib import Path

import datasets
import fsspec
import huggingface_hub
import pyarrow.parquet as pq

from ..source_hints import splits_from_file_names
from .schema import adapt
from .source import IMAGE_SUFFIXES, SPLIT_NAMES, Source

logger = logging.getLogger(__name__)

_EXPORT_REVISION = "refs/convert/parquet"  # where the Hub serves a script dataset's auto-converted parquet export

# What the dataset cards of known Hub ids document, used only as the *declared* default (boxes are still validated)
DOCUMENTED = {
    "detection-datasets/coco": {"bbox_format": "xyxy"},
    "cppe-5": {"bbox_format": "xywh"},
    "rishitdagli/cppe-5": {"bbox_format": "xywh"},
    "timm/imagenet-1k-wds": {"label_names": "imagenet-1k"},
    "scene_parse_150": {"label_names": "ade20k", "export_config": "scene_parsing"},  # its semantic config
    "zhoubolei/scene_parse_150": {"label_names": "ade20k", "export_config": "scene_parsing"},
}


class BuilderSource(Source):
    """Anything datasets' builders read: a Hub id, a local folder laid out like a Hub repository (parquet,
    webdataset, image files, README configs), parquet files, or an image folder's split folders."""

    def __init__(self, builder, name: str, hub_id: str | None = None, id2label=None):
        self.builder, self.name, self.hub_id, self.id2label = builder, name, hub_id, id2label
        self.splits = list(builder.config.data_files or {}) or list(builder.info.splits or {})
        if any("partial" in f for files in (builder.config.data_files or {}).values() for f in files):
            logger.warning(
                "%s: the parquet export holds only part of some splits (the Hub converts the first 5 GB "
                "of large splits): %s",
                name,
                _partial_splits(builder),
            )

    def raw(self, split, streaming):
        if streaming:
            return self.builder.as_streaming_dataset(split=split)
        self.builder.download_and_prepare()
        return self.builder.as_dataset(split=split)

    def dataset(self, task, split, streaming, columns, bbox_format):
        return adapt(self.raw(split, streaming), task, columns=columns, bbox_format=bbox_format)

    def same_data(self, first, second):
        files = self.builder.config.data_files or {}
        return first in files and sorted(files[first]) == sorted(files.get(second, []))

    def size(self, split):
        """From the split metadata, else the parquet footers, else (image files) the file count; else None."""
        info = (self.builder.info.splits or {}).get(split)
        if info is not None and info.num_examples:
            return info.num_examples
        files = list((self.builder.config.data_files or {}).get(split, []))
        if not files:
            return None
        if all(str(f).endswith(".parquet") for f in files):
            try:
                return sum(_parquet_rows(f) for f in files)
            except Exception:  # noqa: BLE001 - a size is a convenience; the data itself is read later
                return None
        if all(Path(str(f)).suffix.lower() in IMAGE_SUFFIXES for f in files):
            return len(files)
        return None


def _parquet_rows(path) -> int:
    with fsspec.open(str(path), "rb") as file:
        return pq.read_metadata(file).num_rows


def _partial_splits(builder) -> list[str]:
    return [str(s) for s, files in builder.config.data_files.items() if any("partial" in f for f in files)]


def open_builder_source(task: str, source, config: str | None, cache_dir: str | None, data_dir: str | None = None):
    """`source` (a Hub id, a folder, a parquet file or glob) as datasets' builders read it."""
    source = str(source)
    path = Path(source)
    if path.is_dir():
        splits = {d.name: d for d in path.iterdir() if d.is_dir() and d.name in SPLIT_NAMES}
        if task == "classification" and splits and not any(_holds_data_files(d) for d in splits.values()):
            # split folders of class folders, as explicit data files: datasets' own pattern search walks the tree
            # dozens of times
            files = {name: str(d / "**") for name, d in splits.items()}
            return BuilderSource(
                datasets.load_dataset_builder("imagefolder", data_files=files, cache_dir=cache_dir), source
            )
        return _hub_like(source, config, cache_dir, data_dir, hub_id=None, root=path)
    if path.is_file() or glob.has_magic(source):
        files = sorted(glob.glob(source))
        if not files:
            raise FileNotFoundError(f"no files match {source}")
        kind = "parquet" if all(f.endswith(".parquet") for f in files) else None
        if kind is None:
            raise ValueError(f"{source}: a file source must be parquet (or a folder / Hub id)")
        splits = splits_from_file_names(files) or {"train": files}  # train-*.parquet, validation-*.parquet
        builder = datasets.load_dataset_builder("parquet", data_files=splits, cache_dir=cache_dir)
        return BuilderSource(builder, source)
    return _hub_like(source, config, cache_dir, data_dir, hub_id=source.strip("/"), root=None)


def _holds_data_files(folder: Path) -> bool:
    return any(p.suffix in (".parquet", ".tar", ".arrow") for p in folder.iterdir())


def _hub_like(name: str, config: str | None, cache_dir, data_dir, hub_id: str | None, root: Path | None):
    """A Hub repository (or a local folder laid out like one): `name=config`, or for a parquet export (a script
    dataset on the Hub, or a local copy of its `refs/convert/parquet` branch) the config's folder as `data_dir`."""
    if root is not None:
        exported = _export_configs(root)
        if config is None and len(exported) > 1:
            raise ValueError(
                f"{name} is a parquet export of several configs {exported}: pick one with --dataset_config_name"
            )
        if config in exported or (config is None and exported):
            return BuilderSource(
                datasets.load_dataset_builder(name, data_dir=config or exported[0], cache_dir=cache_dir),
                name,
                None,
                _repo_id2label(name, root),
            )
    try:
        builder = datasets.load_dataset_builder(name, config, data_dir=data_dir, cache_dir=cache_dir)
    except RuntimeError as error:
        if "Dataset scripts are no longer supported" not in str(error):
            raise
        if root is not None:
            raise ValueError(
                f"{name} holds a loading script, which datasets 5 does not run: download the dataset's "
                f"parquet export instead (--revision {_EXPORT_REVISION})"
            ) from error
        logger.info("%s is a dataset script: reading its parquet export (%s)", name, _EXPORT_REVISION)
        try:
            config = config or DOCUMENTED.get(hub_id or "", {}).get("export_config", "default")
            builder = datasets.load_dataset_builder(
                name, data_dir=config, revision=_EXPORT_REVISION, cache_dir=cache_dir
            )
        except FileNotFoundError as missing:
            raise ValueError(
                f"the parquet export of {name} has no config folder {config!r}: pass its config with "
                "--dataset_config_name (e.g. 320px for frgfm/imagenette)"
            ) from missing
    return BuilderSource(builder, name, hub_id, _repo_id2label(name, root))


def _export_configs(root: Path) -> list[str]:
    """The config folders of a local copy of a parquet export (`<config>/<split>/NNNN.parquet`), else []."""
    if (root / "README.md").exists():
        return []
    return sorted(d.name for d in root.iterdir() if d.is_dir() and next(d.glob("*/*.parquet"), None) is not None)


def _repo_id2label(name: str, root: Path | None) -> dict[int, str] | None:
    """A repository's `id2label.json` (segments/sidewalk-semantic), or None. Its ids are the label map's values,
    0 being "unlabeled": as the model's ids they are read after reduce-labels (value v is id v - 1)."""
    if root is not None:
        path = root / "id2label.json"
    else:
        try:
            path = Path(huggingface_hub.hf_hub_download(name, "id2label.json", repo_type="dataset"))
        except Exception:  # noqa: BLE001 - most repositories have none; offline there is none to read
            return None
    if not path.is_file():
        return None
    raw = {int(k): v for k, v in json.loads(path.read_text()).items()}
    return {k - 1: v for k, v in sorted(raw.items()) if k > 0}
