"""Config validation, input handling, outputs and training-time behaviour."""

import pytest
import torch
from conftest import TINY, tiny_config

from pvt_hf import PRESETS, PvtBackbone, PvtConfig, PvtForImageClassification, PvtModel

# ---------------------------------------------------------------- config


def test_table6_ablation_rows_are_configs_not_forks():
    """v2 paper, Table 6: PVT-Small -> +OPE -> ++CFFN (= PVTv2-B2) -> +++LSRA (= PVTv2-B2-Li)."""
    small = PvtConfig.from_preset("pvt-small")
    ope = PvtConfig.from_preset("pvt-small", overlapping_patch_embed=True)
    cffn = PvtConfig.from_preset(
        "pvt-small",
        overlapping_patch_embed=True,
        conv_ffn=True,
        absolute_pos_embed=False,
        pooling="mean",
        stage_norms=True,
    )
    lsra = PvtConfig.from_preset("pvt-v2-b2", linear_sra=True)
    with torch.device("meta"):
        counts = [sum(p.numel() for p in PvtForImageClassification(c).parameters()) for c in (small, ope, cffn, lsra)]
    assert counts[0] == 24_485_864 and counts[2] == 25_362_856 and counts[3] == 22_553_512
    assert counts[0] < counts[1]  # OPE's larger kernels add parameters
    model = PvtForImageClassification(PvtConfig.from_preset("pvt-small", overlapping_patch_embed=True, **TINY)).eval()
    assert model.pvt.encoder.stages[0].patch_embed.proj.kernel_size == (7, 7)
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 1000)


def test_presets_carry_imagenet_labels_and_unknown_preset_lists_valid_ones():
    config = PvtConfig.from_preset("pvt-v2-b0")
    assert config.num_labels == 1000 and config.id2label[0] == "tench, Tinca tinca"
    assert PvtConfig.from_preset("pvt-v2-b0", num_labels=5).num_labels == 5
    with pytest.raises(ValueError, match="pvt-v2-b2-li") as error:
        PvtConfig.from_preset("pvt-v3")
    assert all(name in str(error.value) for name in PRESETS)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(hidden_sizes=[16, 32, 42, 64]), r"hidden_sizes\[2\] = 42 is not divisible by num_attention_heads\[2\]"),
        (dict(depths=[1, 1, 1]), "sr_ratios|patch_sizes|hidden_sizes"),
        (dict(mlp_ratios=[4, 4, 4]), "mlp_ratios has 3 entries"),
        (dict(sr_ratios=[8, 4, 0, 1]), "sr_ratios must hold positive integers"),
        (dict(depths="2222"), "depths must be a non-empty list"),
        (dict(pooling="max"), "pooling must be 'cls' or 'mean'"),
        (dict(pooling="cls"), "pooling='cls'"),  # with v2's conv FFN
        (dict(absolute_pos_embed=True, image_size=100), "image_size"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(num_channels=0), "num_channels"),
    ],
)
def test_invalid_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        PvtConfig(**{**TINY, **overrides})


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config("v1", out_features=["stage2", "stage4"])
    config.save_pretrained(tmp_path)
    loaded = PvtConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict() and loaded.out_indices == [1, 3]


# ---------------------------------------------------------------- inputs


@pytest.mark.parametrize("size", [(32, 32), (225, 301), (33, 95)])
def test_any_input_size_floors_like_strided_convs(family, size):
    config = tiny_config(family)
    model = PvtModel(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size), output_hidden_states=True)
    height, width = size
    for stage, feature_map in enumerate(out.hidden_states):
        stride = config.patch_sizes[stage]
        if config.overlapping_patch_embed:  # kernel 2S-1, padding S-1
            height, width = (height - 1) // stride + 1, (width - 1) // stride + 1
        else:
            height, width = height // stride, width // stride
        assert feature_map.shape == (1, config.hidden_sizes[stage], height, width)
    assert out.last_hidden_state.shape == out.hidden_states[-1].shape


