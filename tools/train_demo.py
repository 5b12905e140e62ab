#!/usr/bin/env python3
"""Trains the demo CBAM network of Models/demo_shapes_cbam on a dataset it generates, exports
it with both exporters, writes sample PNGs, and measures where its spatial maps look.

The data: 64×64 colour images of cluttered, textured backgrounds (random stripes, blobs and
noise), each with one object of four classes — disc, square, triangle, cross — of random size,
colour and position. The model is told only the class, never the position. After training, on
held-back images, each spatial map's "attention mass ratio" is measured: the share of the map's
mass (its values minus the map's minimum, summed) that falls inside the object's box, divided by
the box's share of the image (1.0 = no preference for the object; higher = looks at it). It is
measured on PyTorch's maps and on cbam-run's (through the cbamrun Python package, when
libcbamrun.so is built) and written to Models/demo_shapes_cbam/attention_mass.json.

    python3 tools/train_demo.py                 # ~3–6 minutes on 2 cores
    python3 tools/train_demo.py --epochs 1      # a quick look

Deterministic for a given seed and torch version (one thread for the data).
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "Models" / "demo_shapes_cbam"
CLASSES = ["disc", "square", "triangle", "cross"]
SIZE = 64


# ------------------------------------------------------------------------------------ data

def background(rng):
    """A cluttered background: a colour gradient, stripes at a random angle, soft blobs, noise."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    base = rng.uniform(0.1, 0.9, 3)[:, None, None] + rng.uniform(-0.3, 0.3, 3)[:, None, None] * (x if rng.random() < 0.5 else y)
    angle = rng.uniform(0, math.pi)
    freq = rng.uniform(4, 14)
    stripes = 0.15 * np.sin(2 * math.pi * freq * (x * math.cos(angle) + y * math.sin(angle)) + rng.uniform(0, 6.3))
    image = base + stripes * rng.uniform(-1, 1, 3)[:, None, None]
    for _ in range(rng.integers(3, 8)):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.2)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        image += blob * rng.uniform(-0.4, 0.4, 3)[:, None, None]
    image += rng.normal(0, 0.06, image.shape)
    return image


