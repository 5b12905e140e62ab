"""cbamrun: run ONNX attention CNNs with cbam-run from Python and get the attention maps.

    import cbamrun, numpy as np
    session = cbamrun.Session("model.onnx", threads=1)
    x = np.load("input.npy")
    outputs, maps = session.run({session.inputs[0].name: x}, attention=True)
    for m in maps: print(m.block, m.kind, m.array.shape)

A thin ctypes layer over libcbamrun.so (the C API, cbamrun.h): it only converts arguments.
"""
from .session import AttentionMap, Error, InvalidInput, NodeArg, ResourceLimitError, Session, load_image, version

__all__ = ["Session", "NodeArg", "AttentionMap", "Error", "InvalidInput", "ResourceLimitError", "load_image", "version"]
__version__ = "0.3.0"
