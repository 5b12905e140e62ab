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
"""
from typing import Optional

import numpy as np

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
    import ray

    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    return dataset.map_batches(
        SessionActor,
        fn_constructor_kwargs=dict(model=str(model) if not isinstance(model, bytes) else model, input_column=input_column,
                                   input_name=input_name, threads=threads, attention=attention,
                                   max_memory=max_memory, max_macs=max_macs),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_cpus=threads,
    )
