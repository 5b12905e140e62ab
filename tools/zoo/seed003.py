"""Seed 003: CAM / SAM / residual CBAM and VGG-19-BN + CBAM for CIFAR-100."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ModelSpec


class CAM003(nn.Module):
    """Channel attention module (follows seed 003, "CAM"): adaptive max and
    avg pooling, shared Linear(C, C/r, bias) -> ReLU -> Linear(C/r, C, bias),
    sum, sigmoid, multiply with the input."""

    def __init__(self, channels, r):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, channels // r, bias=True), nn.ReLU(inplace=True),
                                 nn.Linear(channels // r, channels, bias=True))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        b, c, _, _ = x.size()
        mx = F.adaptive_max_pool2d(x, output_size=1)
        av = F.adaptive_avg_pool2d(x, output_size=1)
        s = self.mlp(mx.view(b, c)).view(b, c, 1, 1) + self.mlp(av.view(b, c)).view(b, c, 1, 1)
        return self.sigmoid(s) * x


class SAM003(nn.Module):
    """Spatial attention module (follows seed 003, "SAM"): channel max and mean
    (unsqueezed), concat [max, mean], 7x7 conv (bias configurable, default
    off), sigmoid, multiply with the input."""

    def __init__(self, bias=False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=7, stride=1, padding=3, dilation=1, bias=bias)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        mx = torch.max(x, 1)[0].unsqueeze(1)
        av = torch.mean(x, 1).unsqueeze(1)
        return self.sigmoid(self.conv(torch.cat((mx, av), dim=1))) * x


class CBAM003(nn.Module):
    """CBAM with residual output (follows seed 003, "CBAM(channels, r)"):
    out = SAM(CAM(x)) + x."""

    def __init__(self, channels, r):
        super().__init__()
        self.cam = CAM003(channels, r)
        self.sam = SAM003(bias=False)

    def forward(self, x):
        return self.sam(self.cam(x)) + x


VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


class VGG19BNCBAM(nn.Module):
    """VGG-19 with BatchNorm for CIFAR-100 (32x32, 100 classes) with a CBAM003
    block (r=4, the ratio quoted by seed 003) after the last conv of each of
    the five stages, before its max-pool (follows seed 003's "VGG19 + CBAM"
    experiment).  ``div`` divides every conv width (1 = original)."""

    def __init__(self, div=1, num_classes=100, r=4):
        super().__init__()
        layers = []
        cin = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(CBAM003(cin, r))
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = v // div
                layers += [nn.Conv2d(cin, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
                cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(torch.flatten(x, 1))


def specs():
    return [
        ModelSpec("seed003_cam", "003", "CAM (max+avg pool, shared biased Linear MLP r=4, sigmoid), C=32",
                  lambda full: CAM003(32, 4), (2, 32, 16, 16), (2, 32, 56, 56)),
        ModelSpec("seed003_sam", "003", "SAM (channel max+mean, 7x7 conv no bias, sigmoid)",
                  lambda full: SAM003(False), (2, 32, 16, 16), (2, 32, 56, 56)),
        ModelSpec("seed003_cbam", "003", "CBAM(channels=32, r=4): SAM(CAM(x)) + x",
                  lambda full: CBAM003(32, 4), (2, 32, 16, 16), (2, 32, 56, 56)),
        ModelSpec("seed003_vgg19bn_cbam", "003",
                  "VGG-19-BN + CBAM per stage, CIFAR-100 (32x32, 100 classes); reduced: widths /16",
                  lambda full: VGG19BNCBAM(1 if full else 16, 100, 4), (2, 3, 32, 32), (2, 3, 32, 32), deep=True,
                  note="reduced: conv widths divided by 16 (4..32), same 16-conv topology; CBAM r=4 (hidden width 1 in stage 1)",
                  full_note="full size: widths 64..512"),
    ]
