"""Model zoo for cbam-run test data.

Each ``seedNNN`` module re-implements, in our own code, the attention
architectures described in ``/work/shared/seeds/NNN_*.txt`` and exposes
``specs()`` -> list[ModelSpec].
"""
from .common import ModelSpec  # noqa: F401


def all_specs():
    from . import seed000, seed001, seed002, seed003, seed004
    out = []
    for mod in (seed000, seed001, seed002, seed003, seed004):
        out.extend(mod.specs())
    ids = [s.model_id for s in out]
    assert len(ids) == len(set(ids)), "duplicate model ids"
    return out
