"""mmdetection 2.13's detector pieces as the official PVT configs use them, written from mmdetection's source
(v2.13.0: mmdet/models/necks/fpn.py, dense_heads/retina_head.py, dense_heads/rpn_head.py,
roi_heads/bbox_heads/convfc_bbox_head.py (Shared2FCBBoxHead), roi_heads/mask_heads/fcn_mask_head.py,
roi_heads/roi_extractors/single_level_roi_extractor.py, core/anchor/anchor_generator.py) with mmdetection's module
names, and kept apart from pvt_hf: the tests give both the same weights and compare their raw outputs. (mmdet / mmcv
do not import beside torch 2.14; mmcv's RoIAlign(aligned=True) is torchvision's roi_align(aligned=True).)"""

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align


class ConvModule(nn.Module):
    """mmcv's ConvModule without a norm: `conv` (bias on, as bias='auto' without norm), then ReLU unless act_cfg is
    None."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class FPN(nn.Module):
    """FPN(in_channels, out_channels, num_outs, start_level, add_extra_convs); act_cfg=None (no ReLU),
    relu_before_extra_convs=False, upsampling 'nearest' to the lower level's size."""

    def __init__(self, in_channels, out_channels, num_outs, start_level=0, add_extra_convs=False):
        super().__init__()
        self.in_channels, self.num_outs, self.start_level = in_channels, num_outs, start_level
        self.add_extra_convs = add_extra_convs
        self.backbone_end_level = len(in_channels)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(start_level, self.backbone_end_level):
            self.lateral_convs.append(ConvModule(in_channels[i], out_channels, 1, relu=False))
            self.fpn_convs.append(ConvModule(out_channels, out_channels, 3, padding=1, relu=False))
        extra_levels = num_outs - self.backbone_end_level + start_level
        if add_extra_convs and extra_levels >= 1:
            for i in range(extra_levels):
                channels = in_channels[self.backbone_end_level - 1] if i == 0 else out_channels  # 'on_input'
                self.fpn_convs.append(ConvModule(channels, out_channels, 3, stride=2, padding=1, relu=False))

    def forward(self, inputs):
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:])
        outs = [self.fpn_convs[i](laterals[i]) for i in range(len(laterals))]
        if self.num_outs > len(outs):
            if not self.add_extra_convs:
                for _ in range(self.num_outs - len(laterals)):
                    outs.append(F.max_pool2d(outs[-1], 1, stride=2))
            else:
                outs.append(self.fpn_convs[len(laterals)](inputs[self.backbone_end_level - 1]))
                for i in range(len(laterals) + 1, self.num_outs):
                    outs.append(self.fpn_convs[i](outs[-1]))
        return outs


class RetinaHead(nn.Module):
    """stacked_convs ConvModules (3x3, ReLU) per branch, retina_cls (A * classes, sigmoid), retina_reg (A * 4)."""

    def __init__(self, num_classes, in_channels, stacked_convs=4, num_anchors=9):
        super().__init__()
        self.cls_convs = nn.ModuleList(ConvModule(in_channels, in_channels, 3, padding=1) for _ in range(stacked_convs))
        self.reg_convs = nn.ModuleList(ConvModule(in_channels, in_channels, 3, padding=1) for _ in range(stacked_convs))
        self.retina_cls = nn.Conv2d(in_channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, padding=1)

    def forward(self, feats):
        scores, deltas = [], []
        for x in feats:
            cls_feat, reg_feat = x, x
            for conv in self.cls_convs:
                cls_feat = conv(cls_feat)
            for conv in self.reg_convs:
                reg_feat = conv(reg_feat)
            scores.append(self.retina_cls(cls_feat))
            deltas.append(self.retina_reg(reg_feat))
        return scores, deltas


class RPNHead(nn.Module):
    """rpn_conv (3x3) + ReLU, rpn_cls (A, sigmoid), rpn_reg (A * 4)."""

    def __init__(self, in_channels, num_anchors=3):
        super().__init__()
        self.rpn_conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(in_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(in_channels, num_anchors * 4, 1)

    def forward(self, feats):
        hidden = [F.relu(self.rpn_conv(x)) for x in feats]
        return [self.rpn_cls(x) for x in hidden], [self.rpn_reg(x) for x in hidden]


class Shared2FCBBoxHead(nn.Module):
    """Flattened 7x7 RoI features -> two shared fcs with ReLU -> fc_cls (classes + 1, background last), fc_reg
    (4 per class, class-specific)."""

    def __init__(self, num_classes, in_channels, fc_out_channels=1024, roi_feat_size=7):
        super().__init__()
        self.shared_fcs = nn.ModuleList(
            [nn.Linear(in_channels * roi_feat_size**2, fc_out_channels), nn.Linear(fc_out_channels, fc_out_channels)]
        )
        self.fc_cls = nn.Linear(fc_out_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_out_channels, 4 * num_classes)

    def forward(self, x):
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    """num_convs ConvModules (3x3, ReLU), upsample (2x2 stride-2 deconv) + ReLU, conv_logits (one map per class)."""

    def __init__(self, num_classes, in_channels, num_convs=4):
        super().__init__()
        self.convs = nn.ModuleList(ConvModule(in_channels, in_channels, 3, padding=1) for _ in range(num_convs))
        self.upsample = nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x):
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))


def single_roi_extractor(feats, rois, output_size, strides, finest_scale=56):
    """SingleRoIExtractor with RoIAlign(sampling_ratio=0, aligned=True): level = floor(log2(sqrt(area) / 56)),
    clamped to the levels. `rois`: (n, 5) of (batch index, x1, y1, x2, y2)."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(min=0, max=len(feats) - 1).long()
    out = feats[0].new_zeros(len(rois), feats[0].shape[1], output_size, output_size)
    for level, (feat, stride) in enumerate(zip(feats, strides, strict=True)):
        index = levels == level
        out[index] = roi_align(feat, rois[index], output_size, 1 / stride, 0, aligned=True)
    return out


def anchors(base_size: int, scales: list[float], ratios: list[float], feat_size: tuple[int, int], stride: int):
    """AnchorGenerator (center_offset 0, scale_major): base anchors ratio-major, then every location row-major."""
    h_ratios = torch.sqrt(torch.tensor(ratios))
    w_ratios = 1 / h_ratios
    ws = (base_size * w_ratios[:, None] * torch.tensor(scales)[None, :]).view(-1)
    hs = (base_size * h_ratios[:, None] * torch.tensor(scales)[None, :]).view(-1)
    base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)
    ys, xs = torch.meshgrid(torch.arange(feat_size[0]) * stride, torch.arange(feat_size[1]) * stride, indexing="ij")
    shifts = torch.stack([xs.flatten(), ys.flatten(), xs.flatten(), ys.flatten()], dim=-1).float()
    return (shifts[:, None, :] + base[None, :, :]).view(-1, 4)


def octave_scales(octave_base_scale=4, scales_per_octave=3) -> list[float]:
    return [octave_base_scale * math.pow(2, i / scales_per_octave) for i in range(scales_per_octave)]
