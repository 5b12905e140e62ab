"""Seed 002: SENet, SKNet, ResNeXt, ResNeSt split attention and CBAM-in-ResNet."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import ModelSpec, hidden


# ----------------------------------------------------------------------------- SE

class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation block (follows seed 002, "SEBlock").

    Global average pool -> bias-free Linear C->C/r -> ReLU -> Linear C/r->C ->
    Sigmoid (inside the excitation Sequential) -> channel-wise rescale.
    """

    def __init__(self, channels: int, r: int = 16):
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Linear(channels, hidden(channels, r), bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(hidden(channels, r), channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        n, c, _, _ = x.size()
        w = self.excite(self.squeeze(x).view(n, c)).view(n, c, 1, 1)
        return torch.mul(x, w)


def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class SEBasicBlock(nn.Module):
    """ResNet basic block with SE on the residual branch (seed 002, SE-ResNet,
    "SEBasicBlock" as referenced from senet.pytorch): conv3x3-BN-ReLU-conv3x3-BN
    -SE, plus (projected) identity, then ReLU."""
    expansion = 1

    def __init__(self, cin, planes, stride=1, r=16):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, r)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + idt)


class BasicBlock(nn.Module):
    """Plain ResNet basic block (used by the CBAM pre/post ResNet of seed 002)."""
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


def make_stage(block_fn, cin, planes, n, stride):
    blocks = [block_fn(cin, planes, stride)]
    blocks += [block_fn(planes, planes, 1) for _ in range(1, n)]
    return nn.Sequential(*blocks)


class SEResNet34(nn.Module):
    """SE-ResNet-34 (follows seed 002, "se_resnet34": ResNet with SEBasicBlock,
    layers [3, 4, 6, 3], adaptive average pool).  ``width`` is the stem width
    (64 in the original); stages use width, 2w, 4w, 8w."""

    def __init__(self, width=64, num_classes=1000, r=16):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        blk = lambda cin, p, s: SEBasicBlock(cin, p, s, r)  # noqa: E731
        self.layer1 = make_stage(blk, w, w, 3, 1)
        self.layer2 = make_stage(blk, w, 2 * w, 4, 2)
        self.layer3 = make_stage(blk, 2 * w, 4 * w, 6, 2)
        self.layer4 = make_stage(blk, 4 * w, 8 * w, 3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


# ----------------------------------------------------------------------------- SK

class SelectiveKernelConv(nn.Module):
    """Selective Kernel convolution (follows seed 002, "SKConv").

    Split: M branches of 3x3 conv (dilation 1+i, padding 1+i) + BN + ReLU.
    Fuse: sum of branches -> GAP -> 1x1 conv (C -> C/reduction, bias) -> ReLU ->
    1x1 conv (-> C*M).  Select: softmax across the M branches per channel
    ([N, M, C], nn.Softmax(dim=1)), weighted sum of the branch outputs.
    """

    def __init__(self, channels, stride=1, M=2, reduction=4):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(channels, channels, 3, stride, padding=1 + i, dilation=1 + i, bias=False),
                          nn.BatchNorm2d(channels), nn.ReLU())
            for i in range(M)])
        self.fuse = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels * M, 1),
        )
        self.select = nn.Softmax(dim=1)

    def forward(self, x):
        n, c = x.size(0), x.size(1)
        feats = [b(x) for b in self.branches]
        u = sum(feats)
        a = self.fuse(u).view(n, len(self.branches), c)
        a = self.select(a).view(n, -1, 1, 1)
        parts = torch.split(a, c, dim=1)
        return sum(w * f for w, f in zip(parts, feats))


