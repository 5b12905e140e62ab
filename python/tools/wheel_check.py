"""Run by `make python-wheel-check` in a venv holding only the wheel and numpy: loads the
bundled libcbamrun.so, runs a zoo model against PyTorch's stored output, and checks that
no library of a Swift toolchain is mapped into the process."""
import sys
from pathlib import Path

import numpy as np

import cbamrun
import cbamrun.session

models = Path(sys.argv[1])
library = Path(cbamrun.session._lib.path)
assert library.parent == Path(cbamrun.__file__).parent, f"loaded {library}, not the wheel's copy"
session = cbamrun.Session(models / "seed000_cbam_fc_k7" / "torchscript_op17.onnx", threads=1)
outputs, maps = session.run({"input": np.load(models / "seed000_cbam_fc_k7" / "input.npy")}, attention=True)
difference = float(np.abs(outputs["output"] - np.load(models / "seed000_cbam_fc_k7" / "output.npy")).max())
assert difference < 1e-4 and len(maps) == 2, (difference, len(maps))
swift = [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines() if "libswift" in line or "/swift/" in line]
assert not swift, f"Swift toolchain libraries loaded: {sorted(set(swift))}"
print(f"wheel ok: {library} (cbamrun {cbamrun.version()}), largest difference from PyTorch {difference:.3g}, "
      f"{len(maps)} maps, no Swift toolchain library loaded")
