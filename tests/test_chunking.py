"""Inference runs the MLP in chunks (`PvtMlp.chunk_bytes` of hidden activations at a time): the same outputs as the
plain MLP at every input geometry, and training untouched."""

import pytest
import torch
from conftest import tiny_config
from torch.utils.flop_counter import FlopCounterMode

from pvt_hf import PvtBackbone, PvtConfig, PvtForImageClassification, PvtForSemanticSegmentation, PvtSegmentationConfig
from pvt_hf.modeling_pvt import FUSED_CONV_GELU, PvtMlp


@pytest.fixture
def chunk_counter(monkeypatch):
    """Counts the chunked MLP calls, their in-place linear writes (fc2 per chunk) and their samples computed in groups
    of hidden channels, with a budget of 512 KiB so that the tiny models chunk: at 224 one stage-1 sample (56x56
    tokens x 32 hidden x 4 bytes = 401 KiB) fits, two do not."""
    counts = {"mlp": 0, "linear writes": 0, "channel groups": 0}
    forward, linear_into, channel_groups = PvtMlp.forward_in_chunks, PvtMlp.linear_into, PvtMlp.run_channel_groups

    def counting_forward(self, *args):
        counts["mlp"] += 1
        return forward(self, *args)

    def counting_linear_into(linear, inputs, out):
        counts["linear writes"] += 1
        return linear_into(linear, inputs, out)

    def counting_channel_groups(self, *args):
        counts["channel groups"] += 1
        return channel_groups(self, *args)

    monkeypatch.setattr(PvtMlp, "chunk_bytes", 2**19)
    monkeypatch.setattr(PvtMlp, "run_channel_groups", counting_channel_groups)
    monkeypatch.setattr(PvtMlp, "forward_in_chunks", counting_forward)
    monkeypatch.setattr(PvtMlp, "linear_into", staticmethod(counting_linear_into))
    return counts


def assert_equal_to_1e6(actual, expected):
    """Max |difference| within 1e-6 of the outputs' scale. Not bitwise: ATen's GELU computes the last few elements
    of each thread's range with the scalar erf instead of the vectorised one, and those ranges move with the chunk
    sizes (as they do with the thread count); the networks carry such last-bit differences on."""
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= 1e-6 * expected.abs().max(), (actual - expected).abs().max()


@pytest.mark.parametrize("size", [(224, 224), (225, 301), (800, 1216)])
def test_chunked_mlp_equals_plain(family, size, chunk_counter):
    """v1 (runs of tokens, class token included), v2 (whole samples) and v2-li (ReLU before the conv); the reference
    is the plain MLP (gradient mode). With the conv, a sample larger than the budget runs in groups of hidden
    channels: at 225x301 stage 1 (57x76 tokens, 541 KiB), at 800x1216 stages 1-3."""
    torch.manual_seed(0)
    batch = 2 if size == (224, 224) else 1  # 224: several samples per MLP
    config = tiny_config(family, out_indices=[0, 1, 2, 3])
    model = (PvtForImageClassification if size == (224, 224) else PvtBackbone)(config).eval().requires_grad_(False)
    pixels = torch.randn(batch, 3, *size)
    expected = model(pixels)  # grad mode on: the plain MLP
    assert chunk_counter["mlp"] == 0
    with torch.inference_mode():
        actual = model(pixels)
    grouped_stages = {(224, 224): 0, (225, 301): 1, (800, 1216): 3}[size] if family != "v1" else 0
    assert chunk_counter["mlp"] == sum(config.depths)
    assert chunk_counter["channel groups"] == sum(config.depths[:grouped_stages])
    if batch > 1 or family == "v1":  # one sample of a v2 model is one chunk
        assert chunk_counter["linear writes"] > chunk_counter["mlp"]  # some MLP wrote in several chunks
    outputs = [actual.logits] if size == (224, 224) else actual.feature_maps
    references = [expected.logits] if size == (224, 224) else expected.feature_maps
    for out, ref in zip(outputs, references, strict=True):
        assert_equal_to_1e6(out, ref)


def test_chunk_budgets_agree(chunk_counter, monkeypatch):
    """Budgets that give several samples per chunk, one sample, and less than a sample (groups of hidden channels,
    down to one channel at a time): one result."""
    torch.manual_seed(0)
    mlp = PvtMlp(tiny_config("v2-li"), stage=0).eval()
    height, width = 13, 7
    tokens = torch.randn(3, height * width, mlp.fc1.in_features)
    plain = mlp(tokens, height, width).detach()  # gradient mode: the plain MLP
    assert chunk_counter["mlp"] == 0
    with torch.no_grad():
        sample_bytes = height * width * mlp.fc1.out_features * 4
        for budget in [2 * sample_bytes, sample_bytes, sample_bytes - 1, 1]:
            monkeypatch.setattr(PvtMlp, "chunk_bytes", budget)
            assert_equal_to_1e6(mlp(tokens, height, width), plain)
    assert chunk_counter["mlp"] == 4 and chunk_counter["channel groups"] == 2 * 3


