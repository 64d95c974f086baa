"""The conv initialisation (`conv_init`) is a switch apart from the layout (`stage_norms`)."""

import hashlib
import json
import math

import pytest
import torch

from pvt_hf import PvtConfig, PvtForImageClassification


def seeded_model(name, **overrides):
    torch.manual_seed(0)
    return PvtForImageClassification(PvtConfig.from_preset(name, num_labels=10, **overrides))


# sha256 (first 16 hex digits) of the state dicts that seed 0 gave before conv_init existed (stage_norms decided it)
PRESET_WEIGHTS = {
    "pvt-tiny": "b3541b18135ddc9b",
    "pvt-v2-b0": "0cc1585775593d6e",
    "pvt-v2-b2-li": "70134f85bcc4f8f6",
}


@pytest.mark.parametrize("name", PRESET_WEIGHTS)
def test_presets_initialise_as_before_conv_init_existed(name):
    digest = hashlib.sha256()
    for key, tensor in seeded_model(name).state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    assert digest.hexdigest()[:16] == PRESET_WEIGHTS[name]


@pytest.mark.parametrize("name", ["pvt-tiny", "pvt-v2-b0"])
def test_flipping_stage_norms_leaves_the_initialisation_alone(name):
    preset = seeded_model(name)
    flipped = seeded_model(name, stage_norms=not preset.config.stage_norms)
    assert flipped.config.conv_init == preset.config.conv_init
    before, after = preset.state_dict(), flipped.state_dict()
    assert before.keys() != after.keys()  # the stage norms come or go (LayerNorms start at 1 / 0, drawing nothing)
    assert all(torch.equal(before[k], after[k]) for k in before.keys() & after.keys())


def conv_statistics(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    biases_zero = all(not m.bias.any() for m in convs if m.bias is not None)
    fan_in_bounded = all(m.weight.abs().max() <= 1 / math.sqrt(m.weight[0].numel()) for m in convs)
    return biases_zero, fan_in_bounded


@pytest.mark.parametrize("name", ["pvt-tiny", "pvt-v2-b0"])
def test_conv_init_alone_changes_only_the_initialisation(name):
    preset = seeded_model(name)
    other = "default" if preset.config.conv_init == "fan_out" else "fan_out"
    flipped = seeded_model(name, conv_init=other)
    # v2's fan-out normal has zero biases and tails beyond PyTorch's default uniform bound 1 / sqrt(fan_in)
    statistics = {m.config.conv_init: conv_statistics(m) for m in (preset, flipped)}
    assert statistics == {"fan_out": (True, False), "default": (False, True)}
    # the same architecture: one model's weights give the other the same outputs
    flipped.load_state_dict(preset.state_dict())
    pixels = torch.randn(1, 3, 64, 64)
    assert torch.equal(preset.eval()(pixels).logits, flipped.eval()(pixels).logits)


@pytest.mark.parametrize("stage_norms, conv_init", [(True, "fan_out"), (False, "default")])
def test_a_config_json_without_conv_init_keeps_its_initialisation(tmp_path, stage_norms, conv_init):
    PvtConfig(stage_norms=stage_norms, conv_init="default" if stage_norms else "fan_out").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "conv_init"}))
    assert PvtConfig.from_pretrained(tmp_path).conv_init == conv_init


def test_unknown_conv_init_is_refused():
    with pytest.raises(ValueError, match="conv_init"):
        PvtConfig(conv_init="xavier")
