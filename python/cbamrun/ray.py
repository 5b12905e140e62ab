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

    return dict(batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=_pool_size(concurrency, threads)),
                num_cpus=threads)


def _pool_size(concurrency: Optional[int], threads: int) -> int:
    """``concurrency``, or as many actors of ``threads`` CPUs as the cluster's CPUs allow."""
    import ray

    return concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)


def chunk_sizes(count: int, batch_size: int, actors: int, fixed: bool = False) -> List[int]:
    """How many files go into each ``map_batches`` call, in order, adding up to ``count``.

    ``fixed``: ``batch_size`` each (the last one what is left), for stacked runs of one size.
    Otherwise guided: each call takes ``ceil(left / (2 × actors))`` files, at most ``batch_size``
    and at least 1, so the calls shrink towards the end and the actors finish together (with
    ``batch_size`` files a call, one actor can still have a whole call to run when the other is
    done: 200 ResNet-50 inputs in calls of 16 on 2 actors ended 0.5–1.8 s apart; in guided calls
    0.04–0.12 s). ``2 × actors``: Ray Data keeps up to 2 calls queued on each actor."""
    sizes, left = [], count
    while left > 0:
        k = batch_size if fixed else -(-left // (2 * max(1, actors)))
        k = max(1, min(batch_size, k, left))
        sizes.append(k)
        left -= k
    return sizes


class FileActor:
    """A callable class for ``Dataset.map_batches`` over rows ``{"files": [...], "names": [...]}``
    (one row a call, ``batch_size=1``; the older one-file rows ``{"file", "name"}`` work too): a
    BatchRunner (one Session) that reads, preprocesses and runs the files itself, writes the maps
    under ``output_dir`` (which must be reachable from every node: a shared volume on a cluster)
    and returns each file's `cbam-run batch` record as a JSON line in the column ``record``, one
    row per file, and when the call started and finished (``time.time()`` in the actor, with its
    ``pid``) and when the actor's ``__init__`` began and ended, for timing."""

    def __init__(self, model, output_dir, attention: bool = False, labels: Optional[List[str]] = None, threads: int = 1,
                 stack: bool = False, max_memory: Optional[int] = None, max_macs: Optional[int] = None):
        began = time.time()
        self.runner = BatchRunner(model, output_dir, attention=attention, labels=labels, threads=threads, stack=stack,
                                  max_memory=max_memory, max_macs=max_macs)
        self.init = (began, time.time())

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        if "files" in batch:
            files = [str(f) for row in batch["files"] for f in row]
            names = [str(n) for row in batch["names"] for n in row]
        else:
            files = [str(f) for f in batch["file"]]
            names = [str(n) for n in batch["name"]]
        records = self.runner.run(files, dict(zip(files, names)))
        n = len(records)
        return {"record": np.array([json.dumps(r) for r in records], dtype=object), "pid": np.full(n, os.getpid()),
                "started": np.full(n, started), "finished": np.full(n, time.time()),
                "init_began": np.full(n, self.init[0]), "init_ended": np.full(n, self.init[1])}


def run_files(files: List[str], model, output_dir, *, names: Optional[dict] = None, attention: bool = False,
              labels: Optional[List[str]] = None, concurrency: Optional[int] = None, batch_size: int = 8,
              threads: int = 1, stack: bool = False, max_memory: Optional[int] = None,
              max_macs: Optional[int] = None, timings: Optional[list] = None) -> Iterator[dict]:
    """Runs ``files`` on a pool of FileActors and yields their `cbam-run batch` records as they
    finish (in no particular order). ``names``: each file's folder under OUT/items (default
    ``item_names(files)``, the CLI's names for this list). The driver holds only paths and records.

    Each ``map_batches`` call gets one row holding a chunk of paths (``chunk_sizes``: at most
    ``batch_size`` files, shrinking towards the end so the actors finish together; with
    ``stack``, ``batch_size`` each), and each chunk is its own block: ``from_items`` puts one
    object per block in the object store, not one per file, and Ray Data does not split or merge
    them. ``timings``: a list that gets (actor pid, started, finished, inputs, the actor's
    ``__init__`` began, ended) per call, as the actor's ``time.time()``."""
    if not files:
        return
    import ray.data

    names = names or item_names(files)
    actors = _pool_size(concurrency, threads)
    rows, at = [], 0
    for k in chunk_sizes(len(files), batch_size, actors, fixed=stack):
        chunk = files[at:at + k]
        at += k
        rows.append({"files": chunk, "names": [names[f] for f in chunk]})
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    results = dataset.map_batches(
        FileActor,
        fn_constructor_kwargs=dict(model=str(model), output_dir=str(output_dir), attention=attention, labels=labels,
                                   threads=threads, stack=stack, max_memory=max_memory, max_macs=max_macs),
        **_actor_pool(actors, threads, 1),
    )
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        if timings is not None:
            calls = Counter((int(p), float(s), float(f)) + (float(b), float(e)) for p, s, f, b, e in
                            zip(batch["pid"], batch["started"], batch["finished"], batch["init_began"], batch["init_ended"]))
            timings.extend(key[:3] + (n,) + key[3:] for key, n in sorted(calls.items()))
        for text in batch["record"]:
            yield json.loads(text)
