"""pvt_hf folders loaded by Hub repo id over HTTP, from a local Hub mirror (`hub_mirror.HubMirror`, HF_ENDPOINT pointed
at it, an empty HF_HOME): the Auto classes, the image processors and pipeline() with pvt_hf imported, and in a clean
process without pvt_hf through the repositories' own code (trust_remote_code=True); `revision=` an older commit gives
its weights; then the same loads from the warm cache with HF_HUB_OFFLINE=1 and the server stopped. transformers'
AutoBackbone asks the Hub's model API whether the name is a Hub repository before loading (else it tries timm), so it
loads by Hub id online only and never from a local folder: the backbone classes themselves load from both."""

import conftest  # noqa: F401  (HF_HUB_OFFLINE for this process; the loading processes get their own)
import pytest
import torch
from conftest import tiny_config
from hub_mirror import HubMirror
from tiny_heads import segmentation_model

from pvt_hf import PvtBackbone, PvtForImageClassification, PvtHfImageProcessor, PvtSegmentationImageProcessor
from pvt_hf.hub import _card

CLASSIFIER, SEGMENTER = "org/pvt-classifier", "org/pvt-semantic-fpn"
PIXELS = torch.linspace(-1, 1, 3 * 56 * 56).reshape(1, 3, 56, 56)

LOAD_BY_ID = """
    import json, sys
    import numpy as np
    import torch
    from PIL import Image
    from transformers import (
        AutoBackbone, AutoConfig, AutoImageProcessor, AutoModelForImageClassification,
        AutoModelForSemanticSegmentation, pipeline,
    )
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    classifier_id, segmenter_id, first_commit, with_pvt_hf, folder = sys.argv[1:6]
    with_pvt_hf = with_pvt_hf == "1"
    remote = {} if with_pvt_hf else {"trust_remote_code": True}  # pvt_hf's own classes, or the repositories' code
    if with_pvt_hf:
        from pvt_hf import PvtBackbone as backbone_class
    else:
        auto_map = AutoConfig.from_pretrained(classifier_id, **remote).auto_map
        backbone_class = get_class_from_dynamic_module(auto_map["AutoBackbone"], classifier_id)
    pixels = torch.linspace(-1, 1, 3 * 56 * 56).reshape(1, 3, 56, 56)
    image = Image.fromarray(np.arange(64 * 80 * 3, dtype=np.uint8).reshape(64, 80, 3))
    with torch.no_grad():
        latest = AutoModelForImageClassification.from_pretrained(classifier_id, **remote).eval()
        first = AutoModelForImageClassification.from_pretrained(classifier_id, revision=first_commit, **remote).eval()
        segmenter = AutoModelForSemanticSegmentation.from_pretrained(segmenter_id, **remote).eval()
        backbone = backbone_class.from_pretrained(classifier_id, out_indices=[0, 3])
        maps = [tuple(m.shape) for m in backbone(pixels).feature_maps]
        logits = [m(pixel_values=pixels).logits[0].tolist() for m in (latest, first)]
        segmentation = segmenter(pixel_values=pixels).logits.sum().item()
    processors = [AutoImageProcessor.from_pretrained(i, **remote) for i in (classifier_id, segmenter_id)]
    classify = pipeline("image-classification", model=classifier_id, **remote)
    segment = pipeline("image-segmentation", model=segmenter_id, **remote)
    auto_backbone = {}
    for name in (classifier_id, folder):  # by Hub id, and a local copy of the same repository
        try:
            AutoBackbone.from_pretrained(name, **remote)
            auto_backbone[name] = "loaded"
        except Exception as error:
            auto_backbone[name] = type(error).__name__
    objects = (latest, first, segmenter, backbone, *processors, classify.model, classify.image_processor, segment.model)
    print(json.dumps({
        "classes": [f"{type(o).__module__}.{type(o).__name__}" for o in objects],
        "logits": logits,
        "segmentation": segmentation,
        "feature_maps": maps,
        "top_label": classify(image, top_k=1)[0]["label"],
        "segments": len(segment(image)),
        "auto_backbone": auto_backbone,
    }))
"""