def shape_mask(kind, size, rng):
    """A boolean mask of the object, `size`×`size`."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    c = (size - 1) / 2
    if kind == 0:
        return (y - c) ** 2 + (x - c) ** 2 <= (size / 2) ** 2
    if kind == 1:
        m = np.zeros((size, size), bool)
        b = max(1, size // 8)
        m[b:size - b, b:size - b] = True
        return m
    if kind == 2:
        return (y >= size * 0.1) & (np.abs(x - c) <= (y - size * 0.1) * 0.6)
    w = max(2, size // 4)
    return (np.abs(x - c) <= w / 2) | (np.abs(y - c) <= w / 2)


def sample(rng):
    """(image [3, 64, 64] in [0, 1], class, box (y0, x0, y1, x1))."""
    image = background(rng)
    kind = int(rng.integers(0, 4))
    size = int(rng.integers(14, 24))
    y0, x0 = int(rng.integers(0, SIZE - size)), int(rng.integers(0, SIZE - size))
    mask = shape_mask(kind, size, rng)
    colour = rng.uniform(0, 1, 3)
    # Keep the object visible against the local background.
    local = image[:, y0:y0 + size, x0:x0 + size].mean(axis=(1, 2))
    if np.abs(colour - local).sum() < 0.6:
        colour = 1 - local
    region = image[:, y0:y0 + size, x0:x0 + size]
    region[:, mask] = colour[:, None] + rng.normal(0, 0.03, (3, int(mask.sum())))
    return np.clip(image, 0, 1).astype(np.float32), kind, (y0, x0, y0 + size, x0 + size)


def dataset(count, seed):
    rng = np.random.default_rng(seed)
    images, labels, boxes = [], [], []
    for _ in range(count):
        image, label, box = sample(rng)
        images.append(image)
        labels.append(label)
        boxes.append(box)
    return np.stack(images), np.array(labels), np.array(boxes)


MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def normalise(images):
    return (images - MEAN) / STD


# ------------------------------------------------------------------------------------ model

class ChannelGate(nn.Module):
    """CBAM's channel attention: avg- and max-pooled descriptors through one shared MLP, summed, sigmoid."""

    def __init__(self, channels, ratio=4):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(channels, channels // ratio), nn.ReLU(), nn.Linear(channels // ratio, channels))

    def forward(self, x):
        n, c = x.shape[:2]
        weights = torch.sigmoid(self.mlp(F.adaptive_avg_pool2d(x, 1).view(n, c)) + self.mlp(F.adaptive_max_pool2d(x, 1).view(n, c)))
        return x * weights.view(n, c, 1, 1)


class SpatialGate(nn.Module):
    """CBAM's spatial attention: channel max and mean stacked, a 7×7 conv, sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        stats = torch.cat([x.max(dim=1, keepdim=True)[0], x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(stats))


class Stage(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.channel = ChannelGate(cout)
        self.spatial = SpatialGate()

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.spatial(self.channel(x))


class ShapesCBAM(nn.Module):
    """Three conv stages (64², 32², 16²), each ending in a CBAM block, then GAP and a classifier."""

    def __init__(self):
        super().__init__()
        self.stages = nn.Sequential(Stage(3, 16, 1), Stage(16, 32, 2), Stage(32, 64, 2))
        self.head = nn.Linear(64, len(CLASSES))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.stages(x), 1).flatten(1))


# ------------------------------------------------------------------------------------ maps

def torch_maps(model, x):
    """The spatial gates' sigmoid maps, in stage order, from forward hooks."""
    maps = []
    hooks = [stage.spatial.register_forward_hook(
        lambda module, inputs, output: maps.append(torch.sigmoid(module.conv(torch.cat(
            [inputs[0].max(dim=1, keepdim=True)[0], inputs[0].mean(dim=1, keepdim=True)], dim=1))).detach().numpy()))
        for stage in model.stages]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return maps


def mass_ratio(maps, boxes):
    """Per stage: mean over images of (map mass inside the box / total mass) / (box area / image area),
    the mass being the map minus its minimum (a map that is flat gives 1)."""
    ratios = []
    for m in maps:
        values = []
        scale = SIZE // m.shape[-1]
        for item, (y0, x0, y1, x1) in enumerate(boxes):
            plane = m[item, 0] - m[item, 0].min()
            total = plane.sum()
            if total <= 0:
                values.append(1.0)
                continue
            by0, bx0 = y0 // scale, x0 // scale
            by1, bx1 = -(-y1 // scale), -(-x1 // scale)
            inside = plane[by0:by1, bx0:bx1].sum() / total
            share = (by1 - by0) * (bx1 - bx0) / plane.size
            values.append(inside / share)
        ratios.append(float(np.mean(values)))
    return ratios


def save_png(path, image):
    from PIL import Image
    Image.fromarray((np.clip(image.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)).save(path)


# ------------------------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train", type=int, default=4000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    start = time.time()
    train_x, train_y, _ = dataset(args.train, args.seed)
    test_x, test_y, test_boxes = dataset(args.test, args.seed + 1)
    print(f"data: {args.train} training, {args.test} held-back images ({time.time() - start:.1f} s)")

    model = ShapesCBAM()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * math.ceil(args.train / 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    x_all, y_all = torch.from_numpy(normalise(train_x)), torch.from_numpy(train_y)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_all))
        total = 0.0
        for i in range(0, len(order), 64):
            index = order[i:i + 64]
            batch = x_all[index]
            if torch.rand(()) < 0.5:
                batch = batch.flip(-1)
            loss = F.cross_entropy(model(batch), y_all[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        model.eval()
        with torch.no_grad():
            accuracy = float((model(torch.from_numpy(normalise(test_x))).argmax(1).numpy() == test_y).mean())
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(order):.3f}, held-back accuracy {accuracy:.3f} ({time.time() - start:.0f} s)")

    model.eval()
    x_test = torch.from_numpy(normalise(test_x))
    example = x_test[:1]
    torch.onnx.export(model, (example,), str(out / "torchscript_op17.onnx"), opset_version=17, dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["input"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}})
        program.save(str(out / "dynamo_op20.onnx"))
    except Exception as error:  # the file stays absent; say so
        print(f"dynamo export failed: {error}", file=sys.stderr)

    # Samples: the first 4 held-back images (one per class where possible), their input and PyTorch's outputs.
    samples = out / "samples"
    samples.mkdir(exist_ok=True)
    chosen = []
    for label in range(len(CLASSES)):
        chosen.append(int(np.nonzero(test_y == label)[0][0]))
    for index in chosen:
        save_png(samples / f"{CLASSES[test_y[index]]}.png", test_x[index])
    batch = x_test[chosen]
    np.save(out / "input.npy", batch.numpy())
    with torch.no_grad():
        np.save(out / "output.npy", model(batch).numpy())
    for stage, m in enumerate(torch_maps(model, batch)):
        np.save(out / f"spatial_map_{stage}.npy", m)
    (out / "labels.txt").write_text("\n".join(CLASSES) + "\n")

    pytorch_ratios = mass_ratio(torch_maps(model, x_test), test_boxes)
    report = {"held_back_images": args.test, "held_back_accuracy": accuracy, "classes": CLASSES,
              "definition": "per stage: mean over held-back images of (spatial-map mass inside the object's box / "
                            "the map's total mass) / (box area / image area); mass = map minus its minimum; 1 = no preference",
              "pytorch": pytorch_ratios}
    try:
        sys.path.insert(0, str(ROOT / "python"))
        import cbamrun
        session = cbamrun.Session(str(out / "torchscript_op17.onnx"), threads=1)
        maps_by_stage = [[] for _ in pytorch_ratios]
        for i in range(0, len(x_test), 50):
            _, maps = session.run({"input": x_test[i:i + 50].numpy()}, attention=True)
            spatial = [m.array for m in maps if m.kind == "spatial"]
            for stage, m in enumerate(spatial):
                maps_by_stage[stage].append(m)
        ours = [np.concatenate(m) for m in maps_by_stage]
        report["cbam_run"] = mass_ratio(ours, test_boxes)
        report["cbam_run_vs_pytorch_max_abs_map_difference"] = float(max(np.abs(a - b).max() for a, b in zip(ours, torch_maps(model, x_test))))
    except Exception as error:
        report["cbam_run"] = f"not measured: {error}"
    (out / "attention_mass.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
