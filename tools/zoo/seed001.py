"""Seed 001: two CBAM implementations and the ResnetFPN4_CBAM neck."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ModelSpec


class ConvMLPCBAM(nn.Module):
    """CBAM whose shared channel MLP is built from 1x1 convolutions
    (follows seed 001, "code 1": reduction 16, spatial kernel 7).

    Max- and avg-pooled [N, C, 1, 1] descriptors share a bias-free
    1x1conv -> ReLU -> 1x1conv bottleneck; the two results are added and a
    sigmoid gives the channel weights.  The refined map is then compressed to
    [max, mean] over channels, a bias-free 7x7 conv + sigmoid gives the spatial
    weights.  As in the seed, one nn.Sigmoid instance serves both gates.
    """

    def __init__(self, channels: int, reduction: int = 16, spatial_kernel: int = 7):
        super().__init__()
        self.pool_max = nn.AdaptiveMaxPool2d(1)
        self.pool_avg = nn.AdaptiveAvgPool2d(1)
        self.shared = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )
        self.spatial_conv = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2, bias=False)
        self.squash = nn.Sigmoid()

    def forward(self, x):
        ch = self.squash(self.shared(self.pool_max(x)) + self.shared(self.pool_avg(x)))
        x = ch * x
        mx, _ = torch.max(x, dim=1, keepdim=True)
        av = torch.mean(x, dim=1, keepdim=True)
        sp = self.squash(self.spatial_conv(torch.cat([mx, av], dim=1)))
        return sp * x


class ResidualConvCBAM(nn.Module):
    """CBAM with a leading 3x3 conv and a residual output
    (follows seed 001, "code 2").

    y = conv3x3(x); channel weights from a biased Linear MLP (width out*r,
    r=0.5) applied to the spatial mean and max of y; the weights are broadcast
    with ``.repeat`` to [N, C, H, W] and multiply y; a 7x7 conv (with bias) over
    [mean, max] of that result gives spatial weights, again broadcast with
    ``.repeat``; the block returns y + refined.  Deviation from the seed: the
    repeat counts use the channel count *after* conv1 (the seed used the input
    channel count, which only works when in == out).
    """

    def __init__(self, in_channels: int, out_channels: int, r: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.mlp_in = nn.Linear(out_channels, int(out_channels * r))
        self.mlp_out = nn.Linear(int(out_channels * r), out_channels)
        self.conv_spatial = nn.Conv2d(2, 1, kernel_size=7, stride=1, padding=3)
        self.channel_gate = nn.Sigmoid()
        self.spatial_gate = nn.Sigmoid()

    def _mlp(self, v):
        return self.mlp_out(F.relu(self.mlp_in(v)))

    def forward(self, x):
        y = self.conv1(x)
        _, c, h, w = y.shape
        avg = y.mean(dim=-1).mean(dim=-1)
        mx = y.max(dim=-1)[0].max(dim=-1)[0]
        wc = self.channel_gate(self._mlp(avg) + self._mlp(mx))           # [N, C]
        fc = torch.mul(y, wc.unsqueeze(-1).unsqueeze(-1).repeat((1, 1, h, w)))
        s_avg = fc.mean(dim=1, keepdim=True)
        s_max = fc.max(dim=1, keepdim=True)[0]
        ws = self.spatial_gate(self.conv_spatial(torch.cat((s_avg, s_max), dim=1)))  # [N, 1, H, W]
        fs = torch.mul(fc, ws.repeat((1, c, 1, 1)))
        return y + fs


class FPN4CBAM(nn.Module):
    """Four-stage CBAM backbone with an FPN-style transposed-conv neck
    (follows seed 001, "ResnetFPN4_CBAM"; the residual CBAM block is
    ResidualConvCBAM).

    Stages: conv3x3(+BN)+1 CBAM at full res; stride-2 conv(+BN)+2 CBAM (C);
    stride-2 conv(+BN)+2 CBAM (2C); stride-2 conv(+BN)+2 CBAM (4C).  Each stage
    output is brought back to the input resolution by a ConvTranspose2d
    (strides 1, 2, 4, 8) and the four maps are concatenated -> 10C channels.
    Input H, W must be multiples of 8.
    """

    def __init__(self, channels: int, block=ResidualConvCBAM):
        super().__init__()
        c = channels

        def stage(cin, cout, stride, n_blocks):
            layers = [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout)]
            layers += [block(cout, cout) for _ in range(n_blocks)]
            return nn.Sequential(*layers)

        self.stage1 = stage(c, c, 1, 1)
        self.stage2 = stage(c, c, 2, 2)
        self.stage3 = stage(c, 2 * c, 2, 2)
        self.stage4 = stage(2 * c, 4 * c, 2, 2)
        self.lift1 = nn.ConvTranspose2d(c, 2 * c, 3, stride=1, padding=1)
        self.lift2 = nn.ConvTranspose2d(c, 2 * c, 3, stride=2, padding=1, output_padding=(1, 1))
        self.lift3 = nn.ConvTranspose2d(2 * c, 2 * c, 3, stride=4, padding=1, output_padding=(3, 3))
        self.lift4 = nn.ConvTranspose2d(4 * c, 4 * c, 5, stride=8, padding=1, output_padding=(5, 5))

    def forward(self, x):
        x = self.stage1(x)
        p1 = self.lift1(x)
        x = self.stage2(x)
        p2 = self.lift2(x)
        x = self.stage3(x)
        p3 = self.lift3(x)
        x = self.stage4(x)
        p4 = self.lift4(x)
        return torch.cat((p1, p2, p3, p4), 1)


def specs():
    return [
        ModelSpec("seed001_cbam_convmlp", "001",
                  "CBAM with 1x1-conv shared MLP (r=16), spatial k=7, shared Sigmoid, C=32",
                  lambda full: ConvMLPCBAM(256 if full else 32, 16, 7), (2, 32, 16, 16), (2, 256, 56, 56)),
        ModelSpec("seed001_cbam_residual", "001",
                  "CBAM variant 2: conv3x3 16->32, Linear MLP r=0.5, .repeat broadcasting, residual y+Fs",
                  lambda full: ResidualConvCBAM(64, 128) if full else ResidualConvCBAM(16, 32),
                  (2, 16, 16, 16), (2, 64, 56, 56)),
        ModelSpec("seed001_resnetfpn4_cbam", "001",
                  "ResnetFPN4_CBAM: 4 stages conv+BN+residual CBAM blocks, ConvTranspose2d FPN neck, concat; C=8",
                  lambda full: FPN4CBAM(32 if full else 8), (2, 8, 32, 32), (2, 32, 128, 128)),
    ]
