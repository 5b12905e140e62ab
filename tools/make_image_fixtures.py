#!/usr/bin/env python3
"""Makes the image fixtures of Tests/CBAMRuntimeTests/Fixtures/images/.

Source: matplotlib's sample photo grace_hopper.jpg (public domain, U.S. Navy), cut and
shrunk with PIL into a few small photos of odd sizes, saved as PNG (RGB, gray, palette +
Adam7 interlace, 16-bit RGBA) and JPEG (color 4:2:0, gray). PIL cannot write interlaced or
16-bit RGBA PNGs, so a small PNG writer below writes those (filter type 0 rows, zlib).

Expected tensors: torchvision's transforms on the PIL image, as a training script would run
them — Compose([Grayscale()?, Resize(N), CenterCrop(size), ToTensor(), Normalize(mean, std)?]),
saved as float32 .npy, and listed with their parameters in manifest.json. For `bgr` cases the
RGB result's channels are reversed (the ImageNet mean/std follow their colors).

It also prints how far torchvision's tensor path (decode_image → v2 transforms on uint8, and
on float) is from the PIL path, for the README.

Bad files for the refusal tests: a truncated PNG and JPEG, a PNG and a JPEG whose headers
claim huge sizes, a CMYK JPEG, and a file that is neither.

Run: python3 tools/make_image_fixtures.py  (torch, torchvision, Pillow, numpy, matplotlib)
"""
import io
import json
import os
import struct
import zlib

import matplotlib.cbook
import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.io import decode_image, ImageReadMode
from torchvision.transforms import v2

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CBAMRuntimeTests", "Fixtures", "images")
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, color_type, bit_depth, interlace=False, palette=None, trns=None):
    """samples: uint8/uint16 array [H, W, channels] (or [H, W] for gray/palette)."""
    a = np.asarray(samples)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, _ = a.shape
    dtype = ">u2" if bit_depth == 16 else "u1"

    def rows(sub):
        if bit_depth < 8:  # gray or palette samples packed big-end first, rows padded to a byte
            per = 8 // bit_depth
            out = b""
            for y in range(sub.shape[0]):
                v = sub[y, :, 0].astype(np.uint8)
                v = np.concatenate([v, np.zeros((-len(v)) % per, np.uint8)]).reshape(-1, per)
                packed = np.zeros(len(v), np.uint8)
                for k in range(per):
                    packed |= (v[:, k] << (8 - bit_depth * (k + 1))).astype(np.uint8)
                out += b"\x00" + packed.tobytes()
            return out
        return b"".join(b"\x00" + sub[y].astype(dtype).tobytes() for y in range(sub.shape[0]))

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += rows(sub)
    else:
        raw = rows(a)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        png += chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def photo(box, size):
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        im = Image.open(f).convert("RGB")
    return im.crop(box).resize(size, Image.LANCZOS)


def make_sources():
    files = {}
    photo((60, 40, 460, 300), (97, 61)).save(os.path.join(OUT, "hopper_97x61.png"))
    files["hopper_97x61.png"] = "RGB 8-bit PNG"
    photo((100, 120, 400, 320), (75, 50)).save(os.path.join(OUT, "hopper_75x50.jpg"), quality=90)
    files["hopper_75x50.jpg"] = "color JPEG, 4:2:0"
    photo((150, 60, 350, 330), (31, 45)).convert("L").save(os.path.join(OUT, "hopper_gray_31x45.jpg"), quality=92)
    files["hopper_gray_31x45.jpg"] = "grayscale JPEG"

    pal = photo((0, 0, 512, 600), (53, 71)).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    palette = np.array(pal.getpalette()[: 3 * 64]).reshape(64, 3)
    write_png(os.path.join(OUT, "hopper_palette_interlaced_53x71.png"), np.array(pal), 3, 8, interlace=True, palette=palette)
    files["hopper_palette_interlaced_53x71.png"] = "palette 8-bit PNG, Adam7 interlaced"

    rgb = np.array(photo((200, 150, 420, 330), (40, 33))).astype(np.uint16)
    noise = np.random.default_rng(11).integers(0, 256, size=rgb.shape, dtype=np.uint16)
    alpha = np.linspace(0, 65535, 40 * 33).reshape(33, 40, 1).astype(np.uint16)
    write_png(os.path.join(OUT, "hopper_rgba16_40x33.png"), np.concatenate([rgb * 256 + noise, alpha], axis=2), 6, 16)
    files["hopper_rgba16_40x33.png"] = "RGBA 16-bit PNG (low bytes noise, alpha a ramp)"

    # Palette with transparency (tRNS): PIL's convert("RGB") ignores it, and so must we.
    trns = bytes(range(0, 256, 8))[:32]
    write_png(os.path.join(OUT, "hopper_palette_trns_45x38.png"), np.array(pal)[:38, :45] % 32, 3, 8,
              palette=palette[:32], trns=trns)
    files["hopper_palette_trns_45x38.png"] = "palette 8-bit PNG with tRNS transparency"
    # 4-bit gray with a transparent gray level (tRNS).
    gray4 = (np.array(photo((50, 50, 450, 550), (27, 33)).convert("L")) >> 4).astype(np.uint8)
    write_png(os.path.join(OUT, "hopper_gray4_trns_27x33.png"), gray4, 0, 4, trns=struct.pack(">H", 7))
    files["hopper_gray4_trns_27x33.png"] = "4-bit gray PNG with tRNS transparency"

    gray = np.array(photo((120, 100, 380, 420), (29, 37)).convert("L"))
    write_png(os.path.join(OUT, "hopper_gray_29x37.png"), gray, 0, 8)
    files["hopper_gray_29x37.png"] = "gray 8-bit PNG"
    return files


