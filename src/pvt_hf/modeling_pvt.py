"""Pyramid Vision Transformer v1 / v2 on one code path, switched by `PvtConfig`.

Shipped as remote code next to saved models: relative imports only, torch and transformers only.
"""

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import conv_flop_count, flop_registry, register_flop_formula
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.backbone_utils import BackboneMixin
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BackboneOutput, BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.modeling_utils import PreTrainedModel

from .configuration_pvt import PvtConfig

LINEAR_SRA_POOL_SIZE = 7  # P in the v2 paper
# oneDNN's convolution with a fused elementwise op (what torch.compile's CPU backend calls), where this build has it
FUSED_CONV_GELU = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
if FUSED_CONV_GELU and torch.ops.mkldnn._convolution_pointwise not in flop_registry:  # once (remote code: twice)

    @register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
    def _fused_conv_flops(x_shape, w_shape, third, *args, out_shape=None, **kwargs) -> int:
        """FlopCounterMode counts the fused conv as the plain one (the .binary overload: x, other, weight, ...)."""
        return conv_flop_count(x_shape, third if third is not None and len(third) == 4 else w_shape, out_shape)


def tokens_to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W) as a view: the result is channels-last in memory, which convs take without a copy."""
    return tokens.unflatten(1, (height, width)).permute(0, 3, 1, 2)


def map_to_tokens(feature_map: torch.Tensor) -> torch.Tensor:
    return feature_map.flatten(2).transpose(1, 2)


def autocasting(device_type: str) -> bool:
    """Whether autocast is on for `device_type`; False for a device without an autocast backend (meta, where torch's
    own query raises)."""
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


class PvtPatchEmbed(nn.Module):
    """Strided conv + LayerNorm. v1: kernel = stride = P. v2 (OPE): kernel 2S-1, padding S-1, so windows overlap."""

    def __init__(self, config: PvtConfig, in_channels: int, stage: int):
        super().__init__()
        stride = config.patch_sizes[stage]
        kernel, padding = (2 * stride - 1, stride - 1) if config.overlapping_patch_embed else (stride, 0)
        self.proj = nn.Conv2d(in_channels, config.hidden_sizes[stage], kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(config.hidden_sizes[stage], eps=config.patch_embed_layer_norm_eps)

    def forward(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        feature_map = self.proj(feature_map)
        height, width = feature_map.shape[-2:]
        return self.norm(map_to_tokens(feature_map)), height, width


class PvtPositionEmbedding(nn.Module):
    """v1's learned absolute position embedding, sized for `config.image_size` and bilinearly interpolated to the
    actual grid (v1 paper, Sec. 5.2). With a class token, the table's first row is the class token's."""

    def __init__(self, config: PvtConfig, stage: int, with_cls_token: bool):
        super().__init__()
        stride = math.prod(config.patch_sizes[: stage + 1])
        self.grid_size = config.image_size // stride
        self.num_prefix_tokens = int(with_cls_token)
        num_positions = self.grid_size**2 + self.num_prefix_tokens
        self.table = nn.Parameter(torch.zeros(1, num_positions, config.hidden_sizes[stage]))

    def forward(self, tokens: torch.Tensor, height: int, width: int, with_cls_token: bool) -> torch.Tensor:
        """`tokens` (B, [1 +] height * width, C), class token first, plus their position embeddings.

        Returns the sum rather than the table: a slice of a parameter under `torch.no_grad()` is a leaf-like view
        that requires gradients without a grad_fn, and module hooks (FlopCounterMode's tracker) fail on it."""
        table = self.table[:, self.num_prefix_tokens :]
        if (height, width) != (self.grid_size, self.grid_size) or torch.compiler.is_exporting():
            grid = tokens_to_map(table, self.grid_size, self.grid_size)
            table = map_to_tokens(F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False))
        return tokens + (torch.cat([self.table[:, :1], table], dim=1) if with_cls_token else table)


