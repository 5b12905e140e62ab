"""cbamrun.Session: a model loaded through libcbamrun.so, run on numpy arrays."""
import ctypes
import math
import os
import threading
from dataclasses import dataclass
from typing import List, Optional, Union

import numpy as np

from . import _library as _c

_lib = _c.load()

# ONNX element type code → (numpy dtype, onnxruntime's type string)
_TYPES = {
    1: (np.dtype(np.float32), "tensor(float)"),
    2: (np.dtype(np.uint8), "tensor(uint8)"),
    3: (np.dtype(np.int8), "tensor(int8)"),
    6: (np.dtype(np.int32), "tensor(int32)"),
    7: (np.dtype(np.int64), "tensor(int64)"),
    9: (np.dtype(np.bool_), "tensor(bool)"),
    10: (np.dtype(np.float16), "tensor(float16)"),
    11: (np.dtype(np.float64), "tensor(double)"),
}
_CODES = {dtype: code for code, (dtype, _) in _TYPES.items()}
_KINDS = {0: "channel", 1: "spatial", 2: "other", 3: "self-attention"}

# cbamrun_code values
_CODE_NAMES = {1: "not_onnx", 2: "malformed_model", 3: "unsupported_op", 4: "unsupported_type",
               5: "invalid_attribute", 6: "invalid_shape", 7: "shape_mismatch", 8: "type_mismatch",
               9: "missing_input", 10: "io", 11: "bad_npy", 12: "usage", 13: "resource_limit", 14: "bad_image", 15: "cancelled",
               100: "invalid_argument"}
# Failures of a run that come from the feeds: raised as InvalidInput, a ValueError.
_INPUT_CODES = {4, 6, 7, 8, 9, 100}


def version() -> str:
    """The library's version (as `cbam-run --version` prints it)."""
    return _lib.cbamrun_version().decode()


class Error(Exception):
    """A cbam-run failure. ``message`` is the text the command line prints after
    ``cbam-run: error:``; ``code`` the C API's cbamrun_code and ``kind`` its name."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.kind = _CODE_NAMES.get(code, str(code))
        self.message = message


class InvalidInput(Error, ValueError):
    """Feeds the model does not take: a wrong dtype or shape, a missing or unknown input."""


class ResourceLimitError(Error):
    """The plan needs more memory or multiply-accumulates than the session's limits."""


def _check(status, run=False):
    """Raises the error a C status carries (and frees it)."""
    if not status:
        return
    code = _lib.cbamrun_status_code(status)
    message = _lib.cbamrun_status_message(status).decode(errors="replace")
    _lib.cbamrun_status_free(status)
    if code == 13:
        raise ResourceLimitError(code, message)
    if run and code in _INPUT_CODES:
        raise InvalidInput(code, message)
    raise Error(code, message)


@dataclass(frozen=True)
class NodeArg:
    """A graph input or output, as onnxruntime's ``NodeArg``: ``shape`` holds ints for
    fixed dimensions, the symbol (``"batch"``) for symbolic ones and None for unknown ones;
    it is None when the model records no shape."""
    name: str
    type: str
    shape: Optional[List[Union[int, str, None]]]
    dtype: Optional[np.dtype]


@dataclass(frozen=True)
class AttentionMap:
    """One attention map of a run: ``name`` is the gate's output value, ``node`` the
    Sigmoid/Softmax node, ``kind`` "channel", "spatial", "other" or "self-attention", ``index`` the position
    in execution order (the CLI's ``NN_<kind>.npy``), ``block`` the CBAM block it belongs to."""
    name: str
    node: str
    kind: str
    block: int
    index: int
    array: np.ndarray


class _Result:
    """Owns a cbamrun_result; the arrays viewing its buffers keep it alive."""
    __slots__ = ("handle",)

    def __init__(self, handle):
        self.handle = handle

    def __del__(self, free=_lib.cbamrun_result_free):
        free(self.handle)

    def array(self, tensor: "_c.Tensor") -> np.ndarray:
        dtype = _TYPES[tensor.element_type][0]
        shape = tuple(tensor.shape[:tensor.rank])
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.asarray(_View(self, tensor.data, shape, dtype.str))


