"""cbamrun.load_image against torchvision's preprocessing (fixtures stored by
tools/make_image_fixtures.py from torchvision and PIL), and its refusals."""
import json
from pathlib import Path

import numpy as np
import pytest

import cbamrun

FIXTURES = Path(__file__).resolve().parents[2] / "Tests" / "CBAMRuntimeTests" / "Fixtures" / "images"


def test_defaults_for_an_imagenet_style_input_match_torchvision():
    # [N, 3, 32, 32] takes torchvision's evaluation transform: Resize(36), CenterCrop(32),
    # ToTensor, Normalize(ImageNet): the stored case made with exactly those.
    case = next(c for c in json.loads((FIXTURES / "manifest.json").read_text())["cases"]
                if c["name"] == "imagenet_default_32")
    assert case["resize"] == 32 * 256 // 224 and case["crop"] == [32, 32] and case["mean"] == "imagenet"
    expected = np.load(FIXTURES / case["expected"])
    array, note = cbamrun.load_image(FIXTURES / case["file"], ["batch", 3, 32, 32], with_note=True)
    assert array.dtype == np.float32 and array.shape == (1, 3, 32, 32)
    # 1/255 before normalisation, i.e. 1/255 / std after it (std ≥ 0.224).
    assert np.abs(array - expected).max() <= (1 / 255) / 0.224
    assert "center crop 32×32" in note and "ImageNet" in note


def test_the_array_feeds_a_session():
    model = Path(__file__).resolve().parents[2] / "Models" / "seed003_vgg19bn_cbam" / "torchscript_op17.onnx"
    if not model.exists():
        pytest.skip("zoo model not present")
    session = cbamrun.Session(str(model), threads=1)
    shape = session.inputs[0].shape
    array = cbamrun.load_image(FIXTURES / "hopper_97x61.png", shape)
    assert array.shape[1:] == tuple(shape[1:])
    outputs = session.run({session.inputs[0].name: array})
    assert np.isfinite(next(iter(outputs.values()))).all()


@pytest.mark.parametrize("name", ["bad_truncated.png", "bad_truncated.jpg", "bad_cmyk.jpg", "bad_not_an_image.png",
                                  "bad_huge.png"])
def test_bad_images_raise_with_the_file_named(name):
    with pytest.raises(cbamrun.Error) as caught:
        cbamrun.load_image(FIXTURES / name, [1, 3, 32, 32])
    assert caught.value.kind == "bad_image" and name in str(caught.value)


def test_a_missing_file_raises():
    with pytest.raises(cbamrun.Error):
        cbamrun.load_image("/nonexistent/photo.png", [1, 3, 32, 32])
