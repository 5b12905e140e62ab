"""`cbam-run batch`'s results.jsonl from Python: the same inputs, records and map files.

    from cbamrun.batch import BatchRunner, collect, item_names, write_results
    files = collect(["photos/"], output_dir="out")
    runner = BatchRunner("model.onnx", "out", attention=True)
    records = runner.run(files, item_names(files))
    write_results("out/results.jsonl", records)

Each record is one line of `cbam-run batch`'s results.jsonl (Sources/CBAMRuntime/IO/BatchResults.swift,
Sources/cbam-run/Batch.swift): ``file``, ``status`` ("ok" or "error"), ``error``, ``preprocessing``
(image inputs), ``outputs`` (name, shape, min/max/mean, top-5 of item 0 for ``[N, classes]``
outputs), ``maps`` (index, block, kind, tensor, shape, min/max/mean, files) and ``seconds``.
With ``attention=True`` each input's maps are written as ``OUT/items/<name>/NN_<kind>.npy``, the
CLI's layout. What the CLI draws is not drawn here: no heat-map pictures, pages (``page``),
thumbnails (``thumbnail``), self-attention summaries or gallery; ``files`` lists the ``.npy`` only.
Images take the CLI's default preprocessing for the model's input (``cbamrun.load_image``);
the CLI's --resize/--crop/--mean/--std/--channels have no counterpart here.
The statistics are computed as the CLI does (in float64, the mean summed in order), so the
records equal the CLI's; ``python/tests/test_ray.py`` checks that line by line.
"""
import json
import os
import time
from typing import Dict, Iterable, List, Optional

import numpy as np

from .session import Error, Session, load_image

EXTENSIONS = (".png", ".jpg", ".jpeg", ".npy")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# .npy element types converted to the model's as the CLI does (InputFiles.conform): numpy's
# defaults (float64 from np.random.rand, int64 from np.arange) to the model's float32.
_CONVERTIBLE = {
    np.dtype(np.float32): {np.float64, np.int64, np.int32, np.uint8, np.int8, np.bool_},
    np.dtype(np.float64): {np.float32, np.int64, np.int32},
    np.dtype(np.int64): {np.int32, np.uint8, np.int8},
    np.dtype(np.float16): {np.float32, np.float64},
}


def collect(paths: Iterable, output_dir=None) -> List[str]:
    """The files named and the folders' inputs (recursively, by extension), sorted, without
    repeats, leaving out anything inside ``output_dir`` — the CLI's input list."""
    files = set()
    for item in map(str, paths):
        if not os.path.exists(item):
            raise FileNotFoundError(f"{item}: no such file or folder")
        if not os.path.isdir(item):
            files.add(item)
            continue
        for folder, _, names in os.walk(item, followlinks=True):
            relative = os.path.relpath(folder, item)
            for name in names:
                if name.lower().endswith(EXTENSIONS):
                    files.add(os.path.join(item, name) if relative == "." else os.path.join(item, relative, name))
    if output_dir is not None:
        prefix = os.path.abspath(output_dir) + os.sep
        files = {f for f in files if not os.path.abspath(f).startswith(prefix)}
    return sorted(files)


def safe_name(name: str) -> str:
    """A name safe on any file system (FileNames.safe): letters, digits, '-', '_', '.'; the rest '_'."""
    result = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip("._")
    return (result or "tensor")[:200]


def item_names(files: List[str]) -> Dict[str, str]:
    """A folder name under OUT/items per input, unique (a counter after repeats), in the order given."""
    used, names = set(), {}
    for file in files:
        base = name = safe_name(file)
        n = 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names[file] = name
    return names


def _statistics(array: np.ndarray) -> dict:
    """min, max and mean in float64, the mean summed in order as the CLI's ``reduce(0, +)``."""
    values = np.asarray(array, dtype=np.float64).ravel()
    if values.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0}
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(np.cumsum(values)[-1] / values.size)}


def output_record(name: str, array: np.ndarray, labels: Optional[List[str]] = None) -> dict:
    """One entry of a record's ``outputs``: shape, statistics and, for ``[N, classes]``, the top-5 of item 0."""
    output = {"name": name, "shape": list(array.shape), **_statistics(array)}
    if array.ndim == 2 and array.shape[1] > 1 and array.shape[0] > 0:
        row = array[0].astype(np.float64)
        top = []
        for index in np.argsort(-row, kind="stable")[:5]:  # ties: the lower index first
            score = {"index": int(index), "score": float(row[index])}
            if labels is not None and index < len(labels):
                score["label"] = labels[index]
            top.append(score)
        output["top"] = top
    return output


def failure(file: str, error: BaseException) -> dict:
    """The record of an input that failed: the message the CLI would print."""
    message = error.message if isinstance(error, Error) else str(error)
    return {"file": file, "status": "error", "error": message}


def read_labels(path) -> List[str]:
    """Class names, one a line (as the CLI's --labels; a trailing empty line ignored)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _preprocessing(note: str, file: str) -> Optional[str]:
    """The preprocessing steps of load_image's line `image: FILE (FORMAT W×H, DETAILS) → STEPS → SHAPE …`,
    which is what the CLI's record keeps."""
    prefix = f"image: {file} ("
    if not note.startswith(prefix):
        return None
    rest = note[len(prefix):]
    start = rest.find(") → ")
    return rest[start + len(") → "):].split(" → ")[0] if start >= 0 else None


