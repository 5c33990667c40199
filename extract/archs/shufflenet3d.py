"""3D ShuffleNet and 3D ShuffleNetV2 as Efficient-3DCNNs defines them (Köpüklü, Kose, Gunduz and
Rigoll, "Resource Efficient 3D Convolutional Neural Networks", ICCVW 2019; github.com/okankop/
Efficient-3DCNNs, `models/shufflenet.py` and `models/shufflenetv2.py`).

Module and parameter names, shapes and the forward pass are the official ones, quirks included
(the `banch1`/`banch2` spelling, the first ShuffleNet block's ungrouped 1x1 conv only when the
stem is 24 channels wide), so the published checkpoints load strictly. Those were saved from
`nn.DataParallel` inside `{"state_dict": ...}`; `extract.weights.load_into` unwraps both.

Input: float [B, 3, T, 112, 112] (the authors train on 16 frames), normalized as their `main.py`
does by default (see `EFFICIENT3D_MEAN`). Output: class logits, or, with `classifier` replaced
by an identity, the globally average-pooled features the classifier reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ACTIVITYNET_MEAN",
    "EFFICIENT3D_MEAN",
    "EFFICIENT3D_STD",
    "SHUFFLENET_V1_WIDTHS",
    "SHUFFLENET_V2_WIDTHS",
    "ShuffleNet3D",
    "ShuffleNetV2_3D",
    "channel_shuffle",
]

# Efficient-3DCNNs' defaults (opts.py: norm_value=1, mean_dataset="activitynet", no std_norm;
# mean.py): pixels stay in [0, 255], the ActivityNet mean is subtracted, nothing is divided. On
# [0, 1] inputs, as our backbones normalize ((x / 255 - mean) / std), that is mean = m / 255 and
# std = 1 / 255.
ACTIVITYNET_MEAN = (114.7748, 107.7354, 99.4750)
EFFICIENT3D_MEAN = (ACTIVITYNET_MEAN[0] / 255, ACTIVITYNET_MEAN[1] / 255, ACTIVITYNET_MEAN[2] / 255)
EFFICIENT3D_STD = (1 / 255, 1 / 255, 1 / 255)

# Stage widths per group count (ShuffleNet) and per width multiplier (ShuffleNetV2), as the
# official constructors list them; index 0 is the stem.
SHUFFLENET_V1_WIDTHS = {
    1: (24, 144, 288, 567),
    2: (24, 200, 400, 800),
    3: (24, 240, 480, 960),
    4: (24, 272, 544, 1088),
    8: (24, 384, 768, 1536),
}
SHUFFLENET_V2_WIDTHS = {
    0.25: (24, 32, 64, 128, 1024),
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 224, 488, 976, 2048),
}
STAGE_BLOCKS = (4, 8, 4)  # blocks per stage, both versions
DROPOUT = 0.2  # the classifier's dropout (inactive in eval mode)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[B, C, T, H, W] -> the same with channels reordered from (groups, C/groups) to
    (C/groups, groups), so the next grouped conv mixes every group."""
    batch, channels, depth, height, width = x.shape
    x = x.view(batch, groups, channels // groups, depth, height, width)
    return x.transpose(1, 2).contiguous().view(batch, channels, depth, height, width)


def conv_bn(inp: int, oup: int, stride: int | tuple[int, int, int]) -> nn.Sequential:
    """The stem: 3x3x3 conv, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv3d(inp, oup, kernel_size=3, stride=stride, padding=(1, 1, 1), bias=False),
        nn.BatchNorm3d(oup),
        nn.ReLU(inplace=True),
    )


def conv_1x1x1_bn(inp: int, oup: int) -> nn.Sequential:
    """ShuffleNetV2's last conv: 1x1x1 conv, batch norm, ReLU."""
    return nn.Sequential(
        nn.Conv3d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm3d(oup),
        nn.ReLU(inplace=True),
    )


def _classifier(features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(features, num_classes))


def _global_average(x: torch.Tensor) -> torch.Tensor:
    # As the official forward: one average pool over the whole (T, H, W) extent, then flatten.
    return F.avg_pool3d(x, x.shape[-3:]).flatten(1)


# --- ShuffleNet (v1) -----------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ShuffleNet unit: grouped 1x1 conv, channel shuffle, depthwise 3x3x3 conv, grouped 1x1
    conv; added to the input (stride 1) or concatenated with its average pool (stride 2)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int) -> None:
        super().__init__()
        self.stride = stride
        self.groups = groups
        mid_planes = out_planes // 4
        if self.stride == 2:
            out_planes = out_planes - in_planes  # the pooled input fills the rest
        # The official code leaves the first 1x1 conv ungrouped only when its input is the
        # 24-channel stem, i.e. at width 1.0; wider stems are grouped. Kept for key shapes.
        first_groups = 1 if in_planes == 24 else groups
        self.conv1 = nn.Conv3d(
            in_planes, mid_planes, kernel_size=1, groups=first_groups, bias=False
        )
        self.bn1 = nn.BatchNorm3d(mid_planes)
        self.conv2 = nn.Conv3d(
            mid_planes,
            mid_planes,
            kernel_size=3,
            stride=stride,
            padding=1,
            groups=mid_planes,
            bias=False,
        )
        self.bn2 = nn.BatchNorm3d(mid_planes)
        self.conv3 = nn.Conv3d(mid_planes, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        if stride == 2:
            self.shortcut = nn.AvgPool3d(kernel_size=(2, 3, 3), stride=2, padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = channel_shuffle(out, self.groups)
        out = self.bn2(self.conv2(out))
        out = self.bn3(self.conv3(out))
        if self.stride == 2:
            return self.relu(torch.cat([out, self.shortcut(x)], 1))
        return self.relu(out + x)


class ShuffleNet3D(nn.Module):
    """3D ShuffleNet (v1) with `groups` groups in its 1x1 convs (the published Kinetics models
    use 3) and `width_mult` times the channels; `classifier` = Sequential(Dropout, Linear)."""

    def __init__(self, groups: int = 3, width_mult: float = 1.0, num_classes: int = 600) -> None:
        super().__init__()
        if groups not in SHUFFLENET_V1_WIDTHS:
            raise ValueError(f"groups must be one of {sorted(SHUFFLENET_V1_WIDTHS)}, got {groups}")
        self.num_classes = num_classes
        self.groups = groups
        out_planes = [int(planes * width_mult) for planes in SHUFFLENET_V1_WIDTHS[groups]]
        self.in_planes = out_planes[0]
        self.conv1 = conv_bn(3, self.in_planes, stride=(1, 2, 2))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(out_planes[1], STAGE_BLOCKS[0], groups)
        self.layer2 = self._make_layer(out_planes[2], STAGE_BLOCKS[1], groups)
        self.layer3 = self._make_layer(out_planes[3], STAGE_BLOCKS[2], groups)
        self.classifier = _classifier(out_planes[3], num_classes)

    def _make_layer(self, out_planes: int, num_blocks: int, groups: int) -> nn.Sequential:
        layers = []
        for i in range(num_blocks):
            stride = 2 if i == 0 else 1
            layers.append(Bottleneck(self.in_planes, out_planes, stride=stride, groups=groups))
            self.in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(self.conv1(x))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.classifier(_global_average(out))


# --- ShuffleNetV2 --------------------------------------------------------------------------------


def _branch(inp: int, oup: int, stride: int, pointwise_first: bool) -> nn.Sequential:
    # The official branches, layer for layer: banch2 is pw -> dw -> pw-linear (ReLU after the
    # pointwise convs), banch1 is dw -> pw-linear.
    layers: list[nn.Module] = []
    channels = inp
    if pointwise_first:
        layers += [
            nn.Conv3d(inp, oup, 1, 1, 0, bias=False),
            nn.BatchNorm3d(oup),
            nn.ReLU(inplace=True),
        ]
        channels = oup
    layers += [
        nn.Conv3d(channels, channels, 3, stride, 1, groups=channels, bias=False),
        nn.BatchNorm3d(channels),
        nn.Conv3d(channels, oup, 1, 1, 0, bias=False),
        nn.BatchNorm3d(oup),
        nn.ReLU(inplace=True),
    ]
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels in half and transforms one half
    (`banch2`); stride 2 transforms the whole input twice (`banch1`, `banch2`) and concatenates;
    both end with a shuffle of 2 groups."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        oup_inc = oup // 2
        if stride == 1:
            self.banch2 = _branch(oup_inc, oup_inc, stride, pointwise_first=True)
        else:
            self.banch1 = _branch(inp, oup_inc, stride, pointwise_first=False)
            self.banch2 = _branch(inp, oup_inc, stride, pointwise_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            half = x.shape[1] // 2
            out = torch.cat((x[:, :half], self.banch2(x[:, half:])), 1)
        else:
            out = torch.cat((self.banch1(x), self.banch2(x)), 1)
        return channel_shuffle(out, 2)


class ShuffleNetV2_3D(nn.Module):
    """3D ShuffleNetV2 at `width_mult` (0.25, 0.5, 1.0, 1.5 or 2.0); `classifier` =
    Sequential(Dropout, Linear) on the pooled output of `conv_last`."""

    def __init__(
        self, num_classes: int = 600, sample_size: int = 112, width_mult: float = 1.0
    ) -> None:
        super().__init__()
        if sample_size % 16:
            raise ValueError(f"sample_size must be a multiple of 16, got {sample_size}")
        if width_mult not in SHUFFLENET_V2_WIDTHS:
            raise ValueError(
                f"width_mult must be one of {sorted(SHUFFLENET_V2_WIDTHS)}, got {width_mult}"
            )
        self.stage_repeats = list(STAGE_BLOCKS)
        self.stage_out_channels = [-1, *SHUFFLENET_V2_WIDTHS[width_mult]]
        input_channel = self.stage_out_channels[1]
        self.conv1 = conv_bn(3, input_channel, stride=(1, 2, 2))
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        blocks = []
        for stage, repeats in enumerate(self.stage_repeats):
            output_channel = self.stage_out_channels[stage + 2]
            for i in range(repeats):
                blocks.append(InvertedResidual(input_channel, output_channel, 2 if i == 0 else 1))
                input_channel = output_channel
        self.features = nn.Sequential(*blocks)
        self.conv_last = conv_1x1x1_bn(input_channel, self.stage_out_channels[-1])
        self.classifier = _classifier(self.stage_out_channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.features(self.maxpool(self.conv1(x)))
        return self.classifier(_global_average(self.conv_last(out)))