class SKBottleneck(nn.Module):
    """SKNet bottleneck unit (follows seed 002, "SKUnit"): 1x1 conv -> SKConv ->
    1x1 conv with BN; in == out keeps the size (mid = in/2, stride 1), otherwise
    stride 2 with a 1x1 conv + BN projection; add then ReLU (add_relu)."""

    def __init__(self, cin, cout):
        super().__init__()
        if cin == cout:
            mid, stride = cin // 2, 1
            self.shortcut = nn.Sequential()
        else:
            mid, stride = cin, 2
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.reduce = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.sk = nn.Sequential(SelectiveKernelConv(mid, stride), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.expand = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.expand(self.sk(self.reduce(x)))
        return F.relu(self.shortcut(x) + out)


# ----------------------------------------------------------------------------- ResNeXt

class GroupedBottleneck(nn.Module):
    """ResNeXt block (follows seed 002, "Block"): 1x1 conv (-> gw) -> grouped
    3x3 conv (groups = cardinality, stride) -> 1x1 conv (-> 2*gw), each with BN +
    ReLU; shortcut 1x1 conv (with bias) + BN when shape changes; add; ReLU."""
    expansion = 2

    def __init__(self, cin, gw, cardinality=32, stride=1):
        super().__init__()
        cout = gw * self.expansion
        self.conv1 = nn.Sequential(nn.Conv2d(cin, gw, 1, bias=False), nn.BatchNorm2d(gw), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(gw, gw, 3, stride, 1, groups=cardinality, bias=False),
                                   nn.BatchNorm2d(gw), nn.ReLU())
        self.conv3 = nn.Sequential(nn.Conv2d(gw, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNeXt50(nn.Module):
    """ResNeXt-50 (follows seed 002, "ResNeXt"/"ResNeXt50_32x4d"): stem 7x7/2 +
    BN + ReLU + maxpool; stages of [3, 4, 6, 3] GroupedBottlenecks with group
    widths 2w, 4w, 8w, 16w (w = stem width, 64 originally), the first block of
    every stage has stride 2 (as in the seed); GAP + Linear."""

    def __init__(self, width=64, cardinality=32, num_classes=1000, layers=(3, 4, 6, 3)):
        super().__init__()
        w = width
        self.card = cardinality
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(w, 2 * w, layers[0])
        self.layer2 = self._stage(4 * w, 4 * w, layers[1])
        self.layer3 = self._stage(8 * w, 8 * w, layers[2])
        self.layer4 = self._stage(16 * w, 16 * w, layers[3])
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16 * w * GroupedBottleneck.expansion, num_classes)

    def _stage(self, cin, gw, n):
        blocks = [GroupedBottleneck(cin, gw, self.card, 2)]
        blocks += [GroupedBottleneck(gw * GroupedBottleneck.expansion, gw, self.card, 1) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.pool(x)
        return self.fc(x.view(x.size(0), -1))


# ----------------------------------------------------------------------------- ResNeSt

class RadixSoftmax(nn.Module):
    """r-Softmax (follows seed 002, "rSoftMax"): for radix > 1 reshape to
    [N, cardinality, radix, -1], swap to [N, radix, cardinality, -1], softmax
    over radix, flatten; for radix == 1 a plain sigmoid."""

    def __init__(self, radix, cardinality):
        super().__init__()
        self.radix = radix
        self.cardinality = cardinality
        self.softmax = nn.Softmax(dim=1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        n = x.size(0)
        if self.radix > 1:
            x = x.view(n, self.cardinality, self.radix, -1).transpose(1, 2)
            return self.softmax(x).reshape(n, -1)
        return self.sigmoid(x)


class SplitAttentionConv(nn.Module):
    """Split-Attention conv (follows seed 002, "SplAtConv2d"): grouped conv to
    channels*radix (groups = cardinality*radix) + BN + ReLU; the radix splits are
    summed, globally pooled, sent through grouped 1x1 fc1 + BN + ReLU and fc2
    (-> channels*radix), turned into weights by r-Softmax and used to mix the
    splits."""

    def __init__(self, cin, channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1, bias=False,
                 radix=2, reduction_factor=4):
        super().__init__()
        inter = max(cin * radix // reduction_factor, 32)
        self.radix = radix
        self.cardinality = groups
        self.channels = channels
        self.conv = nn.Conv2d(cin, channels * radix, kernel_size, stride, padding, dilation,
                              groups=groups * radix, bias=bias)
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter, 1, groups=groups)
        self.bn1 = nn.BatchNorm2d(inter)
        self.fc2 = nn.Conv2d(inter, channels * radix, 1, groups=groups)
        self.rsoftmax = RadixSoftmax(radix, groups)

    def forward(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        n, rc = x.shape[:2]
        if self.radix > 1:
            splits = torch.split(x, rc // self.radix, dim=1)
            gap = sum(splits)
        else:
            gap = x
        gap = F.adaptive_avg_pool2d(gap, 1)
        gap = self.relu(self.bn1(self.fc1(gap)))
        att = self.rsoftmax(self.fc2(gap)).view(n, -1, 1, 1)
        if self.radix > 1:
            atts = torch.split(att, rc // self.radix, dim=1)
            out = sum(a * s for a, s in zip(atts, splits))
        else:
            out = att * x
        return out.contiguous()


class RSoftmaxOnly(nn.Module):
    """Stand-alone r-Softmax over an fc2-like [N, radix*C, 1, 1] input (seed 002)."""

    def __init__(self, radix, cardinality):
        super().__init__()
        self.rs = RadixSoftmax(radix, cardinality)

    def forward(self, x):
        return self.rs(x)


# ----------------------------------------------------------------------------- CBAM

class CBAMChannelMap(nn.Module):
    """CBAM channel attention map (follows seed 002, "ChannelAttention"):
    avg- and max-pool, shared bias-free 1x1-conv MLP (ratio 16), sum, sigmoid.
    Returns the [N, C, 1, 1] map (the caller multiplies)."""

    def __init__(self, planes, ratio=16):
        super().__init__()
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.max = nn.AdaptiveMaxPool2d(1)
        self.mlp = nn.Sequential(nn.Conv2d(planes, hidden(planes, ratio), 1, bias=False), nn.ReLU(),
                                 nn.Conv2d(hidden(planes, ratio), planes, 1, bias=False))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.mlp(self.avg(x)) + self.mlp(self.max(x)))


class CBAMSpatialMap(nn.Module):
    """CBAM spatial attention map (follows seed 002, "SpatialAttention"):
    [mean, max] over channels, k x k conv (k = 3 or 7, no bias), sigmoid.
    Returns the [N, 1, H, W] map."""

    def __init__(self, kernel_size=7):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError("kernel size must be 3 or 7")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        a = torch.mean(x, dim=1, keepdim=True)
        m, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv(torch.cat([a, m], dim=1)))


class CBAMPlanes(nn.Module):
    """CBAM(planes) (follows seed 002, "CBAM"): x = ca(x)*x; x = sa(x)*x."""

    def __init__(self, planes, ratio=16):
        super().__init__()
        self.ca = CBAMChannelMap(planes, ratio)
        self.sa = CBAMSpatialMap()

    def forward(self, x):
        x = self.ca(x) * x
        return self.sa(x) * x


class ResNet18CBAMPrePost(nn.Module):
    """ResNet (basic blocks [2, 2, 2, 2]) with CBAM inserted before and after
    the residual stages (follows seed 002, the "ca/sa" + "ca1/sa1" ResNet):
    stem conv+BN+ReLU -> CBAM -> maxpool -> layer1..4 -> CBAM -> GAP -> fc."""

    def __init__(self, width=64, num_classes=1000, ratio=16):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.ca = CBAMChannelMap(w, ratio)
        self.sa = CBAMSpatialMap()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = make_stage(BasicBlock, w, w, 2, 1)
        self.layer2 = make_stage(BasicBlock, w, 2 * w, 2, 2)
        self.layer3 = make_stage(BasicBlock, 2 * w, 4 * w, 2, 2)
        self.layer4 = make_stage(BasicBlock, 4 * w, 8 * w, 2, 2)
        self.ca1 = CBAMChannelMap(8 * w, ratio)
        self.sa1 = CBAMSpatialMap()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.ca(x) * x
        x = self.sa(x) * x
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.ca1(x) * x
        x = self.sa1(x) * x
        x = self.avgpool(x)
        return self.fc(x.reshape(x.size(0), -1))


def specs():
    S = ModelSpec
    return [
        S("seed002_se_block", "002", "SEBlock (GAP, bias-free Linear MLP r=16, Sigmoid in Sequential), C=32",
          lambda full: SqueezeExcite(256 if full else 32, 16), (2, 32, 16, 16), (2, 256, 56, 56)),
        S("seed002_se_resnet34", "002",
          "SE-ResNet-34 (SEBasicBlock [3,4,6,3]); reduced: width 8, SE r=4, 10 classes, 64x64 input",
          lambda full: SEResNet34(64, 1000, 16) if full else SEResNet34(8, 10, 4),
          (2, 3, 64, 64), (2, 3, 224, 224), deep=True,
          note="reduced width 8 (full: 64); SE reduction 4 instead of 16 so the bottleneck keeps >=2 units",
          full_note="full size: width 64, r=16, 1000 classes"),
        S("seed002_skconv_s1", "002", "SKConv M=2 (dilated 3x3 branches, softmax over branches), C=32, stride 1",
          lambda full: SelectiveKernelConv(128 if full else 32, 1), (2, 32, 16, 16), (2, 128, 56, 56)),
        S("seed002_skconv_s2", "002", "SKConv M=2, C=32, stride 2",
          lambda full: SelectiveKernelConv(128 if full else 32, 2), (2, 32, 16, 16), (2, 128, 56, 56)),
        S("seed002_skunit_s1", "002", "SKUnit in=out=32 (mid 16, stride 1, identity shortcut, add+ReLU)",
          lambda full: SKBottleneck(256, 256) if full else SKBottleneck(32, 32), (2, 32, 16, 16), (2, 256, 56, 56)),
        S("seed002_skunit_s2", "002", "SKUnit 32->64 (mid 32, stride 2, conv+BN projection shortcut)",
          lambda full: SKBottleneck(256, 512) if full else SKBottleneck(32, 64), (2, 32, 16, 16), (2, 256, 56, 56)),
        S("seed002_resnext_block_s1", "002", "ResNeXt grouped Block in=64, gw=32, cardinality 8, stride 1",
          lambda full: GroupedBottleneck(1024, 512, 32, 1) if full else GroupedBottleneck(64, 32, 8, 1),
          (2, 64, 16, 16), (2, 1024, 14, 14)),
        S("seed002_resnext_block_s2", "002", "ResNeXt grouped Block in=32, gw=32, cardinality 8, stride 2 (projection)",
          lambda full: GroupedBottleneck(512, 512, 32, 2) if full else GroupedBottleneck(32, 32, 8, 2),
          (2, 32, 16, 16), (2, 512, 28, 28)),
        S("seed002_resnext50", "002",
          "ResNeXt-50 [3,4,6,3] grouped bottlenecks; reduced: width 8, cardinality 8 (8x2d), 10 classes, 64x64 input",
          lambda full: ResNeXt50(64, 32, 1000) if full else ResNeXt50(8, 8, 10),
          (2, 3, 64, 64), (2, 3, 224, 224), deep=True,
          note="reduced: stem width 8, group widths 16/32/64/128, cardinality 8 (full: 64, 32x4d)",
          full_note="full size: 32x4d, 1000 classes"),
        S("seed002_rsoftmax_r2", "002", "rSoftMax radix 2, cardinality 4 on a [N,128,1,1] tensor",
          lambda full: RSoftmaxOnly(2, 4), (2, 128, 1, 1)),
        S("seed002_splat_r1", "002", "SplAtConv2d radix 1 (sigmoid rSoftMax), in=32, channels=32, groups 1",
          lambda full: SplitAttentionConv(32, 32, radix=1, groups=1), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_splat_r2", "002", "SplAtConv2d radix 2, cardinality 2 (softmax rSoftMax), in=32, channels=32",
          lambda full: SplitAttentionConv(32, 32, radix=2, groups=2), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_channel_attention", "002", "ChannelAttention map only (1x1-conv MLP r=16), C=32 -> [N,C,1,1]",
          lambda full: CBAMChannelMap(32), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_spatial_attention_k7", "002", "SpatialAttention map only, k=7 -> [N,1,H,W]",
          lambda full: CBAMSpatialMap(7), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_spatial_attention_k3", "002", "SpatialAttention map only, k=3 -> [N,1,H,W]",
          lambda full: CBAMSpatialMap(3), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_cbam", "002", "CBAM(planes=32): x=ca(x)*x; x=sa(x)*x",
          lambda full: CBAMPlanes(32), (2, 32, 16, 16), (2, 64, 56, 56)),
        S("seed002_resnet18_cbam_prepost", "002",
          "ResNet-18 with CBAM before (after stem) and after the residual stages; reduced: width 8, ratio 4, 10 classes",
          lambda full: ResNet18CBAMPrePost(64, 1000, 16) if full else ResNet18CBAMPrePost(8, 10, 4),
          (2, 3, 64, 64), (2, 3, 224, 224), deep=True,
          note="reduced width 8 (full: 64); channel-attention ratio 4 instead of 16 at reduced width",
          full_note="full size: width 64, ratio 16, 1000 classes"),
    ]
