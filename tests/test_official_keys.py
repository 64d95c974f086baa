"""The official checkpoints' tensor names and shapes, pinned by literal lists written by hand from the official model
definitions (`official_keys.txt`; github.com/whai362/PVT at 57e2dfa), not derived from pvt_hf's key tables: the
converter must take exactly these, and exporting pvt_hf to the official layout must give exactly these."""

from pathlib import Path

import pytest
import torch

from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification
from pvt_hf.conversion import ConversionError, convert_state_dict, official_to_pvt_hf, preset_for, pvt_hf_to_official

# section of official_keys.txt: (depths, preset)
LAYOUTS = {
    "pvt_tiny": ((2, 2, 2, 2), "pvt-tiny"),
    "pvt_v2_b0": ((2, 2, 2, 2), "pvt-v2-b0"),
    "pvt_v2_b2_li": ((3, 4, 6, 3), "pvt-v2-b2-li"),
}
# The mmdetection / mmsegmentation backbones (detection/pvt.py, segmentation/pvt.py, detection/pvt_v2.py) keep the
# same names under `backbone.` and drop the classifier's tensors: v1 its norm, cls_token and head (pos_embed4 keeps
# the class token's row), v2 its head.
MM_DROPPED = {"pvt_tiny": {"norm", "cls_token", "head"}, "pvt_v2_b0": {"head"}, "pvt_v2_b2_li": {"head"}}


def listing(layout: str) -> list[str]:
    """The lines of `layout`'s section of official_keys.txt."""
    text = (Path(__file__).parent / "official_keys.txt").read_text()
    section = text.split(f"[{layout}]\n")[1].split("\n[")[0]
    return [line for line in section.splitlines() if line and not line.startswith("#")]


def official_keys(layout: str, mm: bool = False) -> dict[str, tuple[int, ...]]:
    """The listing of `layout` expanded: every tensor name with its shape."""
    depths = LAYOUTS[layout][0]
    keys = {}
    for line in listing(layout):
        if mm and line.split()[0] in MM_DROPPED[layout]:
            continue
        name, *shapes = line.split()
        shapes = [tuple(int(n) for n in shape.split("x")) for shape in shapes]
        names = [name] if len(shapes) == 1 else [f"{name}.weight", f"{name}.bias"]
        for full_name, shape in zip(names, shapes, strict=True):
            if full_name.startswith("block"):
                stage = int(full_name[len("block")])
                keys |= {full_name.replace(".0.", f".{b}.", 1): shape for b in range(depths[stage - 1])}
            else:
                keys[full_name] = shape
    return keys


def meta_tensors(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}


def shapes_of(state_dict) -> dict[str, tuple[int, ...]]:
    return {name: tuple(tensor.shape) for name, tensor in state_dict.items()}


def pvt_hf_model(layout: str, mm: bool):
    preset = LAYOUTS[layout][1]
    with torch.device("meta"):
        if mm:
            return PvtBackbone(PvtConfig.from_preset(preset, out_features=["stage1", "stage2", "stage3", "stage4"]))
        return PvtForImageClassification(PvtConfig.from_preset(preset))


@pytest.mark.parametrize("mm", [False, True], ids=["classification", "mm-backbone"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_official_keys_map_one_to_one_onto_pvt_hf(layout, mm):
    official = official_keys(layout, mm)
    model = pvt_hf_model(layout, mm)
    expected = shapes_of(model.state_dict())
    mapped, unused = official_to_pvt_hf(official)
    assert not unused
    assert len(mapped) == len(official)  # no two official names onto one
    if mm:
        mapped = {k.removeprefix("pvt."): v for k, v in mapped.items()}
    assert mapped == expected


@pytest.mark.parametrize("mm", [False, True], ids=["classification", "mm-backbone"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_checkpoint_with_official_keys_converts_exactly(layout, mm):
    official = official_keys(layout, mm)
    checkpoint = {f"backbone.{k}": v for k, v in meta_tensors(official).items()} if mm else meta_tensors(official)
    state_dict, config, report = convert_state_dict(checkpoint, "official", task="backbone" if mm else "classification")
    assert report.ok and not report.unused_keys, report.summary()
    assert preset_for(config.to_dict()) == LAYOUTS[layout][1]  # the variant is read off the weights
    assert shapes_of(state_dict) == shapes_of(pvt_hf_model(layout, mm).state_dict())


@pytest.mark.parametrize("mm", [False, True], ids=["classification", "mm-backbone"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_export_to_official_layout_gives_the_official_keys(layout, mm):
    assert shapes_of(pvt_hf_to_official(pvt_hf_model(layout, mm).state_dict())) == official_keys(layout, mm)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_renamed_official_key_is_refused(layout):
    """What makes the tests above able to fail: the conversion refuses a checkpoint with one name spelled otherwise."""
    official = official_keys(layout)
    convert_state_dict(meta_tensors(official), "official")  # as spelled: accepted
    for name in (
        "patch_embed2.proj.weight",
        "block1.0.attn.kv.weight",
        f"block4.{LAYOUTS[layout][0][3] - 1}.mlp.fc2.bias",
        "head.weight",
    ):
        renamed = dict(official)
        renamed[name.replace(".", "_", 1)] = renamed.pop(name)
        with pytest.raises(ConversionError):
            convert_state_dict(meta_tensors(renamed), "official")