class BatchRunner:
    """One Session and the CLI's batch semantics for lists of files: reads and preprocesses each
    file, runs each input alone (batch 1, the CLI's default) or, with ``stack``, inputs of one
    shape together along the batch axis when the model's first dimension is symbolic (the CLI's
    --batch-size; the Gemm kernel then differs, so outputs may differ in the last bits), splits
    outputs and maps back per input, writes the maps under ``output_dir`` and returns one record
    per file, in the order given."""

    def __init__(self, model, output_dir, *, attention: bool = False, labels: Optional[List[str]] = None,
                 threads: int = 1, stack: bool = False, max_memory: Optional[int] = None, max_macs: Optional[int] = None):
        self.session = Session(model, threads=threads, max_memory=max_memory, max_macs=max_macs)
        required = self.session.inputs
        if len(required) != 1:
            raise Error(12, f"{model}: batch runs models with one input; this one takes {len(required)}")
        self.input = required[0]
        self.output_dir = str(output_dir)
        self.attention = attention
        self.labels = labels
        first = (self.input.shape or [None])[0]
        self.stack = stack and not isinstance(first, int)

    def load(self, file: str):
        """(array, preprocessing line or None) as the CLI reads the file."""
        if file.lower().endswith(IMAGE_EXTENSIONS):
            array, note = load_image(file, self.input.shape, with_note=True)
            return array, _preprocessing(note, file)
        try:
            array = np.load(file, allow_pickle=False)
        except Exception as error:  # numpy's messages: not a .npy, truncated, object arrays
            raise Error(11, f"{file}: {error}") from None
        want = self.input.dtype
        if want is not None and array.dtype != want:
            if array.dtype.type not in _CONVERTIBLE.get(want, ()):
                raise Error(8, f"{file}: input \"{self.input.name}\" must be {want} but the file holds {array.dtype}")
            array = array.astype(want)
        return np.ascontiguousarray(array), None

    def run(self, files: List[str], names: Dict[str, str]) -> List[dict]:
        start = time.perf_counter()
        records, loaded = {}, []
        for file in files:
            try:
                loaded.append((file, *self.load(file)))
            except Exception as error:
                records[file] = failure(file, error)
        groups: Dict[tuple, list] = {}
        for item in loaded:
            key = item[1].shape if self.stack and item[1].ndim > 0 and item[1].shape[0] == 1 else (id(item),)
            groups.setdefault(key, []).append(item)
        for group in groups.values():
            try:
                x = group[0][1] if len(group) == 1 else np.concatenate([item[1] for item in group])
                if self.attention:
                    outputs, maps = self.session.run({self.input.name: x}, attention=True)
                else:
                    outputs, maps = self.session.run({self.input.name: x}), None
            except Exception as error:
                for file, _, _ in group:
                    records[file] = failure(file, error)
                continue
            for k, (file, _, preprocessing) in enumerate(group):
                try:
                    records[file] = self._record(file, names[file], preprocessing, outputs, maps,
                                                 (lambda a: a) if len(group) == 1 else (lambda a, k=k: a[k:k + 1]))
                except Exception as error:
                    records[file] = failure(file, error)
        seconds = (time.perf_counter() - start) / max(len(files), 1)
        for record in records.values():
            record["seconds"] = seconds
        return [records[file] for file in files]

    def _record(self, file, name, preprocessing, outputs, maps, item) -> dict:
        record = {"file": file, "status": "ok"}
        if preprocessing is not None:
            record["preprocessing"] = preprocessing
        if maps is not None:
            folder = f"items/{name}"
            os.makedirs(os.path.join(self.output_dir, folder), exist_ok=True)
            record["maps"] = []
            for m in maps:
                array = item(m.array)
                relative = f"{folder}/{m.index:02d}_{m.kind}.npy"
                np.save(os.path.join(self.output_dir, relative), array)
                record["maps"].append({"index": m.index, "block": m.block, "kind": m.kind, "tensor": m.name,
                                       "shape": list(array.shape), **_statistics(array), "files": [relative]})
        record["outputs"] = [output_record(n, item(outputs[n]), self.labels) for n in (o.name for o in self.session.outputs) if n in outputs]
        return record


def line(record: dict) -> str:
    """One results.jsonl line: sorted keys, no spaces, as the CLI writes it."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


def read_results(path) -> Dict[str, dict]:
    """The records in a results.jsonl, the last line for a file winning; unreadable lines skipped."""
    records = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for text in f:
                try:
                    record = json.loads(text)
                    records[record["file"]] = record
                except (ValueError, KeyError, TypeError):
                    pass
    return records


def write_results(path, records: Iterable[dict]):
    """Rewrites ``path`` (atomically) with one line per file, sorted by file."""
    by_file = {record["file"]: record for record in records}
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as f:
        for file in sorted(by_file):
            f.write(line(by_file[file]))
    os.replace(temporary, path)
