#!/usr/bin/env python3
"""Export the cbam-run attention-CNN test zoo to ONNX.

Default run regenerates Models/ (reduced-size models, reference data and
Models/manifest.json + Models/README.md):

    python3 tools/export_models.py
    python3 tools/export_models.py --only seed000_cbam      # subset (substring)
    python3 tools/export_models.py --full --out /tmp/full    # full-size models

For every model the script
  * builds it with fixed seeds, randomises BatchNorm statistics/affine params,
    switches to eval mode;
  * stores a batch-2 float32 input, PyTorch's output and the attention maps
    (outputs of the nn.Sigmoid / nn.Softmax gate modules, caught by forward
    hooks, in execution order);
  * exports it with the TorchScript exporter (opset 13 and 17, dynamic batch via
    dynamic_axes), with the dynamo exporter (default opset, dynamic batch via
    dynamic_shapes, static fallback), and -- for models with BatchNorm -- once
    more with BatchNormalization nodes kept (TorchScript, opset 17,
    TrainingMode.PRESERVE, no constant folding);
  * checks every file with onnxruntime (batch 2, and batch 3 for dynamic files)
    and records everything, including failures, in the manifest.
"""
import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
import time
import traceback
import warnings
import zlib
from collections import Counter

import numpy as np
import torch
import torch.nn as nn

torch.set_num_threads(1)
torch.set_num_interop_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from zoo import all_specs  # noqa: E402

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
GATE_TYPES = (nn.Sigmoid, nn.Softmax)


# --------------------------------------------------------------------------- helpers

def stable_seed(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, BN_TYPES) for m in model.modules())


