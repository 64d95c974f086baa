"""Fast paths compute the same function: torch.compile vs eager, bf16 autocast vs fp32, the memory-saving training
path vs transformers' gradients."""

import pytest
import torch
from conftest import tiny_config, transformers_reference

from pvt_hf import PvtBackbone, PvtForImageClassification, conversion
from pvt_hf.modeling_pvt import PvtAttention, PvtMlp, tokens_to_map


@pytest.mark.slow
@pytest.mark.parametrize("family", ["v1", "v2-li"])  # v1: position-table interpolation; v2-li: pooling + 1x1 SR
def test_compiled_fullgraph_equals_eager(family):
    """fullgraph=True fails on any graph break, so this also proves the backbone compiles as one graph.
    dynamic=False: under dynamic shapes Inductor (torch 2.13) fails to lower the convolutions over PVT's symbolic
    grid sizes ("ValueRangeError: Invalid ranges"), so each input size gets its own static graph."""
    torch._dynamo.reset()
    model = PvtBackbone(tiny_config(family, out_indices=[0, 1, 2, 3])).eval()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    for size in [(96, 128), (64, 64)]:  # the second size re-traces (new grid, new interpolation)
        pixels = torch.randn(2, 3, *size)
        with torch.no_grad():
            expected, actual = model(pixels).feature_maps, compiled(pixels).feature_maps
        for exp, act in zip(expected, actual, strict=True):
            torch.testing.assert_close(act, exp, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["v1", "v2", "v2-li"])
def test_bf16_autocast_stays_close_to_fp32(family):
    """bf16 has an 8-bit mantissa (~0.4% per rounding); the eager attention softmax runs in fp32 and SDPA
    accumulates in fp32, so the whole network stays within 2% relative error (documented tolerance)."""
    torch.manual_seed(0)
    model = PvtForImageClassification(tiny_config(family)).eval()
    pixels = torch.randn(4, 3, 96, 128)
    with torch.no_grad():
        reference = model(pixels).logits
        for implementation in ("sdpa", "eager"):
            model.set_attn_implementation(implementation)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(pixels).logits
            assert logits.dtype == torch.bfloat16
            relative = ((logits.float() - reference).norm() / reference.norm()).item()
            assert relative < 2e-2, (implementation, relative)


def test_eager_softmax_is_fp32_under_bf16():
    model = PvtForImageClassification(tiny_config("v2", attn_implementation="eager")).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attentions = model(torch.randn(1, 3, 64, 64), output_attentions=True).attentions
    # probabilities are computed in fp32 and cast back: rows still sum to one to bf16 precision
    sums = attentions[0].float().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-2, rtol=0)


def _gradients(model, pixels, labels, forward=None):
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy((model if forward is None else forward)(pixels).logits, labels).backward()
    return {name: param.grad for name, param in model.named_parameters()}


def test_training_gradients_match_transformers(family):
    """The training path (SDPA's backward, the MLP's recomputed activation) gives transformers' gradients, mapped
    through the converter's key names."""
    torch.manual_seed(0)
    config = tiny_config(family)
    reference = transformers_reference(config).train()
    state_dict, config, _ = conversion.convert_state_dict(reference.state_dict(), "transformers", config=config)
    model = PvtForImageClassification(config).train()
    model.load_state_dict(state_dict, strict=True)
    pixels, labels = torch.randn(2, 3, 224, 224), torch.tensor([1, 7])
    expected, _, _ = conversion.convert_state_dict(_gradients(reference, pixels, labels), "transformers", config=config)
    actual = _gradients(model, pixels, labels)
    assert actual.keys() == expected.keys()
    for name, grad in actual.items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)
    assert max(g.abs().max() for g in actual.values()) > 1e-3  # a meaningful comparison, not of zeros


def test_few_keys_take_matmul_attention_with_sdpa_s_outputs_and_gradients(family, monkeypatch):
    """On CPU, attention over at most `PvtAttention.matmul_max_keys` keys runs as matmul -> softmax -> matmul (SDPA's
    kernel is slower there); in float64 it computes SDPA's function to rounding, forward and backward."""
    calls = []

    def counted_sdpa(*args, **kwargs):
        calls.append(args[1].shape[-2])
        return sdpa(*args, **kwargs)

    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted_sdpa)
    torch.manual_seed(0)
    model = PvtForImageClassification(tiny_config(family, drop_path_rate=0.0)).double().train()
    pixels, labels = torch.randn(2, 3, 96, 128, dtype=torch.float64), torch.tensor([1, 2])
    outputs = []

    def forward(x):
        outputs.append(model(x))
        return outputs[-1]

    matmul = _gradients(model, pixels, labels, forward)
    assert calls == []  # 96x128: at most 12 keys in every stage (7x7 = 49 for linear SRA)
    monkeypatch.setattr(PvtAttention, "matmul_max_keys", 0)
    fused = _gradients(model, pixels, labels, forward)
    assert len(calls) == sum(model.config.depths)
    torch.testing.assert_close(outputs[0].logits, outputs[1].logits, rtol=1e-10, atol=1e-12)
    for name, grad in matmul.items():
        torch.testing.assert_close(grad, fused[name], rtol=1e-10, atol=1e-12, msg=name)


def test_recomputed_activation_keeps_gradients_and_saves_memory():
    """fc2(act(h)) stores h only: one tensor fewer of the MLP's widest size, same gradients as the plain ops, also
    under bf16 autocast (fp32 gradients for fp32 weights)."""
    torch.manual_seed(0)
    mlp = PvtMlp(tiny_config("v2"), stage=0)
    tokens = torch.randn(2, 64, mlp.fc1.in_features, requires_grad=True)

    def run(plain: bool):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            if plain:
                mlp.eval()  # dropout off, and grad enabled: ActivationThenLinear takes over only where it is given
                hidden = mlp.dwconv(tokens_to_map(mlp.fc1(tokens), 8, 8)).flatten(2).transpose(1, 2)
                out = mlp.fc2(mlp.act(hidden))
            else:
                out = mlp(tokens, 8, 8)
        grads = torch.autograd.grad(out.square().sum(), [tokens, *mlp.parameters()])
        return grads, sum(saved)

    plain_grads, plain_saved = run(plain=True)
    fused_grads, fused_saved = run(plain=False)
    for plain, fused in zip(plain_grads, fused_grads, strict=True):
        torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    widest = 2 * 64 * mlp.fc1.out_features
    assert plain_saved - fused_saved >= widest
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mlp(tokens, 8, 8)
    grads = torch.autograd.grad(out.float().square().sum(), [tokens, *mlp.parameters()])
    assert all(g.dtype == torch.float32 for g in grads[1:])
    for plain, bf16 in zip(plain_grads, grads, strict=True):
        assert ((bf16.float() - plain).norm() / plain.norm()).item() < 5e-2


@pytest.mark.slow
def test_compiled_training_step_equals_eager():
    """forward + backward compile as one graph (fullgraph=True), the recomputed activation included."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = PvtForImageClassification(tiny_config("v2-li")).train()
    pixels, labels = torch.randn(2, 3, 64, 96), torch.tensor([3, 4])
    expected = _gradients(model, pixels, labels)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    actual = _gradients(model, pixels, labels, forward=compiled)
    for name, grad in expected.items():
        torch.testing.assert_close(actual[name], grad, atol=1e-5, rtol=1e-4, msg=name)