class PvtAttention(nn.Module):
    """Spatial-reduction attention (SRA, v1) and linear SRA (v2 -li): keys and values come from a reduced map.

    q and the fused kv are separate projections because the keys/values read a different (reduced) sequence.
    """

    # On CPU, attention over at most this many keys runs as matmul -> softmax -> matmul instead of SDPA's fused
    # (flash) kernel, whose tiling is made for long key sequences: over PVT's 49 keys (every stage at 224x224, linear
    # SRA at any size) they took 0.10 s of a bf16 autocast training step of pvt-v2-b2 at 8x224 where SDPA took 0.28 s
    # (`python -m benchmarks --profile`; README, Performance). Their scores matrix (queries x keys) is then at most
    # this many columns wide, no wider than the tokens themselves.
    matmul_max_keys = 64

    def __init__(self, config: PvtConfig, stage: int):
        super().__init__()
        hidden_size = config.hidden_sizes[stage]
        self.num_heads = config.num_attention_heads[stage]
        self.config = config
        self.query = nn.Linear(hidden_size, hidden_size, bias=config.qkv_bias)
        self.key_value = nn.Linear(hidden_size, 2 * hidden_size, bias=config.qkv_bias)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.proj_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.linear_sra = config.linear_sra
        self.sr_ratio = 1 if config.linear_sra else config.sr_ratios[stage]
        if config.linear_sra:
            self.pool = nn.AdaptiveAvgPool2d(LINEAR_SRA_POOL_SIZE)
            self.spatial_reduction = nn.Conv2d(hidden_size, hidden_size, kernel_size=1)
            self.act = nn.GELU()
        elif self.sr_ratio > 1:
            self.spatial_reduction = nn.Conv2d(hidden_size, hidden_size, self.sr_ratio, stride=self.sr_ratio)
        if config.linear_sra or self.sr_ratio > 1:
            self.reduction_norm = nn.LayerNorm(hidden_size, eps=config.spatial_reduction_layer_norm_eps)

    def reduce(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The sequence keys and values are computed from."""
        if self.linear_sra:
            reduced = self.spatial_reduction(self.pool(tokens_to_map(tokens, height, width)))
            return self.act(self.reduction_norm(map_to_tokens(reduced)))
        if self.sr_ratio > 1:
            reduced = self.spatial_reduction(tokens_to_map(tokens, height, width))
            return self.reduction_norm(map_to_tokens(reduced))
        return tokens

    def forward(
        self, tokens: torch.Tensor, height: int, width: int, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch_size, seq_len, hidden_size = tokens.shape
        head_dim = hidden_size // self.num_heads
        query = self.query(tokens).view(batch_size, seq_len, self.num_heads, head_dim).transpose(1, 2)
        key, value = (
            self.key_value(self.reduce(tokens, height, width))
            .unflatten(-1, (2, self.num_heads, head_dim))
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        dropout = self.attention_dropout if self.training else 0.0
        few_keys = key.shape[-2] <= self.matmul_max_keys and key.device.type == "cpu"
        if output_attentions or self.config._attn_implementation == "eager" or few_keys:
            # the keys (few) carry the scale, so no scaled copy of the queries is made and stored for the backward
            scores = query @ (key.transpose(-1, -2) * head_dim**-0.5)
            # softmax in float32 at least (float64 stays float64), as SDPA accumulates
            probs = scores.softmax(dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
            context = F.dropout(probs, p=dropout, training=self.training) @ value
        else:
            probs = None
            context = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(batch_size, seq_len, hidden_size)
        return self.proj_dropout(self.proj(context)), probs


class ActivationThenLinear(torch.autograd.Function):
    """`linear(act(hidden))` that stores only `hidden` for the backward and recomputes `act(hidden)` there.

    The MLP's activation output (`mlp_ratio` times the block's width) is its largest tensor; not storing it cuts the
    training memory of PVT by a quarter at detection resolutions, for one extra elementwise op in the backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, act, exact_gelu: bool):
        ctx.act, ctx.exact_gelu, ctx.has_bias = act, exact_gelu, bias is not None
        ctx.save_for_backward(hidden, weight)
        return F.linear(act(hidden), weight, bias)

    @staticmethod
    def backward(ctx, grad_output):
        hidden, weight = ctx.saved_tensors
        if ctx.exact_gelu and grad_output.dtype == hidden.dtype and not torch.compiler.is_compiling():
            return ActivationThenLinear.gelu_backward_in_one_buffer(ctx, grad_output, hidden, weight)
        # torch.func.vjp rather than autograd.grad: it compiles with fullgraph=True. Under autocast the forward ran in
        # grad_output's dtype; the gradients of the fp32 weights are cast back, as autocast's own casts would.
        activated, activation_vjp = torch.func.vjp(ctx.act, hidden)
        flat_grad = grad_output.flatten(0, -2)
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = (flat_grad.T @ activated.flatten(0, -2).to(flat_grad.dtype)).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = flat_grad.sum(0).to(weight.dtype)
        (grad_hidden,) = activation_vjp((grad_output @ weight.to(grad_output.dtype)).to(activated.dtype))
        return grad_hidden, grad_weight, grad_bias, None, None

    @staticmethod
    def gelu_backward_in_one_buffer(ctx, grad_output, hidden, weight):
        """The same ops for the exact GELU, in one buffer of `hidden`'s size: GELU(hidden) for fc2's weight gradient,
        then overwritten by the gradient of GELU's output, then by that of its input. (Three fresh buffers of the
        MLP's widest size per backward would be three new mappings, paid for in page faults.) Under autocast the
        weight is cast to the activations' dtype and its gradients back, as in the generic backward."""
        buffer = F.gelu(hidden)
        flat_grad = grad_output.flatten(0, -2)
        grad_weight = (flat_grad.T @ buffer.flatten(0, -2)).to(weight.dtype) if ctx.needs_input_grad[1] else None
        grad_bias = flat_grad.sum(0).to(weight.dtype) if ctx.has_bias and ctx.needs_input_grad[2] else None
        torch.matmul(grad_output, weight.to(grad_output.dtype), out=buffer)
        torch.ops.aten.gelu_backward.grad_input(buffer, hidden, grad_input=buffer)
        return buffer, grad_weight, grad_bias, None, None


