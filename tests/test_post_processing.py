"""Every head's post-processing, pinned with known logits and compared with transformers' own processor for its
architecture: DETR (a softmax over the classes and "no object", whose column is dropped), Deformable DETR (a sigmoid
per class, the top k over queries x classes), Semantic FPN / UperNet label maps (SegFormer's), Mask2Former's semantic,
instance and panoptic outputs; in process, through the Auto classes and pipelines, through saved folders without
pvt_hf, and for folders saved before Deformable DETR had its own processor."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_heads import detection_model
from transformers import AutoImageProcessor, pipeline
from transformers.modeling_outputs import SemanticSegmenterOutput
from transformers.models.deformable_detr.image_processing_pil_deformable_detr import DeformableDetrImageProcessorPil
from transformers.models.deformable_detr.modeling_deformable_detr import DeformableDetrObjectDetectionOutput
from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil
from transformers.models.detr.modeling_detr import DetrObjectDetectionOutput
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil
from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentationOutput
from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil

from pvt_hf import (
    PvtDeformableDetrImageProcessor,
    PvtDetrImageProcessor,
    PvtMask2FormerImageProcessor,
    PvtSegmentationImageProcessor,
)

# ------------------------------------------------------------- detection: known logits

# 3 classes, 10 queries (tiny_heads' detectors): query 0 is sure of the last class, query 2 likes classes 0 and 1
# (logits 4 and 3), every other query is background; boxes (cx, cy, w, h) relative to the image, shown at TARGET
TARGET = (100, 200)  # (height, width)
BOXES = torch.tensor([[0.5, 0.5, 0.2, 0.4]] * 10)
BOXES[2] = torch.tensor([0.25, 0.75, 0.1, 0.1])
PIXEL_BOXES = {0: [80.0, 30.0, 120.0, 70.0], 2: [40.0, 70.0, 60.0, 80.0]}


def deformable_detr_logits() -> torch.Tensor:
    """One sigmoid logit per class; background: every class unlikely."""
    logits = torch.full((1, 10, 3), -10.0)
    logits[0, 0, 2] = 10.0
    logits[0, 2, :2] = torch.tensor([4.0, 3.0])
    return logits


def detr_logits() -> torch.Tensor:
    """A softmax over the 3 classes and "no object" (the last column); background: "no object" sure."""
    logits = torch.full((1, 10, 4), -10.0)
    logits[0, :, 3] = 10.0
    logits[0, 0] = torch.tensor([-10.0, -10.0, 10.0, -10.0])
    logits[0, 2] = torch.tensor([4.0, 3.0, -10.0, -10.0])
    return logits


def detection_outputs(kind: str):
    """The outputs as each head returns them (Deformable DETR's carry the decoder's initial reference points)."""
    if kind == "detr":
        return DetrObjectDetectionOutput(logits=detr_logits(), pred_boxes=BOXES[None])
    return DeformableDetrObjectDetectionOutput(
        logits=deformable_detr_logits(), pred_boxes=BOXES[None], init_reference_points=BOXES[None, :, :2]
    )


def softmax(logits: list[float], i: int) -> float:
    return math.exp(logits[i]) / sum(math.exp(x) for x in logits)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# (labels, scores, query of each box) at threshold 0.5, derived by hand from the logits above
EXPECTED = {
    # one detection per query, its most likely class; the background query (no-object sure) gives none
    "detr": ([2, 0], [softmax([-10, -10, 10, -10], 2), softmax([4, 3, -10, -10], 0)], [0, 2]),
    # the (query, class) pairs by score: the last class is found, query 2 gives two detections, background none
    "deformable": ([2, 0, 1], [sigmoid(10), sigmoid(4), sigmoid(3)], [0, 2, 2]),
}
REFERENCE = {"detr": DetrImageProcessorPil, "deformable": DeformableDetrImageProcessorPil}


def as_lists(result: dict) -> tuple:
    return result["labels"].tolist(), result["scores"].tolist(), result["boxes"].tolist()


def assert_expected(kind: str, result: tuple, top: int | None = None) -> None:
    labels, scores, queries = (values[:top] for values in EXPECTED[kind])
    assert result[0] == labels
    assert result[1] == pytest.approx(scores, abs=1e-6)
    torch.testing.assert_close(
        torch.tensor(result[2]), torch.tensor([PIXEL_BOXES[q] for q in queries]), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(
    "kind, processor",
    [
        ("detr", PvtDetrImageProcessor),
        ("deformable", PvtDeformableDetrImageProcessor),
        ("deformable", PvtDetrImageProcessor),  # an old folder's processor: the outputs' head decides
    ],
)
def test_detection_post_processing_is_the_heads_own(kind, processor):
    outputs = detection_outputs(kind)
    (result,) = processor().post_process_object_detection(outputs, threshold=0.5, target_sizes=[TARGET])
    assert_expected(kind, as_lists(result))
    (reference,) = REFERENCE[kind]().post_process_object_detection(outputs, threshold=0.5, target_sizes=[TARGET])
    assert as_lists(result) == as_lists(reference)


def test_deformable_detr_keeps_the_top_k_over_queries_and_classes():
    outputs = detection_outputs("deformable")
    (result,) = PvtDeformableDetrImageProcessor().post_process_object_detection(outputs, 0.5, [TARGET], top_k=2)
    assert_expected("deformable", as_lists(result), top=2)
    (reference,) = DeformableDetrImageProcessorPil().post_process_object_detection(outputs, 0.5, [TARGET], top_k=2)
    assert as_lists(result) == as_lists(reference)
    with pytest.raises(ValueError, match="post-process them with PvtDetrImageProcessor"):
        PvtDeformableDetrImageProcessor().post_process_object_detection(detection_outputs("detr"))


# ------------------------------------------------------------- detection: folders, Auto classes, pipelines


def sure_of_the_last_class(model):
    """`model` with every query's class logits set: the last class +10, the others (and DETR's "no object") -10."""
    heads = model.class_embed if hasattr(model, "class_embed") else [model.class_labels_classifier]
    with torch.no_grad():
        for head in heads:
            head.weight.zero_()
            head.bias.fill_(-10.0)
            head.bias[model.config.num_labels - 1] = 10.0
    return model.eval()


@pytest.fixture(scope="module")
def detection_folders(tmp_path_factory):
    """A DETR and a Deformable DETR folder, and a Deformable DETR folder as pvt_hf saved it before Deformable DETR
    had its own processor (the training script wrote PvtDetrImageProcessor next to every detector)."""
    root = tmp_path_factory.mktemp("detectors")
    labels = {0: "a", 1: "b", 2: "c"}
    folders = {}
    size = {"size": {"shortest_edge": 64, "longest_edge": 96}}  # small inputs keep the pipelines quick
    for name, kind, processor in (
        ("detr", "detr", PvtDetrImageProcessor(**size)),
        ("deformable", "deformable", PvtDeformableDetrImageProcessor(**size)),
        ("deformable_old", "deformable", PvtDetrImageProcessor(**size)),
    ):
        torch.manual_seed(0)
        sure_of_the_last_class(detection_model(kind, "v2", id2label=labels)).save_pretrained(root / name)
        processor.save_pretrained(root / name)
        folders[name] = root / name
    saved = json.loads((folders["deformable_old"] / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "PvtDetrImageProcessor"
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_pvt.PvtDetrImageProcessor"}
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (81, 103, 3), dtype=np.uint8))
    image.save(root / "image.png")
    torch.save({kind: detection_outputs(kind) for kind in EXPECTED}, root / "outputs.pt")
    return folders, image, root


@pytest.mark.parametrize(
    "name, kind, processor",
    [
        ("detr", "detr", PvtDetrImageProcessor),
        ("deformable", "deformable", PvtDeformableDetrImageProcessor),
        ("deformable_old", "deformable", PvtDetrImageProcessor),
    ],
)
def test_folders_auto_classes_and_pipelines_post_process_as_their_head(detection_folders, name, kind, processor):
    folders, image, _ = detection_folders
    for trust_remote_code in (False, True):  # with pvt_hf installed, its classes serve either way
        loaded = AutoImageProcessor.from_pretrained(folders[name], trust_remote_code=trust_remote_code)
        assert type(loaded) is processor
        (result,) = loaded.post_process_object_detection(detection_outputs(kind), 0.5, [TARGET])
        assert_expected(kind, as_lists(result))
    detect = pipeline("object-detection", model=str(folders[name]))
    found = detect(image, threshold=0.5)
    # every query is sure of the last class: 10 detections labelled "c" (DETR's post-processing on a Deformable DETR
    # read its last class as "no object" and found nothing)
    assert [d["label"] for d in found] == ["c"] * 10 and min(d["score"] for d in found) > 0.99
    with torch.no_grad():
        outputs = detect.model(**loaded(image, return_tensors="pt"))
    (reference,) = REFERENCE[kind]().post_process_object_detection(outputs, 0.5, [image.size[::-1]])
    assert [d["score"] for d in found] == pytest.approx(reference["scores"].tolist(), abs=1e-6)
    assert [list(d["box"].values()) for d in found] == reference["boxes"].int().tolist()


def test_an_old_deformable_detr_folder_upgrades_by_resaving_its_processor(detection_folders, tmp_path):
    folders, _, _ = detection_folders
    PvtDeformableDetrImageProcessor.from_pretrained(folders["deformable_old"]).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "PvtDeformableDetrImageProcessor"
    assert saved["auto_map"] == {"AutoImageProcessor": "image_processing_pvt.PvtDeformableDetrImageProcessor"}
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is PvtDeformableDetrImageProcessor


# the folders' remote code, in a process without pvt_hf: processor classes, known-logit results, pipeline answers
WITHOUT_PVT_HF = """
    import json, sys
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, pipeline
    root = sys.argv[1]
    outputs, image, seen = torch.load(f"{root}/outputs.pt", weights_only=False), Image.open(f"{root}/image.png"), {}
    for name, kind in (("detr", "detr"), ("deformable", "deformable"), ("deformable_old", "deformable")):
        processor = AutoImageProcessor.from_pretrained(f"{root}/{name}", trust_remote_code=True)
        (result,) = processor.post_process_object_detection(outputs[kind], 0.5, [(100, 200)])
        found = pipeline("object-detection", model=f"{root}/{name}", trust_remote_code=True)(image, threshold=0.5)
        seen[name] = {
            "processor": type(processor).__module__ + "." + type(processor).__name__,
            "result": [result[k].tolist() for k in ("labels", "scores", "boxes")],
            "pipeline": [[d["label"], d["score"], list(d["box"].values())] for d in found],
        }
    print(json.dumps(seen))