@pytest.mark.slow
@pytest.mark.parametrize("size", [(800, 1216), (1333, 800)])
def test_detection_resolutions(size):
    model = PvtBackbone(tiny_config("v1", out_features=["stage1", "stage4"])).eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, *size)).feature_maps
    assert [m.shape[-2:] for m in maps] == [(size[0] // 4, size[1] // 4), (size[0] // 32, size[1] // 32)]


@pytest.mark.parametrize(
    "pixels, message",
    [
        (torch.randn(1, 1, 64, 64), r"\(batch, 3, height, width\).*1 channels"),
        (torch.randn(3, 64, 64), "4-D tensor"),
        (torch.randn(1, 3, 31, 64), "at least 32x32"),
        (torch.randn(1, 3, 64, 16), "at least 32x32"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_expected_shape(pixels, message):
    for model in (PvtForImageClassification(tiny_config("v2")), PvtBackbone(tiny_config("v1"))):
        with pytest.raises(ValueError, match=message):
            model(pixels)


# ---------------------------------------------------------------- outputs


def test_outputs_follow_hf_conventions(family):
    config = tiny_config(family)
    model = PvtForImageClassification(config).eval()
    pixels = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(pixels, output_hidden_states=True, output_attentions=True)
        as_tuple = model(pixels, output_hidden_states=True, output_attentions=True, return_dict=False)
        plain = model(pixels)
    assert out.logits.shape == (2, 10)
    assert len(out.hidden_states) == 4 and len(out.attentions) == sum(config.depths)
    assert plain.hidden_states is None and plain.attentions is None
    assert torch.equal(as_tuple[0], out.logits) and len(as_tuple) == 3
    probs = out.attentions[0]
    queries = out.hidden_states[0].shape[-2] * out.hidden_states[0].shape[-1]
    keys = 49 if config.linear_sra else queries // config.sr_ratios[0] ** 2
    assert probs.shape == (2, config.num_attention_heads[0], queries, keys)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))
    if config.pooling == "cls":  # the class token attends in stage 4
        assert out.attentions[-1].shape[-1] == out.hidden_states[-1].shape[-2] * out.hidden_states[-1].shape[-1] + 1
    base = PvtModel(config).eval()
    with torch.no_grad():
        base_out = base(pixels)
    assert base_out.pooler_output.shape == (2, config.hidden_sizes[-1])


def test_backbone_out_features_strides_and_channels(family):
    config = tiny_config(family, out_indices=[0, 2, 3])
    backbone = PvtBackbone(config).eval()
    assert backbone.out_features == ["stage1", "stage3", "stage4"]
    assert backbone.channels == [16, 40, 64]
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 160), output_hidden_states=True)
    assert [tuple(m.shape) for m in out.feature_maps] == [(1, 16, 32, 40), (1, 40, 8, 10), (1, 64, 4, 5)]
    assert len(out.hidden_states) == 4
    assert not hasattr(backbone, "cls_token") and not hasattr(backbone, "norm")


@pytest.mark.parametrize(
    "problem_type, labels",
    [
        ("single_label_classification", torch.tensor([1, 7])),
        ("multi_label_classification", torch.tensor([[0.0] * 9 + [1.0], [1.0] * 10])),
        ("regression", None),
    ],
)
def test_loss_follows_transformers_problem_type(problem_type, labels):
    num_labels = 1 if problem_type == "regression" else 10
    model = PvtForImageClassification(tiny_config("v2", num_labels=num_labels))
    labels = torch.tensor([0.5, -1.0]) if labels is None else labels
    out = model(torch.randn(2, 3, 64, 64), labels=labels)
    assert model.config.problem_type is None  # decided per call, never written into the config
    expected = {
        "single_label_classification": lambda: torch.nn.functional.cross_entropy(out.logits, labels),
        "multi_label_classification": lambda: torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels),
        "regression": lambda: torch.nn.functional.mse_loss(out.logits.squeeze(), labels),
    }[problem_type]()
    torch.testing.assert_close(out.loss, expected)


# ---------------------------------------------------------------- training


def test_stochastic_depth_is_linear_over_all_blocks_and_only_in_training():
    # the official code: dpr = linspace(0, drop_path_rate, sum(depths)), block i of the whole network takes dpr[i]
    config = tiny_config("v2", drop_path_rate=0.3, depths=[1, 1, 2, 1])
    model = PvtForImageClassification(config)
    rates = [[round(block.drop_path_rate, 6) for block in stage.blocks] for stage in model.pvt.encoder.stages]
    assert rates == [[0.0], [0.075], [0.15, 0.225], [0.3]]
    with torch.device("meta"):  # pvt-v2-b2 at the paper's 0.1: 16 blocks, i / 15 * 0.1
        b2 = PvtForImageClassification(PvtConfig.from_preset("pvt-v2-b2", drop_path_rate=0.1))
    assert [stage.blocks[-1].drop_path_rate for stage in b2.pvt.encoder.stages] == pytest.approx(
        [0.2 / 15, 0.6 / 15, 1.2 / 15, 0.1]
    )
    pixels = torch.randn(4, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(pixels).logits, model(pixels).logits)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.equal(model(pixels).logits, model(pixels).logits)


def test_initialisation_follows_the_official_code():
    v2 = PvtForImageClassification(PvtConfig.from_preset("pvt-v2-b0"))
    conv = v2.pvt.encoder.stages[0].patch_embed.proj  # normal(0, sqrt(2 / fan_out)), fan_out = 7 * 7 * 32
    assert conv.weight.std().item() == pytest.approx((2 / (7 * 7 * 32)) ** 0.5, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    fc1 = v2.pvt.encoder.stages[2].blocks[0].mlp.fc1
    # trunc_normal_(std=.02) as timm/the official code call it truncates at +-2 absolute, i.e. not at all here
    assert fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(fc1.bias) == 0
    v1 = PvtModel(tiny_config("v1"))
    conv = v1.encoder.stages[0].patch_embed.proj  # PyTorch's default: kaiming-uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))
    assert conv.weight.abs().max().item() <= (1 / (3 * 4 * 4)) ** 0.5 + 1e-6
    assert conv.weight.std().item() == pytest.approx((1 / (3 * 4 * 4)) ** 0.5 / 3**0.5, rel=0.15)
    assert v1.cls_token.std().item() == pytest.approx(0.02, rel=0.3)


def test_gradient_checkpointing_gives_the_same_gradients(family):
    config = tiny_config(family)
    torch.manual_seed(0)
    model = PvtForImageClassification(config).train()
    pixels, labels = torch.randn(2, 3, 64, 64), torch.tensor([1, 2])
    model(pixels, labels=labels).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable()
    assert all(block.gradient_checkpointing for s in model.pvt.encoder.stages for block in s.blocks)
    model(pixels, labels=labels).loss.backward()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, plain[name], msg=name)


def test_a_few_optimizer_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = PvtForImageClassification(tiny_config("v2", num_labels=2)).train()
    pixels = torch.randn(8, 3, 32, 32)
    labels = torch.tensor([0, 1] * 4)
    pixels[labels == 1] += 1.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = model(pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
