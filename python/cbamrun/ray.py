"""Batch inference on Ray Data: one cbamrun.Session per actor, fed by ``map_batches``.

    import ray, cbamrun.ray
    ray.init(num_cpus=2)
    ds = ray.data.from_items([{"id": i, "input": x} for i, x in enumerate(arrays)])
    results = cbamrun.ray.map_batches(ds, "model.onnx", concurrency=2, attention=True)
    for row in results.iter_rows(): ...   # id, input, the outputs, attention/NN_<kind>

Each actor loads the model once (threads=1 by default: one actor per CPU) and runs whole
batches: the rows of the input column are stacked along the model's first (batch) axis,
so the model must take a batch of that size (a symbolic or matching first dimension).
Ray is imported only when these functions are called; ``import cbamrun`` never needs it.

Folders of files (``tools/ray_batch.py``): ``run_files`` passes only the file paths through Ray;
each FileActor reads and preprocesses its files itself and returns `cbam-run batch` records
(``cbamrun.batch``), so no input or output array crosses Ray's object store.
"""
import json
import os
from collections import Counter
import time
from typing import Iterator, List, Optional

import numpy as np

from .batch import BatchRunner, item_names
from .session import Session


class SessionActor:
    """A callable class for ``Dataset.map_batches``: holds one Session and adds each output
    (and with ``attention=True`` each map, as ``attention/NN_<kind>``) as a column."""

    def __init__(self, model, input_column: str = "input", input_name: Optional[str] = None, threads: int = 1,
                 attention: bool = False, max_memory: Optional[int] = None, max_macs: Optional[int] = None):
        self.session = Session(model, threads=threads, max_memory=max_memory, max_macs=max_macs)
        self.input_column = input_column
        self.input_name = input_name or self.session.inputs[0].name
        self.attention = attention

    def __call__(self, batch: dict) -> dict:
        rows = batch[self.input_column]
        x = np.ascontiguousarray(np.stack(list(rows)) if rows.dtype == object else rows)
        result = dict(batch)
        if self.attention:
            outputs, maps = self.session.run({self.input_name: x}, attention=True)
            for m in maps:
                result[f"attention/{m.index:02d}_{m.kind}"] = m.array
        else:
            outputs = self.session.run({self.input_name: x})
        for name, array in outputs.items():
            result[name] = array
        return result


def map_batches(dataset, model, *, input_column: str = "input", input_name: Optional[str] = None,
                concurrency: Optional[int] = None, batch_size: int = 8, threads: int = 1, attention: bool = False,
                max_memory: Optional[int] = None, max_macs: Optional[int] = None):
    """``dataset.map_batches`` with a pool of ``concurrency`` SessionActors (default: one per
    CPU of the cluster), each reserving ``threads`` CPUs. Returns the lazy result dataset."""
    return dataset.map_batches(
        SessionActor,
        fn_constructor_kwargs=dict(model=str(model) if not isinstance(model, bytes) else model, input_column=input_column,
                                   input_name=input_name, threads=threads, attention=attention,
                                   max_memory=max_memory, max_macs=max_macs),
        **_actor_pool(concurrency, threads, batch_size),
    )


def _actor_pool(concurrency: Optional[int], threads: int, batch_size: int) -> dict:
    """map_batches' arguments for a fixed pool of actors of ``threads`` CPUs each (default:
    as many as the cluster's CPUs allow, one per CPU at threads=1)."""
    import ray.data

    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    return dict(batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=concurrency),
                num_cpus=threads)


class FileActor:
    """A callable class for ``Dataset.map_batches`` over rows ``{"file", "name"}``: a BatchRunner
    (one Session) that reads, preprocesses and runs the files itself, writes the maps under
    ``output_dir`` (which must be reachable from every node: a shared volume on a cluster) and
    returns each file's `cbam-run batch` record as a JSON line in the column ``record``, and when
    the batch started and finished (``time.time()`` in the actor, with its ``pid``) for timing."""

    def __init__(self, model, output_dir, attention: bool = False, labels: Optional[List[str]] = None, threads: int = 1,
                 stack: bool = False, max_memory: Optional[int] = None, max_macs: Optional[int] = None):
        self.runner = BatchRunner(model, output_dir, attention=attention, labels=labels, threads=threads, stack=stack,
                                  max_memory=max_memory, max_macs=max_macs)

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        files = [str(f) for f in batch["file"]]
        records = self.runner.run(files, dict(zip(files, (str(n) for n in batch["name"]))))
        n = len(records)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object), "pid": np.full(n, os.getpid()),
                "started": np.full(n, started), "finished": np.full(n, time.time())}


def run_files(files: List[str], model, output_dir, *, names: Optional[dict] = None, attention: bool = False,
              labels: Optional[List[str]] = None, concurrency: Optional[int] = None, batch_size: int = 8,
              threads: int = 1, stack: bool = False, max_memory: Optional[int] = None,
              max_macs: Optional[int] = None, timings: Optional[list] = None) -> Iterator[dict]:
    """Runs ``files`` on a pool of FileActors and yields their `cbam-run batch` records as they
    finish (in no particular order). ``names``: each file's folder under OUT/items (default
    ``item_names(files)``, the CLI's names for this list). The driver holds only paths and records.
    ``timings``: a list that gets (actor pid, started, finished, inputs) per batch, as the actor's
    ``time.time()``."""
    import ray.data

    names = names or item_names(files)
    dataset = ray.data.from_items([{"file": f, "name": names[f]} for f in files])
    results = dataset.map_batches(
        FileActor,
        fn_constructor_kwargs=dict(model=str(model), output_dir=str(output_dir), attention=attention, labels=labels,
                                   threads=threads, stack=stack, max_memory=max_memory, max_macs=max_macs),
        **_actor_pool(concurrency, threads, batch_size),
    )
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        if timings is not None:
            calls = Counter((int(p), float(s), float(f)) for p, s, f in zip(batch["pid"], batch["started"], batch["finished"]))
            timings.extend(key + (n,) for key, n in sorted(calls.items()))
        for text in batch["record"]:
            yield json.loads(text)