class PvtMlp(nn.Module):
    """fc1 -> [ReLU (linear SRA)] -> [3x3 depth-wise conv (CFFN)] -> GELU -> fc2."""

    # Inference runs the MLP in chunks of at most this many bytes of hidden activations (whole samples or runs of
    # tokens; groups of hidden channels where one sample under the conv is larger): its widest buffer (`mlp_ratio` x
    # the block's width, 51 MB for 8 images at 224 in stage 1, 124 MB for one 800x1216 image) then stays below glibc's
    # mmap threshold (32 MB at most), above which every fresh buffer is a new mapping paid for in page faults on every
    # forward, and closer to the cache. (Bands of rows with the conv's halo were slower, measured at 800x1216.)
    chunk_bytes = 2**23

    def __init__(self, config: PvtConfig, stage: int):
        super().__init__()
        hidden_size = config.hidden_sizes[stage]
        inner_size = int(hidden_size * config.mlp_ratios[stage])
        self.fc1 = nn.Linear(hidden_size, inner_size)
        self.relu = nn.ReLU(inplace=True) if config.linear_sra else None  # on fc1's fresh output: one buffer fewer
        self.dwconv = nn.Conv2d(inner_size, inner_size, 3, padding=1, groups=inner_size) if config.conv_ffn else None
        self.act = ACT2FN[config.hidden_act]
        # Without gradients the exact GELU (the papers' and every preset's) overwrites its input: one fewer of the
        # MLP's widest buffers.
        self.inplace_gelu = config.hidden_act == "gelu"
        self.fused_conv_gelu = FUSED_CONV_GELU and self.inplace_gelu and self.dwconv is not None
        self.fc2 = nn.Linear(inner_size, hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        dropout = self.training and self.dropout.p > 0
        # Chunks in eager inference only: compiled, exported and traced graphs plan their buffers themselves (chunks
        # would be unrolled into them).
        traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
        if not (torch.is_grad_enabled() or dropout or traced):
            return self.forward_in_chunks(tokens, height, width)
        hidden = self.fc1(tokens)
        if self.relu is not None:
            hidden = self.relu(hidden)
        if not torch.is_grad_enabled():
            activated = self.conv_and_activate(hidden, height, width)
            return self.dropout(self.fc2(self.dropout(activated)))
        if self.dwconv is not None:
            hidden = map_to_tokens(self.dwconv(tokens_to_map(hidden, height, width)))
        if not dropout:
            # Recording gradients: recompute the activation in the backward. (Active dropout between activation and
            # fc2 would store a tensor of that size anyway: plain ops then.)
            return ActivationThenLinear.apply(hidden, self.fc2.weight, self.fc2.bias, self.act, self.inplace_gelu)
        return self.dropout(self.fc2(self.dropout(self.act(hidden))))

    def activate(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.gelu_(hidden) if self.inplace_gelu and not torch.is_grad_enabled() else self.act(hidden)

    def conv_and_activate(self, hidden: torch.Tensor, height: int, width: int, group=slice(None)) -> torch.Tensor:
        """Without gradients: the activation of the depth-wise conv of `hidden` (tokens; `group`: the conv's hidden
        channels that `hidden` holds), or of `hidden` itself without the conv. On CPU, the exact GELU runs inside
        oneDNN's conv kernel, on its output while in cache: one pass fewer over the MLP's widest tensor."""
        if self.dwconv is None:
            return self.activate(hidden)
        weight, bias = self.dwconv.weight[group], self.dwconv.bias[group]
        feature_map = tokens_to_map(hidden, height, width)
        dtype, groups = feature_map.dtype, weight.shape[0]
        if (
            self.fused_conv_gelu
            and feature_map.device.type == "cpu"
            and dtype in (torch.float32, torch.bfloat16)
            and not (torch.compiler.is_compiling() or torch.jit.is_tracing())
        ):
            # autocast does not cast for this op: the conv's parameters are cast as autocast would have
            weight, bias = weight.to(dtype), bias.to(dtype)
            conv = self.dwconv
            # padding, stride, dilation, groups, then GELU without the tanh approximation ("none")
            args = (list(conv.padding), list(conv.stride), list(conv.dilation), groups, "gelu", [], "none")
            return map_to_tokens(torch.ops.mkldnn._convolution_pointwise(feature_map, weight, bias, *args))
        return self.activate(
            map_to_tokens(F.conv2d(feature_map, weight, bias, padding=self.dwconv.padding, groups=groups))
        )

    def forward_in_chunks(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The same MLP without gradients, at most `chunk_bytes` of hidden activations at a time: runs of tokens
        (no conv), else whole samples, else groups of one sample's hidden channels. Under autocast everything is
        computed and written in its dtype, and a sample runs whole even above the budget: fc2's parts from groups of
        channels would each be rounded to that dtype before they are added up."""
        autocast = autocasting(tokens.device.type)
        dtype = torch.get_autocast_dtype(tokens.device.type) if autocast else tokens.dtype
        out = tokens.new_empty(*tokens.shape[:-1], self.fc2.out_features, dtype=dtype)
        token_bytes = self.fc1.out_features * dtype.itemsize
        samples = self.chunk_bytes // (height * width * token_bytes) or int(autocast)
        if self.dwconv is None:
            flat_in, flat_out = tokens.reshape(1, -1, tokens.shape[-1]), out.view(1, -1, out.shape[-1])
            self.run_chunks(flat_in, flat_out, 1, max(self.chunk_bytes // token_bytes, 1), height, width)
        elif samples:
            self.run_chunks(tokens, out, 0, samples, height, width)
        else:
            channels = 2 ** max((self.chunk_bytes // (height * width * dtype.itemsize)).bit_length() - 1, 0)
            for sample in range(tokens.shape[0]):
                self.run_channel_groups(tokens[sample], out[sample], channels, height, width)
        return out

    def run_chunks(self, tokens, out, dim: int, size: int, height: int, width: int) -> None:
        for start in range(0, tokens.shape[dim], size):
            chunk = tokens.narrow(dim, start, min(size, tokens.shape[dim] - start))
            hidden = self.fc1(chunk)
            if self.relu is not None:
                hidden = self.relu(hidden)
            activated = self.conv_and_activate(hidden, height, width)
            self.linear_into(self.fc2, activated, out.narrow(dim, start, chunk.shape[dim]))

    def run_channel_groups(self, tokens, out, channels: int, height: int, width: int) -> None:
        """One sample (tokens (H*W, C) -> out) `channels` hidden channels at a time: the 3x3 conv is depth-wise, so
        each group of channels is computed on its own, and fc2 adds up the groups' parts."""
        for start in range(0, self.fc1.out_features, channels):
            group = slice(start, start + channels)
            hidden = torch.addmm(self.fc1.bias[group], tokens, self.fc1.weight[group].T)
            if self.relu is not None:
                hidden = self.relu(hidden)
            activated = self.conv_and_activate(hidden[None], height, width, group)
            fc2_part = self.fc2.weight[:, group].T
            # addmm with out= rather than addmm_: FlopCounterMode counts only the former
            torch.addmm(self.fc2.bias if start == 0 else out, activated[0], fc2_part, out=out)

    @staticmethod
    def linear_into(linear: nn.Linear, inputs: torch.Tensor, out: torch.Tensor) -> None:
        """`out[...] = linear(inputs)`, written in place (`out` contiguous), in `out`'s dtype (autocast does not cast
        for an `out=` op)."""
        flat_out, dtype = out.view(-1, out.shape[-1]), out.dtype
        torch.addmm(
            linear.bias.to(dtype), inputs.reshape(-1, inputs.shape[-1]), linear.weight.to(dtype).T, out=flat_out
        )


def drop_path(hidden: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per sample."""
    if drop_prob == 0.0 or not training:
        return hidden
    keep = hidden.new_empty((hidden.shape[0],) + (1,) * (hidden.ndim - 1)).bernoulli_(1 - drop_prob)
    return hidden * keep / (1 - drop_prob)


class PvtBlock(GradientCheckpointingLayer):
    """Pre-norm Transformer encoder block with (linear) SRA."""

    def __init__(self, config: PvtConfig, stage: int, drop_path_rate: float):
        super().__init__()
        hidden_size = config.hidden_sizes[stage]
        self.norm1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.attention = PvtAttention(config, stage)
        self.norm2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_eps)
        self.mlp = PvtMlp(config, stage)
        self.drop_path_rate = drop_path_rate

    def forward(self, tokens: torch.Tensor, height: int, width: int, output_attentions: bool = False):
        attended, probs = self.attention(self.norm1(tokens), height, width, output_attentions)
        tokens = tokens + drop_path(attended, self.drop_path_rate, self.training)
        tokens = tokens + drop_path(self.mlp(self.norm2(tokens), height, width), self.drop_path_rate, self.training)
        return tokens, probs


class PvtStage(nn.Module):
    """Patch embedding [+ position embedding] -> blocks [-> LayerNorm (v2)]."""

    def __init__(self, config: PvtConfig, stage: int, drop_path_rates: list[float]):
        super().__init__()
        in_channels = config.num_channels if stage == 0 else config.hidden_sizes[stage - 1]
        self.patch_embed = PvtPatchEmbed(config, in_channels, stage)
        with_cls_token = config.pooling == "cls" and stage == len(config.depths) - 1
        self.position_embedding = (
            PvtPositionEmbedding(config, stage, with_cls_token) if config.absolute_pos_embed else None
        )
        self.pos_dropout = nn.Dropout(config.hidden_dropout_prob) if config.absolute_pos_embed else None
        self.blocks = nn.ModuleList(PvtBlock(config, stage, rate) for rate in drop_path_rates)
        self.norm = nn.LayerNorm(config.hidden_sizes[stage], eps=config.layer_norm_eps) if config.stage_norms else None

    def forward(self, feature_map, cls_token=None, output_attentions=False):
        """Returns the stage's tokens (class token first, if given), the grid size and the attention maps."""
        tokens, height, width = self.patch_embed(feature_map)
        if cls_token is not None:
            tokens = torch.cat([cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if self.position_embedding is not None:
            tokens = self.pos_dropout(self.position_embedding(tokens, height, width, cls_token is not None))
        attentions = ()
        for block in self.blocks:
            tokens, probs = block(tokens, height, width, output_attentions)
            attentions += (probs,) if output_attentions else ()
        if self.norm is not None:
            tokens = self.norm(tokens)
        return tokens, height, width, attentions


class PvtEncoder(nn.Module):
    def __init__(self, config: PvtConfig):
        super().__init__()
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        starts = [sum(config.depths[:i]) for i in range(len(config.depths))]
        self.stages = nn.ModuleList(
            PvtStage(config, i, rates[start : start + depth])
            for i, (start, depth) in enumerate(zip(starts, config.depths, strict=True))
        )
        self.num_channels = config.num_channels
        self.min_input_size = config.min_input_size

    def forward(self, pixel_values, cls_token=None, output_attentions=False):
        """Runs all stages. Returns the last stage's tokens (class token first, if given), its grid size, the
        per-stage feature maps (B, C_i, H_i, W_i) and the attention maps."""
        check_pixel_values(pixel_values, self.num_channels, self.min_input_size)
        # float16 / bfloat16 inputs to a float32 model (and the reverse) run in the model's dtype, as transformers'
        # vision models do
        pixel_values = pixel_values.to(self.stages[0].patch_embed.proj.weight.dtype)
        feature_map, feature_maps, attentions = pixel_values, (), ()
        last = len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            tokens, height, width, stage_attentions = stage(
                feature_map, cls_token if i == last else None, output_attentions
            )
            feature_map = tokens_to_map(tokens[:, tokens.shape[1] - height * width :], height, width)
            feature_maps += (feature_map,)
            attentions += stage_attentions
        return tokens, height, width, feature_maps, attentions


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int, min_size: int) -> None:
    """Shape and dtype errors that name what is expected, instead of a failure inside the first conv."""
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(f"pixel_values must be a 4-D tensor (batch, {num_channels}, height, width), got {shape}")
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"pixel_values must be a floating-point tensor (normalised pixels), got {pixel_values.dtype}: raw "
            "uint8/integer images go through the image processor first (e.g. PvtHfImageProcessor()(images, "
            "return_tensors='pt'))"
        )
    _, channels, height, width = pixel_values.shape
    if channels != num_channels:
        raise ValueError(
            f"pixel_values must have shape (batch, {num_channels}, height, width) but has {channels} channels: "
            f"got {tuple(pixel_values.shape)}"
        )
    if height < min_size or width < min_size:
        raise ValueError(
            f"pixel_values must be at least {min_size}x{min_size} pixels for this config's patch_sizes and sr_ratios "
            f"(batch, {num_channels}, >={min_size}, >={min_size}), got {tuple(pixel_values.shape)}"
        )


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Raise an OSError naming `path` if it is not a complete safetensors file (empty, truncated, bad header):
    safetensors' own error ("header too small") names no file."""
    path = Path(path)
    size = path.stat().st_size
    problem = None
    with open(path, "rb") as f:
        prefix = f.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_size is None or 8 + header_size > size:
            problem = f"{size} bytes, too short for its header"
        else:
            try:
                header = json.loads(f.read(header_size))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError) as error:
                problem = f"unreadable header ({error})"
            else:
                if 8 + header_size + end > size:
                    problem = f"{size} bytes, but its header describes {8 + header_size + end}"
    if problem:
        raise OSError(f"{path} is not a complete safetensors file: {problem} (truncated or partly written?)")


class PvtLoadingMixin:
    """Checks a local folder before transformers reads it (its errors name no file), and realigns tensors: zero-copy
    safetensors loading can leave them at unaligned addresses, where CPU BLAS takes other kernels; realigned, a
    reloaded model computes bit-identically to the saved one (and at full speed)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        folder = Path(pretrained_model_name_or_path or "", kwargs.get("subfolder", ""))
        if pretrained_model_name_or_path is not None and folder.is_dir():
            if kwargs.get("config") is None and not (folder / "config.json").is_file():
                raise OSError(
                    f"{folder} has no config.json: {cls.__name__}.from_pretrained needs the config saved with the "
                    "weights (or pass config=...), else it would build a default, unrelated architecture"
                )
            for file in folder.glob("*.safetensors"):
                check_safetensors_file(file)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading info) with output_loading_info
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.data_ptr() % 64:
                tensor.data = tensor.data.clone()
        return loaded

    @classmethod
    def is_custom_code(cls) -> bool:
        """transformers marks a module of "custom code" initialised, without running its init, when its own
        parameters are flagged -- trivially so for a module holding none (heads' containers, Deformable DETR's
        attention), whose parameters a checkpoint lacked then stay garbage. Every `_init_weights` here and in the
        transformers models the heads subclass uses `transformers.initialization`, which skips loaded parameters
        itself: these classes take transformers' own path."""
        return False


class PvtPreTrainedModel(PvtLoadingMixin, PreTrainedModel):
    config_class = PvtConfig
    base_model_prefix = "pvt"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["PvtBlock"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        # One saved folder serves every Auto class of the family, e.g. AutoBackbone on a classification checkpoint.
        self.config.auto_map = {
            "AutoModel": "modeling_pvt.PvtModel",
            "AutoModelForImageClassification": "modeling_pvt.PvtForImageClassification",
            "AutoBackbone": "modeling_pvt.PvtBackbone",
            **(getattr(self.config, "auto_map", None) or {}),
        }
        super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """As the official code: trunc-normal(0.02) Linear, zero bias, LayerNorm 1/0, trunc-normal position
        embeddings and class token; convs per `config.conv_init` (v2's fan-out normal, or PyTorch's default as v1)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            if self.config.conv_init == "fan_out":
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    init.zeros_(module.bias)
            else:
                fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                if module.bias is not None:
                    init.uniform_(module.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, PvtPositionEmbedding):
            init.trunc_normal_(module.table, std=std)
        elif isinstance(module, PvtModel) and module.cls_token is not None:
            init.trunc_normal_(module.cls_token, std=std)


class PvtModel(PvtPreTrainedModel):
    """PVT trunk for image-level tasks: v1 with its class token and final LayerNorm, v2 with mean pooling.

    `last_hidden_state` is the final (normed) feature map (B, C, H/32, W/32); `pooler_output` is the class token (v1)
    or the mean of the last stage's tokens (v2); `hidden_states` are the four stage maps."""

    def __init__(self, config: PvtConfig):
        super().__init__(config)
        self.encoder = PvtEncoder(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_sizes[-1])) if config.pooling == "cls" else None
        self.norm = None if config.stage_norms else nn.LayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BaseModelOutputWithPooling:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        tokens, height, width, feature_maps, attentions = self.encoder(pixel_values, self.cls_token, output_attentions)
        if self.norm is not None:
            tokens = self.norm(tokens)
        pooled = tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)
        last_hidden_state = tokens_to_map(tokens[:, tokens.shape[1] - height * width :], height, width)
        outputs = BaseModelOutputWithPooling(
            last_hidden_state=last_hidden_state,
            pooler_output=pooled,
            hidden_states=feature_maps if output_hidden_states else None,
            attentions=attentions if output_attentions else None,
        )
        return outputs if return_dict else outputs.to_tuple()


class PvtForImageClassification(PvtPreTrainedModel):
    def __init__(self, config: PvtConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.pvt = PvtModel(config)
        self.classifier = (
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity()
        )
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | ImageClassifierOutput:
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.pvt(pixel_values, output_attentions, output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)
        loss = self.classification_loss(labels, logits) if labels is not None else None
        result = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return result if return_dict else result.to_tuple()

    def classification_loss(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """transformers' loss, with labels that cannot fit refused by name, and an unset `config.problem_type` decided
        per call (regression for one label, single-label for integer labels, else multi-label) without writing it
        into the config as transformers' loss does (one call with float labels would fix it for good)."""
        num_labels = self.config.num_labels
        if num_labels < 1:
            raise ValueError(
                "labels were given but this model has no classifier (config.num_labels = 0): load it with "
                "num_labels=<your number of classes> (and ignore_mismatched_sizes=True) to train one"
            )
        problem_type = self.config.problem_type
        if problem_type is None:
            floats = labels.is_floating_point()
            problem_type = "regression" if num_labels == 1 else ["single", "multi"][floats] + "_label_classification"
        if problem_type == "single_label_classification":
            if labels.is_floating_point() or labels.numel() != logits.shape[0]:
                raise ValueError(
                    f"single-label classification takes integer class ids, one per image ({logits.shape[0]}), "
                    f"got {labels.dtype} labels of shape {tuple(labels.shape)}"
                )
            if not bool((((labels >= 0) & (labels < num_labels)) | (labels == -100)).all()):  # one device sync
                raise ValueError(
                    f"labels hold class ids outside [0, {num_labels}): {labels.flatten().tolist()} "
                    "(-100 marks an image to ignore)"
                )
        elif problem_type == "multi_label_classification" and labels.shape != logits.shape:
            raise ValueError(
                f"multi-label classification takes one 0/1 target per class, shape {tuple(logits.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        return self.loss_function(labels, logits, SimpleNamespace(num_labels=num_labels, problem_type=problem_type))


class PvtBackbone(BackboneMixin, PvtPreTrainedModel):
    """Stage maps at strides 4/8/16/32 for dense prediction. For v1 this is the official dense-prediction backbone:
    no class token, no final LayerNorm, position embeddings interpolated to the input grid."""

    _keys_to_ignore_on_load_unexpected = [r"^cls_token$", r"^norm\.", r"^classifier\."]

    def __init__(self, config: PvtConfig):
        super().__init__(config)
        self.encoder = PvtEncoder(config)
        self.num_features = list(config.hidden_sizes)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> tuple | BackboneOutput:
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        *_, feature_maps, attentions = self.encoder(pixel_values, None, output_attentions)
        outputs = BackboneOutput(
            feature_maps=tuple(feature_maps[self.stage_names.index(name)] for name in self.out_features),
            hidden_states=feature_maps if output_hidden_states else None,
            attentions=attentions if output_attentions else None,
        )
        return outputs if return_dict else outputs.to_tuple()


__all__ = ["PvtBackbone", "PvtForImageClassification", "PvtLoadingMixin", "PvtModel", "PvtPreTrainedModel"]
