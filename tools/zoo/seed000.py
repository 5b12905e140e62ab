"""Seed 000: CBAM with FC or ECA-style (1-D conv) channel attention, spatial k=3/5/7."""
import math

import torch
import torch.nn as nn

from .common import ModelSpec


class FCChannelGate(nn.Module):
    """Channel attention, MLP flavour (follows seed 000, "ChannelAttentionFC").

    Global average and global max pooling give two [N, C] descriptors; both go
    through the same bias-free Linear -> ReLU -> Linear bottleneck (C -> C/ratio
    -> C), are summed, squashed by a sigmoid and rescale the input channels.
    """

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        self.squeeze_avg = nn.AdaptiveAvgPool2d(1)
        self.squeeze_max = nn.AdaptiveMaxPool2d(1)
        self.bottleneck = nn.Sequential(
            nn.Linear(channels, channels // ratio, bias=False),
            nn.ReLU(),
            nn.Linear(channels // ratio, channels, bias=False),
        )
        self.gate = nn.Sigmoid()

    def forward(self, x):
        n, c = x.shape[0], x.shape[1]
        d_avg = self.squeeze_avg(x).view(n, c)
        d_max = self.squeeze_max(x).view(n, c)
        weights = self.gate(self.bottleneck(d_avg) + self.bottleneck(d_max))  # [N, C]
        return x * weights.view(n, c, 1, 1)


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA adaptive kernel: |(log2 C + b) / gamma| rounded down, forced odd."""
    k = int(abs((math.log(channels, 2) + b) / gamma))
    return k if k % 2 == 1 else k + 1


class ConvChannelGate(nn.Module):
    """Channel attention, ECA flavour (follows seed 000, "ChannelAttentionConv").

    Avg- and max-pooled channel descriptors are laid out as a 1 x C sequence and
    filtered by one shared bias-free Conv1d whose kernel size adapts to log2(C)
    (gamma=2, b=1); the two responses are summed and passed through a sigmoid.
    """

    def __init__(self, channels: int, gamma: int = 2, b: int = 1):
        super().__init__()
        k = eca_kernel_size(channels, gamma, b)
        self.kernel_size = k
        self.squeeze_avg = nn.AdaptiveAvgPool2d(1)
        self.squeeze_max = nn.AdaptiveMaxPool2d(1)
        self.mix = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def _channel_conv(self, d):
        # [N, C, 1, 1] -> [N, 1, C] -> conv -> [N, C, 1, 1]
        seq = d.squeeze(-1).transpose(-1, -2)
        return self.mix(seq).transpose(-1, -2).unsqueeze(-1)

    def forward(self, x):
        s = self._channel_conv(self.squeeze_avg(x)) + self._channel_conv(self.squeeze_max(x))
        return x * self.gate(s)


class MeanMaxSpatialGate(nn.Module):
    """Spatial attention (follows seed 000, "SpatialAttention").

    Channel-wise max and mean maps are stacked as [max, mean] -> [N, 2, H, W],
    fused by a bias-free k x k conv (k in {3, 5, 7}, 'same' padding) into one
    map, squashed by a sigmoid and multiplied onto the input.
    """

    def __init__(self, k: int = 7):
        super().__init__()
        if k not in (3, 5, 7):
            raise ValueError("spatial kernel must be 3, 5 or 7")
        self.fuse = nn.Conv2d(2, 1, kernel_size=k, stride=1, padding=(k - 1) // 2, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        mean_map = torch.mean(x, dim=1, keepdim=True)
        max_map, _ = torch.max(x, dim=1, keepdim=True)
        m = self.gate(self.fuse(torch.cat((max_map, mean_map), dim=1)))
        return x * m


class Seed000CBAM(nn.Module):
    """CBAM block (follows seed 000, "CBAMBlock"): channel gate ("FC" or "Conv")
    then spatial gate, applied sequentially to the feature map."""

    def __init__(self, mode: str = "Conv", spatial_kernel: int = 7, channels: int = 32,
                 ratio: int = 4, gamma: int = 2, b: int = 1):
        super().__init__()
        if mode == "FC":
            self.channel = FCChannelGate(channels, ratio)
        elif mode == "Conv":
            self.channel = ConvChannelGate(channels, gamma, b)
        else:
            raise ValueError("mode must be 'FC' or 'Conv'")
        self.spatial = MeanMaxSpatialGate(spatial_kernel)

    def forward(self, x):
        return self.spatial(self.channel(x))


C, HW = 32, 16
FULL = (2, 256, 56, 56)


def specs():
    s = []
    s.append(ModelSpec("seed000_ca_fc", "000", "ChannelAttentionFC (avg+max pool, shared bias-free Linear MLP r=4, sigmoid), C=32",
                       lambda full: FCChannelGate(FULL[1] if full else C, 4), (2, C, HW, HW), FULL))
    s.append(ModelSpec("seed000_ca_conv", "000", "ChannelAttentionConv (ECA-style Conv1d, k from log2(C), gamma=2, b=1), C=32 -> k=3",
                       lambda full: ConvChannelGate(FULL[1] if full else C), (2, C, HW, HW), FULL))
    for k in (3, 5, 7):
        s.append(ModelSpec(f"seed000_sa_k{k}", "000", f"SpatialAttention (channel max+mean, concat, conv k={k}, sigmoid)",
                           (lambda k: lambda full: MeanMaxSpatialGate(k))(k), (2, C, HW, HW), FULL))
    for mode in ("FC", "Conv"):
        for k in (3, 5, 7):
            s.append(ModelSpec(
                f"seed000_cbam_{mode.lower()}_k{k}", "000", f"CBAMBlock {mode} mode, spatial k={k}, C=32",
                (lambda mode, k: lambda full: Seed000CBAM(mode, k, FULL[1] if full else C))(mode, k),
                (2, C, HW, HW), FULL))
    return s