@torch.no_grad()
def randomize_batchnorm(model: nn.Module, shape, seed: int):
    """Give every BN layer non-trivial running stats and affine parameters.

    Running stats are first calibrated on random data (train-mode forwards, so
    activations stay O(1) through deep nets), then perturbed; weight/bias are
    drawn at random.  Folding errors therefore show up in the outputs.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    saved = [(m.momentum,) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    calib_shape = (4,) + tuple(shape[1:])
    for _ in range(2):
        model(torch.randn(calib_shape, generator=g))
    for m, (mom,) in zip(bns, saved):
        m.momentum = mom
        n = m.num_features
        std = m.running_var.clamp_min(1e-6).sqrt()
        m.running_mean.add_(0.2 * std * (torch.rand(n, generator=g) - 0.5))
        m.running_var.mul_(0.75 + 0.5 * torch.rand(n, generator=g))
        if m.affine:
            m.weight.copy_(0.6 + 0.8 * torch.rand(n, generator=g))
            m.bias.copy_(0.4 * (torch.rand(n, generator=g) - 0.5))
    model.eval()


def attention_kind(shape) -> str:
    shape = tuple(shape)
    if len(shape) == 2:
        return "channel"
    if len(shape) == 4:
        n, c, h, w = shape
        if h == 1 and w == 1 and c > 1:
            return "channel"
        if c == 1 and h * w > 1:
            return "spatial"
    return "other"


@torch.no_grad()
def capture_attention(model: nn.Module, x: torch.Tensor):
    """Run the model once with forward hooks on every gate module."""
    maps = []
    hooks = []

    def hook(mod, inp, out):
        maps.append((type(mod).__name__, out.detach().clone()))

    for m in model.modules():
        if isinstance(m, GATE_TYPES):
            hooks.append(m.register_forward_hook(hook))
    try:
        y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, maps


def op_types(model_proto):
    ops = []

    def walk(graph):
        for n in graph.node:
            ops.append(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}")
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        walk(g)

    walk(model_proto.graph)
    for f in model_proto.functions:
        for n in f.node:
            ops.append(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}")
    return ops


def graph_io(model_proto):
    init = {i.name for i in model_proto.graph.initializer}
    ins = [i for i in model_proto.graph.input if i.name not in init]
    outs = list(model_proto.graph.output)
    return ins, outs


def batch_is_dynamic(value_info) -> bool:
    dims = value_info.type.tensor_type.shape.dim
    return len(dims) > 0 and not dims[0].HasField("dim_value")


def default_opset(model_proto) -> int:
    for o in model_proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return -1


@contextlib.contextmanager
def quiet():
    """Silence exporter chatter (warnings, prints and C++-level graph dumps on
    fd 1/2); errors still propagate as exceptions and end up in the manifest."""
    buf = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                yield buf
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [devnull]:
            os.close(fd)


def short_error(e: BaseException, limit: int = 600) -> str:
    msg = f"{type(e).__name__}: {e}".strip()
    msg = msg.replace(ROOT + os.sep, "")  # keep the manifest machine-independent
    msg = " ".join(msg.split())
    return msg if len(msg) <= limit else msg[:limit - 3] + "..."


# --------------------------------------------------------------------------- exporters

def export_torchscript(model, x, path, opset, keep_bn=False, dynamic=True):
    kwargs = dict(dynamo=False, opset_version=opset, input_names=["input"], output_names=["output"])
    if dynamic:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    if keep_bn:
        kwargs["training"] = torch.onnx.TrainingMode.PRESERVE
        kwargs["do_constant_folding"] = False
    else:
        kwargs["do_constant_folding"] = True
    with quiet():
        torch.onnx.export(model, (x,), path, **kwargs)
    if keep_bn:
        model.eval()  # paranoia: exporter must not leave the model in train mode


def strip_debug_metadata(model_proto):
    """Drop per-node/value debug annotations (FX stack traces with local file
    paths, module hierarchies).  They carry no semantics, make the files
    non-reproducible across machines and add ~30% to the file size."""

    def clean_graph(g):
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    clean_graph(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sg in a.graphs:
                        clean_graph(sg)
        for coll in (g.input, g.output, g.value_info):
            for v in coll:
                del v.metadata_props[:]
                v.doc_string = ""
        for t in g.initializer:
            del t.metadata_props[:]
        del g.metadata_props[:]

    clean_graph(model_proto.graph)
    for f in model_proto.functions:
        for n in f.node:
            del n.metadata_props[:]
    del model_proto.metadata_props[:]
    model_proto.doc_string = ""


def export_dynamo(model, x, path, dynamic=True):
    kwargs = dict(dynamo=True, external_data=False)
    if dynamic:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    with quiet():
        prog = torch.onnx.export(model, (x,), **kwargs)
        proto = prog.model_proto
    strip_debug_metadata(proto)
    onnx.save_model(proto, path)


# --------------------------------------------------------------------------- onnxruntime

def ort_session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def ort_run(sess, x: np.ndarray):
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


# --------------------------------------------------------------------------- main work

class Runner:
    def __init__(self, out_dir, full, table_rows):
        self.out_dir = out_dir
        self.full = full
        self.rows = table_rows

    def rel(self, *parts):
        return "/".join(parts)

    def run_model(self, spec):
        t0 = time.time()
        mid = spec.model_id
        mdir = os.path.join(self.out_dir, mid)
        if os.path.isdir(mdir):
            shutil.rmtree(mdir)
        os.makedirs(os.path.join(mdir, "attention"), exist_ok=True)

        seed = stable_seed(mid)
        torch.manual_seed(seed)
        model = spec.build(self.full)
        shape = spec.input_shape(self.full)
        bn = has_bn(model)
        if bn:
            randomize_batchnorm(model, shape, seed + 1)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)

        gen = torch.Generator().manual_seed(seed + 2)
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        y, maps = capture_attention(model, x)
        with torch.no_grad():
            y2 = model(x)
        assert torch.equal(y, y2), "model is not deterministic"
        # batch-3 probe for dynamic-batch checks
        x3 = torch.randn((3,) + tuple(shape[1:]), generator=gen, dtype=torch.float32)
        with torch.no_grad():
            y3 = model(x3).numpy()

        xn, yn = x.numpy().astype(np.float32), y.numpy().astype(np.float32)
        np.save(os.path.join(mdir, "input.npy"), xn)
        np.save(os.path.join(mdir, "output.npy"), yn)
        attention = []
        for i, (_tname, t) in enumerate(maps):
            kind = attention_kind(t.shape)
            fname = f"{i:02d}_{kind}.npy"
            np.save(os.path.join(mdir, "attention", fname), t.numpy().astype(np.float32))
            attention.append({"index": i, "kind": kind, "shape": list(t.shape),
                              "file": self.rel(mid, "attention", fname)})
        if not attention:
            os.rmdir(os.path.join(mdir, "attention"))

        out_scale = float(np.abs(yn).max())
        if spec.deep:
            atol = float(max(1e-4, 1e-5 * out_scale))
            rtol = 1e-3
            tol_note = (f"deep network (max |output| = {out_scale:.3g}): atol = max(1e-4, 1e-5*max|output|), "
                        "rtol = 1e-3 to allow float32 reassociation across many layers")
        else:
            atol, rtol, tol_note = 1e-4, 1e-4, ""

        variants = [("torchscript", 13, False), ("torchscript", 17, False), ("dynamo", None, False)]
        if bn:
            variants.append(("torchscript", 17, True))

        entries, failures = [], []
        for exporter, opset, keep_bn in variants:
            entry, failure = self.export_one(spec, model, x, xn, yn, x3, y3, exporter, opset, keep_bn,
                                             bn, attention, atol, rtol, tol_note)
            if entry:
                entries.append(entry)
            if failure:
                failures.append(failure)
        print(f"  [{mid}] done in {time.time() - t0:.1f}s", flush=True)
        return entries, failures

    def export_one(self, spec, model, x, xn, yn, x3, y3, exporter, opset, keep_bn, bn,
                   attention, atol, rtol, tol_note):
        mid = spec.model_id
        mdir = os.path.join(self.out_dir, mid)
        tag = f"{exporter}_op{opset if opset else '?'}{'_bnkept' if keep_bn else ''}"
        notes = []
        if spec.note:
            notes.append(spec.note)
        if self.full and spec.full_note:
            notes.append(spec.full_note)
        tmp = os.path.join(mdir, f".tmp_{exporter}_{opset}_{int(keep_bn)}.onnx")
        dynamic = True
        t0 = time.time()
        try:
            if exporter == "torchscript":
                try:
                    export_torchscript(model, x, tmp, opset, keep_bn=keep_bn, dynamic=True)
                except Exception as e:  # noqa: BLE001
                    notes.append(f"TorchScript export with dynamic_axes failed ({short_error(e, 300)}); exported with static batch")
                    dynamic = False
                    export_torchscript(model, x, tmp, opset, keep_bn=keep_bn, dynamic=False)
            else:
                try:
                    export_dynamo(model, x, tmp, dynamic=True)
                except Exception as e:  # noqa: BLE001
                    notes.append(f"dynamo export with dynamic_shapes failed ({short_error(e, 300)}); exported with static batch")
                    dynamic = False
                    export_dynamo(model, x, tmp, dynamic=False)
        except Exception as e:  # noqa: BLE001
            err = short_error(e)
            print(f"  EXPORT FAILED {mid}/{tag}: {err}", flush=True)
            for f in os.listdir(mdir):
                if f.startswith(".tmp_"):
                    os.remove(os.path.join(mdir, f))
            failure = {"name": f"{mid}/{tag}", "model": mid, "seed": spec.seed, "exporter": exporter,
                       "opset": opset, "batchnorm": "kept" if keep_bn else ("folded" if bn else "none"),
                       "status": "failed", "error": err}
            self.rows.append(dict(model=mid, exporter=tag, ops=None, nodes=None, status="export failed",
                                  diff=None, error=err))
            return None, failure
        model.eval()
        export_s = time.time() - t0

        proto = onnx.load(tmp)
        opset_real = default_opset(proto)
        tag = f"{exporter}_op{opset_real}{'_bnkept' if keep_bn else ''}"
        fname = f"{tag}.onnx"
        path = os.path.join(mdir, fname)
        os.replace(tmp, path)
        for extra in (tmp + ".data",):
            if os.path.exists(extra):
                os.remove(extra)

        ops_all = op_types(proto)
        ops = sorted(set(ops_all))
        ins, outs = graph_io(proto)
        declared_dynamic = batch_is_dynamic(ins[0]) if ins else False
        if dynamic and not declared_dynamic:
            notes.append("exporter produced a static batch dimension although dynamic batch was requested")
        n_bn = ops_all.count("BatchNormalization")
        if keep_bn:
            batchnorm = "kept"
            if n_bn == 0:
                notes.append("BN-kept export contains no BatchNormalization node")
        elif bn:
            # "folded" = exported in eval mode with folding enabled; a BN that
            # does not follow a Conv/Gemm cannot be folded and stays as a node.
            batchnorm = "folded"
            if n_bn:
                notes.append(f"{n_bn} BatchNormalization node(s) left in the graph by the exporter "
                             "(BN not directly after a conv cannot be folded)")
        else:
            batchnorm = "none"

        # onnxruntime check
        status, diff = "ok", None
        dyn_ok = declared_dynamic
        try:
            sess = ort_session(path)
            got = ort_run(sess, xn)
            if got.shape != yn.shape:
                raise RuntimeError(f"output shape {got.shape} != {yn.shape}")
            diff = float(np.abs(got.astype(np.float64) - yn.astype(np.float64)).max())
            if not np.allclose(got, yn, atol=atol, rtol=rtol):
                status = "mismatch"
            if declared_dynamic:
                try:
                    got3 = ort_run(sess, x3.numpy())
                    d3 = float(np.abs(got3 - y3).max()) if got3.shape == y3.shape else float("inf")
                    if not (got3.shape == y3.shape and np.allclose(got3, y3, atol=atol, rtol=rtol)):
                        dyn_ok = False
                        notes.append(f"graph declares a dynamic batch but batch 3 is wrong in onnxruntime "
                                     f"(shape {list(got3.shape)}, max abs diff {d3:.3g})")
                except Exception as e:  # noqa: BLE001
                    dyn_ok = False
                    notes.append(f"graph declares a dynamic batch but onnxruntime fails at batch 3: {short_error(e)}")
        except Exception as e:  # noqa: BLE001
            status = "error"
            notes.append(f"onnxruntime failed: {short_error(e)}")

        batch1 = self.batch1_companion(model, x, yn, exporter, opset, keep_bn, dynamic or declared_dynamic, mdir, tag,
                                       atol, rtol, notes)

        entry = {
            "name": f"{mid}/{tag}",
            "model": mid,
            "seed": spec.seed,
            "description": spec.description,
            "exporter": exporter,
            "opset": opset_real,
            "batchnorm": batchnorm,
            "dynamic_batch": bool(dyn_ok),
            "file": self.rel(mid, fname),
            "inputs": [{"name": ins[0].name, "file": self.rel(mid, "input.npy")}],
            "outputs": [{"name": outs[0].name, "file": self.rel(mid, "output.npy")}],
            "ops": ops,
            "atol": atol,
            "rtol": rtol,
            "tolerance_note": tol_note,
            "onnxruntime_max_abs_diff": diff,
            "onnxruntime_status": status,
            "attention": attention,
            "note": "; ".join(notes),
        }
        if batch1:
            entry["batch1_file"] = self.rel(mid, batch1)
        print(f"    {tag:28s} export {export_s:5.1f}s  nodes {len(ops_all):4d}  ops {len(ops):3d}  "
              f"dyn {str(bool(dyn_ok)):5s}  ort {status:8s} diff {diff if diff is not None else float('nan'):.3g}",
              flush=True)
        self.rows.append(dict(model=mid, exporter=tag, ops=len(ops), nodes=len(ops_all), status=status,
                              diff=diff, error=entry["note"] if status != "ok" else ""))
        return entry, None


    def batch1_companion(self, model, x, yn, exporter, opset, keep_bn, dynamic, mdir, tag, atol, rtol, notes):
        """For a full-size TorchScript file that had to be exported with a static batch 2, a second
        file exported at batch 1 (`<tag>_b1.onnx`), so tools/bench.py can time the network at
        both batch sizes as issue 13 asks. Checked with onnxruntime against PyTorch's output for
        the first item. Returns the file name, or None. Not for the reduced zoo in Models/, whose
        tests run the stored batch-2 inputs."""
        if not self.full or exporter != "torchscript" or keep_bn or dynamic:
            return None
        fname = f"{tag}_b1.onnx"
        path = os.path.join(mdir, fname)
        try:
            export_torchscript(model, x[:1], path, opset, keep_bn=False, dynamic=False)
            model.eval()
            got = ort_run(ort_session(path), np.ascontiguousarray(x[:1].numpy()))
            if got.shape != yn[:1].shape or not np.allclose(got, yn[:1], atol=atol, rtol=rtol):
                raise RuntimeError(f"onnxruntime output at batch 1 differs from PyTorch's (max abs diff "
                                   f"{float(np.abs(got - yn[:1]).max()) if got.shape == yn[:1].shape else float('inf'):.3g})")
        except Exception as e:  # noqa: BLE001
            notes.append(f"batch-1 companion export failed: {short_error(e, 300)}")
            if os.path.exists(path):
                os.remove(path)
            return None
        notes.append(f"static batch: {fname} holds the same network exported at batch 1")
        return fname


# --------------------------------------------------------------------------- manifest / README

def load_manifest(path):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"version": 1, "entries": [], "failed": []}


def write_manifest(path, manifest):
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")


def fmt_diff(d):
    return "—" if d is None else f"{d:.2e}"


def write_readme(out_dir, manifest, specs_by_id):
    entries = manifest["entries"]
    failed = manifest.get("failed", [])
    lines = []
    lines.append("# Models: ONNX test zoo for cbam-run")
    lines.append("")
    lines.append("Generated by `python3 tools/export_models.py` (do not edit by hand; re-run the script).")
    lines.append("Every model directory holds `input.npy` (batch 2, float32), `output.npy` (PyTorch, eval mode),")
    lines.append("`attention/NN_<kind>.npy` (outputs of the nn.Sigmoid / nn.Softmax gate modules in execution order)")
    lines.append("and the exported files `<exporter>_op<opset>[_bnkept].onnx`. `manifest.json` lists every file,")
    lines.append("its graph input/output names, op types, tolerances and the onnxruntime check;")
    lines.append("exports that failed are listed under `failed` in the manifest and below.")
    lines.append("")
    lines.append("Large networks (ResNet-50, ResNeXt-50, VGG-19, SE-ResNet-34, ResNet-18) are stored at reduced")
    lines.append("width with the original topology; `--full --out DIR` exports full-size versions.")
    lines.append("")
    lines.append("BatchNorm: `folded` = exported in eval mode with constant folding (BN merged into the")
    lines.append("preceding Conv where possible), `kept` = TorchScript exporter with")
    lines.append("`training=TrainingMode.PRESERVE, do_constant_folding=False` on the eval-mode model, so the file")
    lines.append("has inference-mode BatchNormalization nodes (training_mode=0). BN statistics and affine")
    lines.append("parameters are randomised so folding mistakes show. Dynamo files have their per-node debug")
    lines.append("metadata (FX stack traces) stripped; the graphs are otherwise as exported.")
    lines.append("")
    lines.append("Status: `ok` = onnxruntime output within atol/rtol of PyTorch (batch 2); `dyn` = dynamic batch")
    lines.append("declared and verified in onnxruntime at batch 3. Columns: unique op types / node count.")
    lines.append("")
    lines.append("| model | seed | export | BN | dyn | ops / nodes | onnxruntime | max abs err (ORT) | cbam-run |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    node_counts = {}
    for e in entries:
        path = os.path.join(out_dir, e["file"])
        try:
            node_counts[e["name"]] = len(op_types(onnx.load(path, load_external_data=False)))
        except Exception:  # noqa: BLE001
            node_counts[e["name"]] = None
    rows = [(e["model"], e["seed"], e["name"].split("/", 1)[1], e["batchnorm"], "yes" if e["dynamic_batch"] else "no",
             f"{len(e['ops'])} / {node_counts[e['name']]}", e.get("onnxruntime_status", "?"),
             fmt_diff(e["onnxruntime_max_abs_diff"]), "—") for e in entries]
    rows += [(f["model"], f["seed"], f["name"].split("/", 1)[1], f["batchnorm"], "—", "—", "EXPORT FAILED", "—", "—")
             for f in failed]
    rows.sort(key=lambda r: (r[0], r[2]))
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    lines.append("")
    lines.append("## Models")
    lines.append("")
    lines.append("| model | seed | description | input | attention maps | largest ORT error |")
    lines.append("|---|---|---|---|---|---|")
    by_model = {}
    for e in entries:
        by_model.setdefault(e["model"], []).append(e)
    for mid in sorted(by_model):
        es = by_model[mid]
        diffs = [e["onnxruntime_max_abs_diff"] for e in es if e["onnxruntime_max_abs_diff"] is not None]
        try:
            shp = list(np.load(os.path.join(out_dir, mid, "input.npy"), mmap_mode="r").shape)
        except Exception:  # noqa: BLE001
            shp = "?"
        kinds = Counter(a["kind"] for a in es[0]["attention"])
        att = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "none"
        lines.append(f"| {mid} | {es[0]['seed']} | {es[0]['description']} | {shp} | {att} | "
                     f"{fmt_diff(max(diffs) if diffs else None)} |")
    if failed:
        lines.append("")
        lines.append("## Failed exports")
        lines.append("")
        for f in sorted(failed, key=lambda f: f["name"]):
            lines.append(f"- `{f['name']}`: {f['error']}")
    grouped = {}
    for e in entries:
        if e["note"]:
            grouped.setdefault((e["model"], e["note"]), []).append(e["name"].split("/", 1)[1])
    if grouped:
        lines.append("")
        lines.append("## Notes")
        lines.append("")
        for (mid, t), names in sorted(grouped.items()):
            lines.append(f"- `{mid}` ({', '.join(sorted(names))}): {t}")
    union = Counter()
    for e in entries:
        union.update(e["ops"])
    lines.append("")
    lines.append("## Op types (number of files using each)")
    lines.append("")
    lines.append(", ".join(f"`{k}` {v}" for k, v in sorted(union.items())))
    lines.append("")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[],
                    help="export only models whose id contains this substring (repeatable)")
    ap.add_argument("--full", action="store_true", help="export full-size networks (needs --out)")
    ap.add_argument("--out", default=None, help="output directory (default: Models/ in the repo)")
    ap.add_argument("--list", action="store_true", help="list model ids and exit")
    args = ap.parse_args()

    specs = all_specs()
    if args.list:
        for s in specs:
            print(f"{s.model_id:40s} {s.description}")
        return 0
    if args.full and not args.out:
        ap.error("--full requires --out DIR (full-size models are not committed)")
    out_dir = os.path.abspath(args.out or os.path.join(ROOT, "Models"))
    os.makedirs(out_dir, exist_ok=True)
    selected = [s for s in specs if not args.only or any(o in s.model_id for o in args.only)]
    if not selected:
        print("no model matches --only", args.only)
        return 1

    manifest_path = os.path.join(out_dir, "manifest.json")
    manifest = load_manifest(manifest_path) if args.only else {"version": 1, "entries": [], "failed": []}
    if not args.only:
        # full regeneration: remove stale model directories (only ours: seedNNN_*)
        for d in os.listdir(out_dir):
            p = os.path.join(out_dir, d)
            if os.path.isdir(p) and re.match(r"^seed\d{3}_", d):
                shutil.rmtree(p)
    sel_ids = {s.model_id for s in selected}
    manifest["entries"] = [e for e in manifest["entries"] if e["model"] not in sel_ids]
    manifest["failed"] = [f for f in manifest.get("failed", []) if f["model"] not in sel_ids]
    manifest["generator"] = {
        "script": "tools/export_models.py", "full": bool(args.full),
        "torch": torch.__version__.split("+")[0], "onnx": onnx.__version__, "onnxruntime": ort.__version__,
        "onnxscript": __import__("onnxscript").__version__, "numpy": np.__version__,
    }

    rows = []
    runner = Runner(out_dir, args.full, rows)
    t0 = time.time()
    order = [s.model_id for s in specs]
    for i, spec in enumerate(selected):
        print(f"[{i + 1}/{len(selected)}] {spec.model_id}: {spec.description}", flush=True)
        try:
            entries, failures = runner.run_model(spec)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            err = short_error(e)
            print(f"  MODEL FAILED {spec.model_id}: {err}", flush=True)
            entries, failures = [], [{"name": f"{spec.model_id}/*", "model": spec.model_id, "seed": spec.seed,
                                      "exporter": "*", "opset": None, "batchnorm": "?", "status": "failed",
                                      "error": f"model build/run failed: {err}"}]
        manifest["entries"].extend(entries)
        manifest["failed"].extend(failures)
        # keep manifest consistent with files on disk after every model
        manifest["entries"].sort(key=lambda e: (order.index(e["model"]) if e["model"] in order else 1e9, e["name"]))
        manifest["failed"].sort(key=lambda f: f["name"])
        write_manifest(manifest_path, manifest)
    write_readme(out_dir, manifest, {s.model_id: s for s in specs})

    # summary table
    print()
    print(f"{'model/export':60s} {'ops':>4s} {'nodes':>5s} {'status':14s} {'max abs diff':>12s}")
    for r in rows:
        print(f"{r['model'] + '/' + r['exporter']:60s} {str(r['ops']):>4s} {str(r['nodes']):>5s} "
              f"{r['status']:14s} {fmt_diff(r['diff']):>12s}  {r['error'][:120] if r['status'] != 'ok' else ''}")
    n_ok = sum(r["status"] == "ok" for r in rows)
    print(f"\n{n_ok}/{len(rows)} exports ok; {len(manifest['failed'])} failed exports in manifest; "
          f"total {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
