"""Corners of real datasets met while resolving a source (`pvt_hf.data.load_splits`): split names carried by the file
names of a glob, the box format of a known dataset recognised by its schema (so a downloaded copy too) or, when
nothing declares it, which reading the boxes fit, and datasets that cannot be trained as they are, refused with an
alternative that works."""

from fnmatch import fnmatch
from pathlib import Path

from datasets.data_files import DEFAULT_PATTERNS_SPLIT_IN_FILENAME

# Known datasets by their exact schema (top-level columns, fields of `objects`) -> their Hub id, whose card's
# documented settings `pvt_hf.data.builders.DOCUMENTED` holds (https://huggingface.co/datasets/detection-datasets/coco)
KNOWN_SCHEMAS = {
    (("height", "image", "image_id", "objects", "width"), ("area", "bbox", "bbox_id", "category")): (
        "detection-datasets/coco"
    ),
}
# Hub ids whose data is not what the scripts train, and what to use instead
UNTRAINABLE = {
    "1aurent/ADE20K": "the full ADE20K (thousands of classes, instance masks), not the 150-class scene-parsing "
    "benchmark that Semantic FPN / UperNet train on: use --dataset_name scene_parse_150 (its parquet export is read)",
}


def splits_from_file_names(files: list[str]) -> dict[str, list[str]] | None:
    """`files` grouped by the split their names carry, by datasets' own rule (`train-00000.parquet`,
    `validation-*.parquet`, `val_*.parquet`, ...); None unless every file names exactly one split."""
    grouped = {}
    for file in files:
        name = Path(file).name
        found = [
            str(split)
            for split, patterns in DEFAULT_PATTERNS_SPLIT_IN_FILENAME.items()
            if any(fnmatch(name, pattern.removeprefix("**/")) for pattern in patterns)
        ]
        if len(found) != 1:
            return None
        grouped.setdefault(found[0], []).append(file)
    return grouped


def known_dataset_by_schema(features) -> str | None:
    """The Hub id of the known dataset whose exact schema `features` are (e.g. a downloaded copy), else None."""
    if not features:
        return None
    objects = features.get("objects")
    return KNOWN_SCHEMAS.get((tuple(sorted(features)), tuple(sorted(objects)) if isinstance(objects, dict) else ()))


def refuse_untrainable(dataset_name: str | None) -> None:
    if dataset_name and (reason := UNTRAINABLE.get(dataset_name.strip("/"))):
        raise ValueError(f"{dataset_name} cannot be trained as it is: it is {reason}")


def box_fits_image(box, size, fmt: str) -> bool:
    """Whether `box` read as `fmt` is a box inside an image of `size` (width, height), within 1% slack."""
    x, y, a, b = box
    width, height = (a - x, b - y) if fmt == "xyxy" else (a, b)
    slack = 1 + 0.01 * max(size)
    inside = x >= -slack and y >= -slack and x + width <= size[0] + slack and y + height <= size[1] + slack
    return width >= 0 and height >= 0 and inside


def undeclared_box_format(name: str, boxes: list) -> ValueError:
    """The error for undeclared boxes, saying which reading the first `boxes` ((box, (image width, height)) pairs)
    fit inside their images: xyxy, xywh, both (then the card must tell) or neither."""
    fit = [fmt for fmt in ("xyxy", "xywh") if boxes and all(box_fits_image(box, size, fmt) for box, size in boxes)]
    seen = (
        f"its first {len(boxes)} boxes fit their images only as {fit[0]}: pass --bbox_format {fit[0]}"
        if len(fit) == 1
        else f"its first {len(boxes)} boxes fit their images either way: check the dataset card"
        if fit
        else "no box could be read and placed in its image: check --annotation_column_name and the dataset card"
        if not boxes
        else f"its first {len(boxes)} boxes fit their images in neither reading: check the column and the card"
    )
    return ValueError(
        f"the box format of {name} is not declared ({seen}). --bbox_format xyxy: x_min, y_min, x_max, y_max; "
        "xywh: x_min, y_min, width, height, in pixels"
    )