def pil_pipeline(path, resize, crop, mean, std, gray):
    steps = []
    if gray:
        steps.append(T.Grayscale(1))
    if resize:
        steps.append(T.Resize(resize, interpolation=T.InterpolationMode.BILINEAR, antialias=True))
    if crop:
        steps.append(T.CenterCrop(crop))
    steps.append(T.ToTensor())
    if mean is not None:
        steps.append(T.Normalize(mean, std))
    img = Image.open(path).convert("RGB")
    return T.Compose(steps)(img)


def tensor_pipeline(path, resize, crop, gray, as_float):
    """torchvision's tensor path, values in [0, 1] (no normalisation)."""
    x = decode_image(path, mode=ImageReadMode.RGB)
    steps = []
    if gray:
        steps.append(v2.Grayscale(1))
    if as_float:
        steps.append(v2.ToDtype(torch.float32, scale=True))
    if resize:
        steps.append(v2.Resize(resize, antialias=True))
    if crop:
        steps.append(v2.CenterCrop(crop))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)(x)


CASES = [
    # name, file, resize, crop (H, W), normalisation, channels
    ("imagenet_default_32", "hopper_97x61.png", 36, (32, 32), "imagenet", "rgb"),
    ("jpeg_nonsquare_crop", "hopper_75x50.jpg", 48, (40, 44), None, "rgb"),
    ("palette_interlaced", "hopper_palette_interlaced_53x71.png", 24, (20, 20), ([0.5], [0.25]), "rgb"),
    ("rgba16_upscale", "hopper_rgba16_40x33.png", 64, (56, 56), None, "rgb"),
    ("gray_png_padded_crop", "hopper_gray_29x37.png", 20, (24, 24), None, "gray"),
    ("rgb_to_gray", "hopper_97x61.png", 29, (29, 17), None, "gray"),
    ("gray_jpeg_to_rgb", "hopper_gray_31x45.jpg", 45, (40, 30), "imagenet", "rgb"),
    ("bgr_imagenet", "hopper_75x50.jpg", 32, (32, 32), "imagenet", "bgr"),
    # Offsets 1.5 → 2 and 2.5 → 2: Python rounds halves to even.
    ("no_resize_odd_crop", "hopper_gray_29x37.png", None, (34, 24), None, "rgb"),
    ("palette_transparency", "hopper_palette_trns_45x38.png", 30, (28, 28), None, "rgb"),
    ("gray4_transparency", "hopper_gray4_trns_27x33.png", None, (33, 27), None, "rgb"),
]


def make_bad():
    good_png = open(os.path.join(OUT, "hopper_97x61.png"), "rb").read()
    good_jpg = open(os.path.join(OUT, "hopper_75x50.jpg"), "rb").read()
    with open(os.path.join(OUT, "bad_truncated.png"), "wb") as f:
        f.write(good_png[: len(good_png) // 2])
    with open(os.path.join(OUT, "bad_truncated.jpg"), "wb") as f:
        f.write(good_jpg[: len(good_jpg) // 2])
    # A valid header (CRC fixed) claiming 100000 × 100000 pixels, with the same small IDAT.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    with open(os.path.join(OUT, "bad_huge.png"), "wb") as f:
        f.write(good_png[:8] + chunk(b"IHDR", ihdr) + good_png[8 + 25:])
    # The JPEG's SOF0 frame header says 60000 × 60000.
    sof = good_jpg.index(b"\xff\xc0")
    huge = bytearray(good_jpg)
    huge[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)
    with open(os.path.join(OUT, "bad_huge.jpg"), "wb") as f:
        f.write(bytes(huge))
    Image.open(os.path.join(OUT, "hopper_75x50.jpg")).convert("CMYK").save(os.path.join(OUT, "bad_cmyk.jpg"), quality=90)
    with open(os.path.join(OUT, "bad_not_an_image.png"), "wb") as f:
        f.write(b"this is text, not a PNG\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    sources = make_sources()
    manifest = {"torch": torch.__version__, "torchvision": torchvision.__version__,
                "pillow": Image.__version__, "sources": sources, "cases": []}
    worst_uint8, worst_float = 0.0, 0.0
    for name, file, resize, crop, norm, channels in CASES:
        path = os.path.join(OUT, file)
        gray = channels == "gray"
        if norm == "imagenet":
            mean, std = IMAGENET
        elif norm is None:
            mean, std = None, None
        else:
            mean, std = norm
        x = pil_pipeline(path, resize, crop, mean, std, gray)
        if channels == "bgr":
            x = x.flip(0)
        np.save(os.path.join(OUT, name + ".npy"), x.unsqueeze(0).numpy().astype(np.float32))
        manifest["cases"].append({"name": name, "file": file, "resize": resize, "crop": list(crop) if crop else None,
                                  "mean": "imagenet" if norm == "imagenet" else mean,
                                  "std": "imagenet" if norm == "imagenet" else std,
                                  "channels": channels, "expected": name + ".npy", "shape": [1] + list(x.shape)})
        unnormalised = pil_pipeline(path, resize, crop, None, None, gray)
        u8 = tensor_pipeline(path, resize, crop, gray, as_float=False)
        f32 = tensor_pipeline(path, resize, crop, gray, as_float=True)
        d8 = (u8 - unnormalised).abs().max().item() * 255
        df = (f32 - unnormalised).abs().max().item() * 255
        worst_uint8, worst_float = max(worst_uint8, d8), max(worst_float, df)
        print(f"{name:24s} {file:38s} {list(x.shape)}  tensor path vs PIL: uint8 {d8:.3f}/255, float {df:.3f}/255")
    print(f"largest: uint8 tensor path {worst_uint8:.3f}/255, float tensor path {worst_float:.3f}/255")
    make_bad()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