@pytest.fixture(scope="module")
def repositories(tmp_path_factory):
    """Two commits of a classifier (other weights) and a Semantic FPN folder, each with its processor."""
    root = tmp_path_factory.mktemp("repositories")
    classifiers = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = PvtForImageClassification(tiny_config(num_labels=3)).eval()
        model.save_pretrained(root / f"classifier-{seed}")
        PvtHfImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}).save_pretrained(
            root / f"classifier-{seed}"
        )
        classifiers.append(model)
    torch.manual_seed(2)
    segmenter = segmentation_model("semantic_fpn").eval()
    segmenter.save_pretrained(root / "segmenter")
    PvtSegmentationImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root / "segmenter")
    return root, classifiers, segmenter


@pytest.mark.slow
@pytest.mark.parametrize("with_pvt_hf", [True, False], ids=["pvt_hf", "remote_code"])
def test_folders_load_by_hub_id_then_offline_from_the_warm_cache(tmp_path, fresh_python, repositories, with_pvt_hf):
    root, classifiers, segmenter = repositories
    hub = HubMirror()
    hub.add(CLASSIFIER, root / "classifier-0")
    hub.add(CLASSIFIER, root / "classifier-1")  # main now
    hub.add(SEGMENTER, root / "segmenter")
    args = (CLASSIFIER, SEGMENTER, hub.commit_of(CLASSIFIER, 0), int(with_pvt_hf), root / "classifier-1")
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "0"}
    with hub:
        online = fresh_python(LOAD_BY_ID, *args, with_pvt_hf=with_pvt_hf, env=env)
    offline = fresh_python(LOAD_BY_ID, *args, with_pvt_hf=with_pvt_hf, env={**env, "HF_HUB_OFFLINE": "1"})

    with torch.no_grad():
        latest, first = (model(pixel_values=PIXELS).logits[0] for model in reversed(classifiers))
        segmentation = segmenter(pixel_values=PIXELS).logits.sum()
    for loaded in (online, offline):
        torch.testing.assert_close(torch.tensor(loaded["logits"]), torch.stack([latest, first]))  # main, revision=
        assert loaded["segmentation"] == pytest.approx(segmentation.item(), rel=1e-5)
        assert loaded["feature_maps"] == [[1, 16, 14, 14], [1, 64, 2, 2]]
        assert loaded["top_label"] in classifiers[1].config.label2id and loaded["segments"] >= 1
        modules, names = zip(*(c.rsplit(".", 1) for c in loaded["classes"]), strict=True)
        assert names == (
            *("PvtForImageClassification", "PvtForImageClassification", "PvtForSemanticSegmentation", "PvtBackbone"),
            *("PvtHfImageProcessor", "PvtSegmentationImageProcessor", "PvtForImageClassification"),
            *("PvtHfImageProcessor", "PvtForSemanticSegmentation"),
        )
        owner = "pvt_hf." if with_pvt_hf else "transformers_modules.org."
        assert all(module.startswith(owner) for module in modules), modules
    assert not torch.allclose(latest, first)  # the two commits differ
    # AutoBackbone: by Hub id online only; a local folder's path is no repo id, so never (online or offline)
    folder = str(root / "classifier-1")
    assert online["auto_backbone"] == {CLASSIFIER: "loaded", folder: "HFValidationError"}
    assert offline["auto_backbone"] == {CLASSIFIER: "OfflineModeIsEnabled", folder: "HFValidationError"}
    if not with_pvt_hf:  # every code file of both repositories came from the mirror
        fetched = {request.split(" ", 1)[1] for request in hub.requests if request.startswith("GET")}
        for repo, folder in ((CLASSIFIER, root / "classifier-1"), (SEGMENTER, root / "segmenter")):
            code = {path.name for path in folder.glob("*.py")}
            assert code and all(
                any(f.startswith(f"/{repo}/resolve/") and f.endswith(f"/{name}") for f in fetched) for name in code
            ), (repo, code)


@pytest.mark.slow
def test_the_backbone_cards_code_loads_a_local_folder_without_pvt_hf(tmp_path, fresh_python):
    folder = tmp_path / "backbone"
    PvtBackbone(tiny_config(num_labels=0)).save_pretrained(folder)
    PvtHfImageProcessor().save_pretrained(folder)
    card = _card("t", "body", "image-feature-extraction", str(folder), "AutoBackbone")
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    loaded = fresh_python(code + "import json\nprint(json.dumps([type(model).__module__, type(model).__name__]))")
    assert loaded[0].startswith("transformers_modules.") and loaded[1] == "PvtBackbone"