def test_training_does_not_chunk(chunk_counter):
    """With gradients the MLP keeps its recomputing path (ActivationThenLinear): no chunks, gradients as before."""
    model = PvtForImageClassification(tiny_config("v2")).train()
    model(torch.randn(2, 3, 64, 64)).logits.sum().backward()
    assert chunk_counter["mlp"] == 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gelu_backward_in_one_buffer_equals_generic_backward(dtype):
    """The exact-GELU backward that reuses one buffer gives the generic (torch.func.vjp) backward's gradients, also
    under bf16 autocast (bfloat16 activations, float32 weights)."""
    from pvt_hf.modeling_pvt import ActivationThenLinear

    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(2, 50, 24, dtype=dtype), torch.randn(8, 24), torch.randn(8)
    grad_output = torch.randn(2, 50, 8, dtype=dtype)
    grads = []
    for exact_gelu in (True, False):
        inputs = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = ActivationThenLinear.apply(*inputs, torch.nn.functional.gelu, exact_gelu)
        out.backward(grad_output)
        grads.append([t.grad for t in inputs])
    for fast, generic in zip(*grads, strict=True):
        assert fast.dtype == generic.dtype and torch.equal(fast, generic)
    if dtype != torch.float32:
        return
    plain = [t.clone().requires_grad_() for t in (hidden, weight, bias)]
    torch.nn.functional.linear(torch.nn.functional.gelu(plain[0]), plain[1], plain[2]).backward(grad_output)
    for fast, reference in zip(grads[0], [t.grad for t in plain], strict=True):
        torch.testing.assert_close(fast, reference)


@pytest.mark.parametrize(
    "preset, model_class, size",
    [
        ("pvt-tiny", PvtForImageClassification, (224, 224)),  # runs of tokens
        ("pvt-v2-b0", PvtForImageClassification, (224, 224)),  # whole samples
        ("pvt-v2-b2-li", PvtForImageClassification, (224, 224)),
        ("pvt-tiny-semantic-fpn-ade20k", PvtForSemanticSegmentation, (512, 640)),
        ("pvt-v2-b0-upernet-ade20k", PvtForSemanticSegmentation, (512, 640)),  # groups of hidden channels
        ("pvt-v2-b2-li-semantic-fpn-ade20k", PvtForSemanticSegmentation, (512, 640)),
    ],
)
def test_meta_forward_without_gradients_counts_as_with_them(preset, model_class, size):
    """Counting FLOPs on the meta device, the usual way, under no_grad (the chunked path, where meta has no autocast
    backend to ask) as with gradients (the plain path): the same count, every chunk's products included."""
    config_class = PvtConfig if model_class is PvtForImageClassification else PvtSegmentationConfig
    with torch.device("meta"):
        model = model_class(config_class.from_preset(preset)).eval()
    counts = []
    for grad in (True, False):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            model(torch.empty(2, 3, *size, device="meta"))
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


@pytest.mark.parametrize("family", ["v1", "v2", "v2-li"])
def test_cpu_forward_without_gradients_counts_as_with_them(family):
    """On the CPU, where inference fuses the depth-wise conv and GELU into one oneDNN op: the FLOP count under no_grad
    (fused, chunked) equals the count with gradients (plain ops)."""
    model = PvtForImageClassification(tiny_config(family)).eval()
    counts = []
    for grad in (True, False):
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            model(torch.randn(2, 3, 64, 96))
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] > 0


@pytest.mark.skipif(not FUSED_CONV_GELU, reason="this torch build has no oneDNN conv with a fused GELU")
@pytest.mark.parametrize("family", ["v2", "v2-li"])  # v1's MLP has no conv
def test_chunks_and_fused_conv_gelu_under_bf16_autocast(family, chunk_counter, monkeypatch):
    """Inference under bf16 autocast runs in chunks too (computed and written in bfloat16, samples whole: several per
    chunk here, bitwise the unchunked result) and with the depth-wise conv and GELU fused (one rounding to bfloat16
    where the plain path has two): as close to the float32 model as the plain (gradient-mode) path, or closer."""
    torch.manual_seed(0)
    config = tiny_config(family, out_indices=[0, 1, 2, 3])
    model = PvtBackbone(config).eval().requires_grad_(False)
    pixels = torch.randn(4, 3, 96, 128)  # stage 1: 24x32 tokens x 32 hidden x 2 bytes = 48 KiB a sample
    monkeypatch.setattr(PvtMlp, "chunk_bytes", 2**16)
    with torch.no_grad():
        exact = model(pixels).feature_maps
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = model(pixels).feature_maps  # grad mode on: the plain MLP
        with torch.no_grad():
            chunked = model(pixels).feature_maps
            assert chunk_counter["mlp"] == 2 * sum(config.depths)  # the float32 run's and this one's
            assert chunk_counter["linear writes"] > chunk_counter["mlp"]
            monkeypatch.setattr(PvtMlp, "chunk_bytes", 2**62)
            whole = model(pixels).feature_maps
    for c, w, p, e in zip(chunked, whole, plain, exact, strict=True):
        assert c.dtype == p.dtype == torch.bfloat16 and torch.equal(c, w)
        error, plain_error = (c.float() - e).abs().mean(), (p.float() - e).abs().mean()
        assert error <= 1.1 * plain_error, (error, plain_error)
