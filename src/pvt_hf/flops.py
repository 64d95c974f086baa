"""MAC counting as the reference numbers do it: `torch.utils.flop_counter.FlopCounterMode`, FLOPs / 2."""

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: torch.nn.Module, height: int = 224, width: int = 224, batch_size: int = 1) -> int:
    """Multiply-accumulates of one forward pass of `model` at the given input size.

    Counted on a meta-device copy: no memory, no time, and there SDPA decomposes into matmuls the counter sees (on
    CPU its fused kernel is not counted, which would drop the attention products)."""
    with torch.device("meta"):
        copy = type(model)(model.config).eval()
    with FlopCounterMode(display=False) as counter:  # (its module tracking needs autograd on)
        channels = getattr(model.config, "backbone_config", model.config).num_channels  # dense models: the backbone's
        copy(torch.empty(batch_size, channels, height, width, device="meta"))
    return counter.get_total_flops() // 2
