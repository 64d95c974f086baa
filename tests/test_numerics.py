"""Fast paths compute the same function: torch.compile vs eager, bf16 autocast vs fp32."""

import pytest
import torch
from conftest import tiny_config

from pvt_hf import PvtBackbone, PvtForImageClassification


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
