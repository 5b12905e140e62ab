"""Refusals: every one an exception with cbam-run's message, never a crash."""
import numpy as np
import pytest

import cbamrun
from conftest import MODELS, feeds, model_path, run_cli

NAME = "seed000_cbam_fc_k7/torchscript_op17"


@pytest.fixture(scope="module")
def session():
    return cbamrun.Session(model_path(NAME), threads=1)


@pytest.fixture(scope="module")
def x():
    return feeds(NAME)["input"]


def test_wrong_dtype_is_a_value_error_naming_the_input(session, x):
    with pytest.raises(ValueError, match=r'input "input" must be float32 but the given tensor is float64') as info:
        session.run({"input": x.astype(np.float64)})
    assert isinstance(info.value, cbamrun.InvalidInput) and info.value.kind == "type_mismatch"


def test_dtype_cbam_run_does_not_hold(session, x):
    with pytest.raises(ValueError, match=r'input "input": numpy dtype <u2'):
        session.run({"input": x.astype(np.uint16)})
    with pytest.raises(ValueError, match=r'input "input": numpy dtype >f4'):
        session.run({"input": x.astype(">f4")})


def test_wrong_shape_is_a_value_error_naming_the_input(session, x):
    with pytest.raises(ValueError, match=r'input "input" must have shape \[batch, 32, 16, 16\] but the given tensor has shape \[2, 16, 16, 16\]'):
        session.run({"input": x[:, :16]})
    with pytest.raises(ValueError, match=r'input "input" must have shape .* \(rank 4\)'):
        session.run({"input": x[0]})


def test_missing_and_unknown_inputs(session, x):
    with pytest.raises(ValueError, match=r'input "input" \[batch, 32, 16, 16\] was not supplied'):
        session.run({})
    with pytest.raises(ValueError, match=r'the model has no input named "x" \(its inputs: "input"\)'):
        session.run({"input": x, "x": x})
    with pytest.raises(TypeError):
        session.run([x])


def test_closed_session(x):
    closed = cbamrun.Session(model_path(NAME))
    closed.close()
    with pytest.raises(cbamrun.Error, match="closed"):
        closed.run({"input": x})


def test_bad_options():
    for options in ({"threads": 0}, {"threads": -2}, {"max_memory": 0}, {"max_macs": -1}, {"threads": 1.5}):
        with pytest.raises(ValueError, match=next(iter(options))):
            cbamrun.Session(model_path(NAME), **options)
    with pytest.raises(cbamrun.Error, match="threads must be between 1 and 256"):
        cbamrun.Session(model_path(NAME), threads=1000)


def cli_message(*args):
    completed = run_cli(*args, check=False)
    assert completed.returncode == 1
    prefix = "cbam-run: error: "
    line = completed.stderr.strip().splitlines()[-1]
    assert line.startswith(prefix)
    return line[len(prefix):]


def test_missing_file_message_is_the_clis(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(cbamrun.Error) as info:
        cbamrun.Session(missing)
    assert info.value.kind == "io" and not isinstance(info.value, ValueError)
    assert info.value.message == cli_message(missing, MODELS / "seed000_cbam_fc_k7" / "input.npy")


def test_not_onnx_message_is_the_clis(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a model at all \xff\xff\xff")
    with pytest.raises(cbamrun.Error) as info:
        cbamrun.Session(junk)
    assert info.value.kind == "not_onnx"
    assert info.value.message == cli_message(junk, MODELS / "seed000_cbam_fc_k7" / "input.npy")
    with pytest.raises(cbamrun.Error, match="<memory>"):
        cbamrun.Session(junk.read_bytes())


def test_resource_limit_message_is_the_clis(x):
    limited = cbamrun.Session(model_path(NAME), threads=1, max_macs=1000)
    with pytest.raises(cbamrun.ResourceLimitError) as info:
        limited.run({"input": x})
    assert "--max-macs" in info.value.message
    assert info.value.message == cli_message(model_path(NAME), MODELS / "seed000_cbam_fc_k7" / "input.npy",
                                             "--max-macs", "1000", "--threads", "1")


def test_memory_limit():
    # Folding the model's constants already needs more than 1 KiB: refused when the session is built.
    with pytest.raises(cbamrun.ResourceLimitError, match=r"the memory limit \(raise it with --max-memory\)"):
        cbamrun.Session(model_path(NAME), threads=1, max_memory=1024)