"""


def test_saved_folders_post_process_as_their_head_without_pvt_hf(detection_folders, fresh_python):
    folders, image, root = detection_folders
    seen = fresh_python(WITHOUT_PVT_HF, root)
    for name, kind in (("detr", "detr"), ("deformable", "deformable"), ("deformable_old", "deformable")):
        module, processor = seen[name]["processor"].rsplit(".", 1)
        assert module.startswith("transformers_modules.")
        assert processor == {"deformable": "PvtDeformableDetrImageProcessor"}.get(name, "PvtDetrImageProcessor")
        assert_expected(kind, tuple(seen[name]["result"]))
        in_process = pipeline("object-detection", model=str(folders[name]))(image, threshold=0.5)
        expected = [[d["label"], d["score"], list(d["box"].values())] for d in in_process]
        assert [d[0] for d in seen[name]["pipeline"]] == ["c"] * 10
        assert [(d[0], d[2]) for d in seen[name]["pipeline"]] == [(d[0], d[2]) for d in expected]
        assert [d[1] for d in seen[name]["pipeline"]] == pytest.approx([d[1] for d in expected], abs=1e-5)


# ------------------------------------------------------------- Semantic FPN / UperNet label maps


def test_semantic_fpn_and_upernet_label_maps_are_segformers():
    """Both heads return logits at stride 4 (SemanticSegmenterOutput): known logits for 5 classes on a 4x6 grid, the
    last class sure on the left half, class 0 on the right, class 2 in one cell."""
    logits = torch.full((1, 5, 4, 6), -10.0)
    logits[0, 4, :, :3] = 10.0
    logits[0, 0, :, 3:] = 10.0
    logits[0, 2, 0, 5], logits[0, 0, 0, 5] = 20.0, -10.0
    outputs = SemanticSegmenterOutput(logits=logits)
    expected = torch.tensor([[4, 4, 4, 0, 0, 0]] * 4)
    expected[0, 5] = 2
    reference = SegformerImageProcessorPil()
    # the processors the scripts save (ADE20K's reduce-labels changes the targets, never the predictions)
    for processor in (PvtSegmentationImageProcessor(), PvtSegmentationImageProcessor(do_reduce_labels=True)):
        (at_logits,) = processor.post_process_semantic_segmentation(outputs)  # the argmax
        assert torch.equal(at_logits, expected)
        assert torch.equal(at_logits, reference.post_process_semantic_segmentation(outputs)[0])
        # at an image's size: the logits upsampled (bilinear), then the argmax
        (label_map,) = processor.post_process_semantic_segmentation(outputs, target_sizes=[(40, 60)])
        assert torch.equal(label_map, reference.post_process_semantic_segmentation(outputs, [(40, 60)])[0])
        assert (label_map[:, :25] == 4).all() and (label_map[12:, 35:] == 0).all() and (label_map[:8, 52:] == 2).all()


# ------------------------------------------------------------- Mask2Former


def mask2former_outputs():
    """3 classes (+ "no object"), 4 queries, 8x12 masks: query 0 sure of the last class on the left half, query 2 of
    class 0 on the right half, queries 1 and 3 sure of "no object" (query 1's mask covers the whole image)."""
    classes = torch.full((1, 4, 4), -10.0)
    classes[0, 0, 2] = classes[0, 1, 3] = classes[0, 2, 0] = classes[0, 3, 3] = 10.0
    masks = torch.full((1, 4, 8, 12), -10.0)
    masks[0, 0, :, :6] = masks[0, 1] = masks[0, 2, :, 6:] = 10.0
    return Mask2FormerForUniversalSegmentationOutput(class_queries_logits=classes, masks_queries_logits=masks)


def test_mask2former_semantic_label_maps():
    """The last class on the left, class 0 on the right, "no object" nowhere; at 384x384 (where transformers' first
    step, masks to 384x384, is the identity) exactly transformers' label map; at other sizes the masks go straight
    to the target size (Mask2Former's own inference), the same regions."""
    outputs, reference = mask2former_outputs(), Mask2FormerImageProcessorPil()
    for size in ((384, 384), (40, 60)):
        (label_map,) = PvtMask2FormerImageProcessor().post_process_semantic_segmentation(outputs, [size])
        (theirs,) = reference.post_process_semantic_segmentation(outputs, [size])
        half = size[1] // 2
        assert (label_map[:, : half - 1] == 2).all() and (label_map[:, half + 1 :] == 0).all()
        assert (theirs[:, : half - 1] == 2).all() and (theirs[:, half + 1 :] == 0).all()
        if size == (384, 384):
            assert torch.equal(label_map, theirs)


@pytest.mark.parametrize("task", ["instance", "panoptic"])
def test_mask2former_instance_and_panoptic_segments(task):
    """Two segments, the last class on the left half and class 0 on the right, the "no object" queries none; as
    transformers' Mask2Former processor gives them."""
    outputs = mask2former_outputs()
    post_process = f"post_process_{task}_segmentation"
    (result,) = getattr(PvtMask2FormerImageProcessor(), post_process)(outputs, threshold=0.5, target_sizes=[(40, 60)])
    (theirs,) = getattr(Mask2FormerImageProcessorPil(), post_process)(outputs, threshold=0.5, target_sizes=[(40, 60)])
    assert result["segments_info"] == theirs["segments_info"]
    assert torch.equal(result["segmentation"], theirs["segmentation"])
    segment_of = {s["label_id"]: s["id"] for s in result["segments_info"]}
    assert sorted(segment_of) == [0, 2] and all(s["score"] > 0.99 for s in result["segments_info"])
    assert (result["segmentation"][:, :30] == segment_of[2]).all()
    assert (result["segmentation"][:, 30:] == segment_of[0]).all()
