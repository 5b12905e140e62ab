"""Seed 004: the official-style CBAM (BasicConv, ChannelGate, SpatialGate) and ResNet-50 + CBAM."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ModelSpec


class ConvBNAct(nn.Module):
    """Conv2d + optional BatchNorm (eps 1e-5, momentum 0.01) + optional ReLU
    (follows seed 004, "BasicConv")."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0, dilation=1, groups=1, relu=True, bn=True,
                 bias=False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation, groups, bias=bias)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


def lse_pool(x):
    """Numerically stable log-sum-exp over H*W -> [N, C, 1] (seed 004, logsumexp_2d)."""
    flat = x.view(x.size(0), x.size(1), -1)
    peak, _ = torch.max(flat, dim=2, keepdim=True)
    return peak + (flat - peak).exp().sum(dim=2, keepdim=True).log()


class ChannelGate004(nn.Module):
    """Channel gate (follows seed 004, "ChannelGate"): for each pool type in
    ``pools`` (avg, max, lp (p=2), lse) the map is pooled over its whole
    spatial extent -- the pool window is taken from the input size -- flattened
    and sent through a shared Linear(C, C/r) -> ReLU -> Linear(C/r, C) MLP (with
    bias); the MLP outputs are summed, passed through a sigmoid and expanded
    over H, W."""

    def __init__(self, channels, reduction=16, pools=("avg", "max")):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, channels // reduction), nn.ReLU(),
                                 nn.Linear(channels // reduction, channels))
        self.pools = tuple(pools)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        total = None
        win = (x.size(2), x.size(3))
        for p in self.pools:
            if p == "avg":
                raw = self.mlp(F.avg_pool2d(x, win, stride=win))
            elif p == "max":
                raw = self.mlp(F.max_pool2d(x, win, stride=win))
            elif p == "lp":
                raw = self.mlp(F.lp_pool2d(x, 2, win, stride=win))
            elif p == "lse":
                raw = self.mlp(lse_pool(x))
            else:
                raise ValueError(p)
            total = raw if total is None else total + raw
        scale = self.sigmoid(total).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class MaxMeanPool(nn.Module):
    """Channel pool: concat of channel max and channel mean (seed 004, "ChannelPool")."""

    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate004(nn.Module):
    """Spatial gate (follows seed 004, "SpatialGate"): ChannelPool -> 7x7
    ConvBNAct(2 -> 1, BN, no ReLU) -> sigmoid -> broadcast multiply."""

    def __init__(self, kernel_size=7):
        super().__init__()
        self.compress = MaxMeanPool()
        self.spatial = ConvBNAct(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.spatial(self.compress(x)))


class CBAM004(nn.Module):
    """Official-style CBAM (follows seed 004, "CBAM"): ChannelGate, then
    SpatialGate unless ``no_spatial``."""

    def __init__(self, channels, reduction=16, pools=("avg", "max"), no_spatial=False):
        super().__init__()
        self.channel_gate = ChannelGate004(channels, reduction, pools)
        self.spatial_gate = None if no_spatial else SpatialGate004()

    def forward(self, x):
        x = self.channel_gate(x)
        if self.spatial_gate is not None:
            x = self.spatial_gate(x)
        return x


class CBAMBottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3/stride, 1x1 x4, BN after each) with CBAM on
    the residual branch after the last BN, before the identity add (the
    placement of the official CBAM ResNet described in seed 004)."""
    expansion = 4

    def __init__(self, cin, planes, stride=1, reduction=16):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.cbam = CBAM004(cout, reduction)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.cbam(self.bn3(self.conv3(out)))
        return self.relu(out + idt)


class ResNet50CBAM(nn.Module):
    """ResNet-50 ([3, 4, 6, 3] bottlenecks) with CBAM in every bottleneck
    (follows seed 004).  ``width`` = stem width / first-stage planes (64
    originally)."""

    def __init__(self, width=64, num_classes=1000, reduction=16):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], w
        for i, (n, s) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
            planes = w * (2 ** i)
            blocks = [CBAMBottleneck(cin, planes, s, reduction)]
            cin = planes * 4
            blocks += [CBAMBottleneck(cin, planes, 1, reduction) for _ in range(1, n)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


STATIC_POOL_NOTE = ("ChannelGate takes its pool window from the input size (x.size(2), x.size(3)), so H and W "
                    "are fixed in every export; with a dynamic batch the TorchScript exporter sees a "
                    "non-constant kernel and needs a static export, dynamo specializes H, W only")
LSE_NOTE = ("LSE pooling flattens H*W with view() and needs no pool window, so both exporters keep the "
            "batch dynamic")


def specs():
    S = ModelSpec
    out = [S("seed004_basicconv", "004", "BasicConv: 3x3 conv 16->32 + BN(momentum 0.01) + ReLU",
             lambda full: ConvBNAct(16, 32, 3, padding=1), (2, 16, 16, 16), (2, 64, 56, 56))]
    for name, pools in (("avg", ("avg",)), ("max", ("max",)), ("lp", ("lp",)), ("lse", ("lse",)),
                        ("avg_max", ("avg", "max")), ("all", ("avg", "max", "lp", "lse"))):
        out.append(S(f"seed004_channelgate_{name}", "004",
                     f"ChannelGate pool_types={list(pools)}, C=32, r=16",
                     (lambda pools: lambda full: ChannelGate004(256 if full else 32, 16, pools))(pools),
                     (2, 32, 16, 16), (2, 256, 56, 56),
                     note=LSE_NOTE if pools == ("lse",) else STATIC_POOL_NOTE))
    out += [
        S("seed004_spatialgate", "004", "SpatialGate: ChannelPool (max, mean) + 7x7 BasicConv with BN, no ReLU + sigmoid",
          lambda full: SpatialGate004(), (2, 32, 16, 16), (2, 256, 56, 56)),
        S("seed004_cbam", "004", "official CBAM(32, r=16, pool avg+max) with SpatialGate",
          lambda full: CBAM004(256 if full else 32), (2, 32, 16, 16), (2, 256, 56, 56), note=STATIC_POOL_NOTE),
        S("seed004_cbam_nospatial", "004", "official CBAM(32, r=16, pool avg+max), no_spatial=True",
          lambda full: CBAM004(256 if full else 32, no_spatial=True), (2, 32, 16, 16), (2, 256, 56, 56),
          note=STATIC_POOL_NOTE),
        S("seed004_resnet50_cbam", "004",
          "ResNet-50 with CBAM in every bottleneck; reduced: width 8, 10 classes, 64x64 input",
          lambda full: ResNet50CBAM(64, 1000) if full else ResNet50CBAM(8, 10),
          (2, 3, 64, 64), (2, 3, 224, 224), deep=True,
          note="reduced width 8 (full: 64), CBAM r=16; " + STATIC_POOL_NOTE,
          full_note="full size: width 64, 1000 classes"),
    ]
    return out
