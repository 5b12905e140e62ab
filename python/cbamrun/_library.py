"""Finds libcbamrun.so and declares the C API of cbamrun.h to ctypes.

Every function is called through ``ctypes.CDLL``, which releases the GIL for the
length of each call: Python threads running sessions really run at once.
"""
import ctypes
import os
from pathlib import Path

API_VERSION = 1  # CBAMRUN_API_VERSION of the header these declarations follow


class Options(ctypes.Structure):
    _fields_ = [("threads", ctypes.c_int32), ("max_memory", ctypes.c_int64), ("max_macs", ctypes.c_int64)]


class Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("element_type", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("data", ctypes.c_void_p)]


class ValueInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("element_type", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("dim_names", ctypes.POINTER(ctypes.c_char_p))]


class AttentionMap(ctypes.Structure):
    _fields_ = [("index", ctypes.c_int32), ("block", ctypes.c_int32), ("kind", ctypes.c_int32),
                ("node", ctypes.c_char_p), ("tensor", Tensor)]


RUN_ATTENTION = 1


def _candidates():
    """Where the library may be: $CBAMRUN_LIBRARY, inside the package (a wheel), or the
    newest build of the repository this package sits in (python/../.build)."""
    explicit = os.environ.get("CBAMRUN_LIBRARY")
    if explicit:
        return [Path(explicit)]
    here = Path(__file__).resolve().parent
    bundled = here / "libcbamrun.so"
    if bundled.exists():
        return [bundled]
    builds = [here.parent.parent / ".build" / kind / "libcbamrun.so" for kind in ("release", "debug")]
    return sorted((p for p in builds if p.exists()), key=lambda p: p.stat().st_mtime, reverse=True)


def load():
    candidates = _candidates()
    if not candidates:
        raise ImportError("cbamrun: libcbamrun.so not found; build it with `swift build --product cbamrun` "
                          "(or -c release) in the repository, or set CBAMRUN_LIBRARY to its path")
    lib = ctypes.CDLL(str(candidates[0]))
    status = ctypes.c_void_p
    handle = ctypes.c_void_p
    signatures = {
        "cbamrun_version": ([], ctypes.c_char_p),
        "cbamrun_api_version": ([], ctypes.c_int32),
        "cbamrun_status_code": ([status], ctypes.c_int),
        "cbamrun_status_message": ([status], ctypes.c_char_p),
        "cbamrun_status_free": ([status], None),
        "cbamrun_session_create": ([ctypes.c_char_p, ctypes.POINTER(Options), ctypes.POINTER(handle)], status),
        "cbamrun_session_create_from_bytes": ([ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(Options),
                                               ctypes.POINTER(handle)], status),
        "cbamrun_session_free": ([handle], None),
        "cbamrun_session_input_count": ([handle], ctypes.c_size_t),
        "cbamrun_session_output_count": ([handle], ctypes.c_size_t),
        "cbamrun_session_input": ([handle, ctypes.c_size_t, ctypes.POINTER(ValueInfo)], status),
        "cbamrun_session_output": ([handle, ctypes.c_size_t, ctypes.POINTER(ValueInfo)], status),
        "cbamrun_session_run": ([handle, ctypes.POINTER(Tensor), ctypes.c_size_t, ctypes.c_uint32,
                                 ctypes.POINTER(handle)], status),
        "cbamrun_result_output_count": ([handle], ctypes.c_size_t),
        "cbamrun_result_output": ([handle, ctypes.c_size_t, ctypes.POINTER(Tensor)], status),
        "cbamrun_result_attention_count": ([handle], ctypes.c_size_t),
        "cbamrun_result_attention": ([handle, ctypes.c_size_t, ctypes.POINTER(AttentionMap)], status),
        "cbamrun_result_free": ([handle], None),
        "cbamrun_result_note": ([handle], ctypes.c_char_p),
        "cbamrun_load_image": ([ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int32, ctypes.POINTER(handle)], status),
    }
    for name, (arguments, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = arguments
        function.restype = result
    if lib.cbamrun_api_version() != API_VERSION:
        raise ImportError(f"cbamrun: {candidates[0]} has C API version {lib.cbamrun_api_version()}, "
                          f"this package speaks version {API_VERSION}")
    lib.path = str(candidates[0])
    return lib