def _address(array: np.ndarray) -> int:
    """The address of an array's first element: through the buffer protocol (cheapest) when
    the array is writable, else through its array interface."""
    if array.flags.writeable:
        return ctypes.addressof(ctypes.c_char.from_buffer(array))
    return array.__array_interface__["data"][0]


class _View:
    """The numpy array interface of a result's buffer (numpy keeps this object, and so the
    result, as the array's base)."""
    __slots__ = ("owner", "__array_interface__")

    def __init__(self, owner, address, shape, typestr):
        self.owner = owner
        self.__array_interface__ = {"data": (address, False), "shape": shape, "typestr": typestr, "version": 3}


def _node_arg(info: "_c.ValueInfo") -> NodeArg:
    dtype, type_name = _TYPES.get(info.element_type, (None, "tensor(undefined)"))
    if info.rank < 0:
        shape = None
    else:
        shape = []
        for axis in range(info.rank):
            dim = info.shape[axis]
            symbol = info.dim_names[axis]
            shape.append(dim if dim >= 0 else (symbol.decode() if symbol is not None else None))
    return NodeArg(info.name.decode(), type_name, shape, dtype)


class Session:
    """An ONNX model ready to run (cbam-run's compiled plans, cached per input shape).

    ``model`` is a path or the model's bytes. ``threads``: threads per run (default all
    cores); ``max_memory``: bytes a plan may use (default the machine's memory);
    ``max_macs``: multiply-accumulates a run may do (default unlimited) — as the CLI's
    ``--threads``, ``--max-memory`` and ``--max-macs``. A session may be run from several
    threads at once; the GIL is released while the model runs.
    """

    def __init__(self, model: Union[str, os.PathLike, bytes], threads: Optional[int] = None,
                 max_memory: Optional[int] = None, max_macs: Optional[int] = None):
        self._handle = None
        self._lock = threading.Lock()
        self._running = 0      # runs in progress: close() leaves the freeing to the last one
        self._closing = False
        for name, value in (("threads", threads), ("max_memory", max_memory), ("max_macs", max_macs)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None (got {value!r})")
        options = _c.Options(threads or 0, max_memory or 0, max_macs or 0)
        handle = ctypes.c_void_p()
        if isinstance(model, (bytes, bytearray, memoryview)):
            data = bytes(model)
            _check(_lib.cbamrun_session_create_from_bytes(data, len(data), ctypes.byref(options), ctypes.byref(handle)))
        else:
            _check(_lib.cbamrun_session_create(os.fsencode(model), ctypes.byref(options), ctypes.byref(handle)))
        self._handle = handle
        self.inputs = self._infos(_lib.cbamrun_session_input_count, _lib.cbamrun_session_input)
        self.outputs = self._infos(_lib.cbamrun_session_output_count, _lib.cbamrun_session_output)
        self._output_names = [arg.name for arg in self.outputs]  # a result's outputs come in this order
        self._encoded = {arg.name: arg.name.encode() for arg in self.inputs}
        self._shapes = {}

    def _infos(self, count, read):
        infos = []
        for index in range(count(self._handle)):
            info = _c.ValueInfo()
            _check(read(self._handle, index, ctypes.byref(info)))
            infos.append(_node_arg(info))
        return infos

    def get_inputs(self) -> List[NodeArg]:
        return self.inputs

    def get_outputs(self) -> List[NodeArg]:
        return self.outputs

    def close(self):
        """Frees the model (arrays already returned stay valid). Runs still in progress on
        other threads finish first; new ones raise ``Error``."""
        with self._lock:
            self._closing = True
            if self._running == 0:
                self._free()

    def _free(self, free=_lib.cbamrun_session_free):
        if self._handle:
            free(self._handle)
            self._handle = None

    def __del__(self):
        if getattr(self, "_lock", None) is not None:
            self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, feeds: dict, attention: bool = False):
        """Runs the model on ``feeds`` (input name → array) and returns {output name: array},
        or with ``attention=True`` (outputs, [AttentionMap, …]).

        C-contiguous arrays of the input's dtype are passed without a copy; other layouts are
        made contiguous first. A dtype other than the input's, a shape it does not take, or a
        missing or unknown name raises ``InvalidInput`` (a ``ValueError``) naming the input.
        The returned arrays are views of memory the run allocated, freed when they are.
        """
        if not isinstance(feeds, dict):
            raise TypeError("feeds must be a dict of input name → numpy array")
        with self._lock:
            if self._closing or not self._handle:
                raise Error(100, "the session is closed")
            self._running += 1
        try:
            return self._run(feeds, attention)
        finally:
            with self._lock:
                self._running -= 1
                if self._closing and self._running == 0:
                    self._free()

    def _run(self, feeds, attention):
        tensors = (_c.Tensor * max(len(feeds), 1))()
        keep = []  # arrays and shapes that must live until the call returns
        for slot, (name, value) in enumerate(feeds.items()):
            array = value if isinstance(value, np.ndarray) else np.asarray(value)
            code = _CODES.get(array.dtype) if array.dtype.byteorder in "=|" else None
            if code is None:
                raise InvalidInput(8, f"input \"{name}\": numpy dtype {array.dtype.str} is not one cbam-run takes "
                                      f"(float32, float16, float64, int8, uint8, int32, int64, bool in native byte order)")
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            shape = self._shapes.get(array.shape)
            if shape is None:  # C arrays of shapes seen before are reused: they are only read
                shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
                if len(self._shapes) < 64:
                    self._shapes[array.shape] = shape
            encoded = self._encoded.get(name) or str(name).encode()
            keep.append((array, encoded))
            tensors[slot] = _c.Tensor(encoded, code, array.ndim, shape, _address(array) if array.size else None)
        result = ctypes.c_void_p()
        _check(_lib.cbamrun_session_run(self._handle, tensors, len(feeds), _c.RUN_ATTENTION if attention else 0,
                                        ctypes.byref(result)), run=True)
        owner = _Result(result)
        outputs = {}
        tensor = _c.Tensor()
        for index, name in enumerate(self._output_names):
            _check(_lib.cbamrun_result_output(result, index, ctypes.byref(tensor)))
            outputs[name] = owner.array(tensor)
        if not attention:
            return outputs
        maps = []
        record = _c.AttentionMap()
        for index in range(_lib.cbamrun_result_attention_count(result)):
            _check(_lib.cbamrun_result_attention(result, index, ctypes.byref(record)))
            maps.append(AttentionMap(record.tensor.name.decode(), record.node.decode(), _KINDS.get(record.kind, "other"),
                                     record.block, record.index, owner.array(record.tensor)))
        return outputs, maps


def load_image(path, model_input_shape=None, *, with_note=False):
    """Decodes a PNG or JPEG and preprocesses it as ``cbam-run model.onnx photo.jpg`` does,
    for a model input of ``model_input_shape`` (e.g. ``session.inputs[0].shape``: ints for
    fixed dimensions, a symbol or None for the others; None when unknown). For ``[N, 3, H, W]``
    with fixed H and W that is torchvision's ImageNet evaluation transform (resize the shorter
    side to H·256/224 with antialiasing, center crop, [0, 1], ImageNet mean/std): the tensor
    equals ``transforms.Compose([Resize(256), CenterCrop(224), ToTensor(), Normalize(...)])``
    on the PIL image. Returns a float32 array ``[1, C, H, W]`` (and, with ``with_note``, the
    one line saying what was done). Bad images raise ``cbamrun.Error``."""
    if model_input_shape is None:
        rank, dims = -1, None
    else:
        shape = list(model_input_shape)
        rank = len(shape)
        dims = (ctypes.c_int64 * max(rank, 1))(*[d if isinstance(d, int) and d >= 0 else -1 for d in shape])
    result = ctypes.c_void_p()
    _check(_lib.cbamrun_load_image(os.fsencode(path), dims, rank, ctypes.byref(result)))
    owner = _Result(result)
    tensor = _c.Tensor()
    _check(_lib.cbamrun_result_output(result, 0, ctypes.byref(tensor)))
    array = np.array(owner.array(tensor), copy=True)
    note = (_lib.cbamrun_result_note(result) or b"").decode(errors="replace")
    return (array, note) if with_note else array
