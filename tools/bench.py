#!/usr/bin/env python3
"""Benchmark cbam-run against onnxruntime, OpenVINO and PyTorch eager on the same models,
inputs and thread counts.

For every model (and thread count) the peers are timed in ONE interleaved run: several
rounds, each round timing every runtime for a batch of runs (the order rotates from round
to round), so that noise from other processes on the machine hits all of them alike.
onnxruntime, OpenVINO and PyTorch run in this process; cbam-run runs as
`cbam-run bench … --json` (release build) in a subprocess, once per round. In every round
each runtime first does --warmup untimed runs (cbam-run in its fresh process), then
--runs/--rounds timed ones. The peers are called the cheapest way their Python API
offers (onnxruntime: inputs bound once, run_with_iobinding; OpenVINO: input tensors set
once, infer()), so Python overhead weighs as little as possible on small models. Reported: the median milliseconds per run of each runtime
(over all runs; for cbam-run, whose JSON gives per-round figures, the median of the
round medians), and the ratio cbam-run / the faster of onnxruntime and OpenVINO
(lower is better, 1.0 = as fast as the faster peer).

With --paired the runtimes take turns run by run instead (one timed run each, in a rotating
order, --runs times), all in this process: cbam-run through its Python package over
libcbamrun.so (`--library`, default .build/release/libcbamrun.so; build it with
`swift build -c release --product cbamrun`), which adds its per-call overhead (about 15 µs)
to its times, and each timed run follows an untimed one after the pause. On a VM whose speed
moves from second to second this measures the full-size networks' ratios more steadily than
rounds of several runs; on sub-millisecond models the Python call and the pause weigh too
much (seed000_cbam_fc_k7: 0.075 ms against 0.039 in rounds), so use the default there. Compile
time and memory still come from one `cbam-run bench` process per row.

Before timing, outputs are compared: cbam-run's first output (`cbam-run MODEL INPUT -o`)
against onnxruntime's and OpenVINO's, as max |difference| / max |onnxruntime output|.
A difference above 1e-3 marks the row with "!" and is listed; the timing still happens.

PyTorch eager is timed when the module can be rebuilt exactly: the model directory's name
is a zoo model id (tools/zoo), rebuilt as tools/export_models.py does (same seed, same
BatchNorm randomisation), and its output matches the stored output.npy (or onnxruntime).
Otherwise its cell stays empty.

Peak memory: for each runtime, the peak RSS of a separate process that loads the model
and runs it a few times: for cbam-run the `cbam-run bench` process of the first round
(its JSON `peak_rss_bytes` when present, else /usr/bin/time's maximum RSS), and measured as
the peers are, its peak less its RSS before it opened the model (`rss_at_start_bytes`: the
runtime libraries loaded); for the Python peers a child process, minus that child's RSS after
importing the library and loading the inputs, before loading the model. Weights = sum of the
ONNX initializers' sizes.

Model sets:
  (default)      one TorchScript opset-17 export per model of Models/manifest.json (the 46
                 small zoo models, batch 2)
  --full DIR     full-size networks from `python3 tools/export_models.py --full --out DIR`:
                 the TorchScript opset-17 and the dynamo export of each, at batch 1 and 2
                 (batch 1 = the first item of the stored batch-2 input; a file with a static
                 batch 2 is timed at batch 1 on its `_b1` companion where the export made one)
  --models F…    these files (inputs: input.npy beside each, else random with a fixed seed)
  --families DIR issue 15's modern families from `python3 tools/export_timm.py --wide --out DIR`:
                 one export per family (TorchScript opset 17 where PyTorch made one, else
                 dynamo), at the batch it was exported with; figures only, no bar
  --zoo          the default set as well, when --full, --models or --families is given

Examples:
  python3 tools/bench.py                                   # zoo set, 1 thread
  python3 tools/bench.py --threads 1 2 --write             # … 1 and 2 threads, BENCHMARKS.md + chart
  python3 tools/bench.py --only cbam --runs 5              # zoo models whose id contains "cbam"
  python3 tools/export_models.py --full --out /tmp/full
  python3 tools/bench.py --zoo --full /tmp/full --threads 1 2 --write
  python3 tools/bench.py --models Models/seed004_cbam/dynamo_op20.onnx --markdown
  python3 tools/bench.py --families .build/timm-wide --only botnet --only mobilevit --no-torch --no-memory
  python3 tools/bench.py --no-bench --per-layer Models/seed004_resnet50_cbam/torchscript_op17.onnx
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_BINARY = os.path.join(ROOT, ".build", "release", "cbam-run")
DISAGREE = 1e-3          # relative output difference that marks a row
TORCH_REBUILD_TOL = 1e-4  # relative difference for accepting a rebuilt PyTorch module
PEERS = ("onnxruntime", "openvino", "pytorch")
ALL_RUNTIMES = ("cbam-run",) + PEERS
SHORT = {"cbam-run": "cbam", "onnxruntime": "ort", "openvino": "ov", "pytorch": "pt"}
MEM_RUNS = 3              # runs of the model in a memory-measuring child


# --------------------------------------------------------------------------- small helpers

def geomean(values):
    values = [v for v in values if v is not None and v > 0]
    return float(math.exp(sum(math.log(v) for v in values) / len(values))) if values else None


def max_abs_diff(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        if got.size != ref.size:
            return float("inf")
        got = got.reshape(ref.shape)
    return float(np.abs(got - ref).max()) if ref.size else 0.0


def rel_error(got, ref):
    """max |got - ref| / max |ref|."""
    scale = float(np.abs(np.asarray(ref, dtype=np.float64)).max()) if np.size(ref) else 0.0
    diff = max_abs_diff(got, ref)
    return diff / scale if scale > 0 else diff


def fmt(value, digits=3, empty=""):
    if value is None:
        return empty
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}"


def fmt_err(value):
    return "" if value is None else ("inf" if math.isinf(value) else f"{value:.1e}")


def mb(nbytes):
    return None if nbytes is None else nbytes / 1e6


def short_error(error, limit=300):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def rel(path):
    try:
        r = os.path.relpath(path, ROOT)
        return path if r.startswith("..") else r
    except ValueError:
        return path


def shape_text(shape):
    return "x".join(str(d) for d in shape)


def weight_bytes(path):
    """Sum of the initializers' sizes (dims x element size; external data is not read)."""
    import onnx
    from onnx import helper
    proto = onnx.load(path, load_external_data=False)
    total = 0

    def walk(graph):
        nonlocal total
        for t in graph.initializer:
            try:
                item = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
            except Exception:  # noqa: BLE001
                item = 4
            total += int(np.prod(t.dims, dtype=np.int64)) * item
        for n in graph.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(proto.graph)
    return total


def onnx_inputs(path):
    """(name, dims, numpy dtype) of the graph inputs that are not initializers; dims hold
    None for symbolic dimensions."""
    import onnx
    from onnx import helper
    proto = onnx.load(path, load_external_data=False)
    inits = {t.name for t in proto.graph.initializer}
    out = []
    for vi in proto.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        out.append((vi.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return out


def random_inputs(path, batch, tmpdir, tag):
    """Inputs with a fixed seed for a model without input.npy (symbolic first dim = batch)."""
    rng = np.random.default_rng(0)
    files = []
    for i, (name, dims, dtype) in enumerate(onnx_inputs(path)):
        shape = []
        for k, d in enumerate(dims):
            if d is None:
                if k != 0:
                    raise RuntimeError(f"input {name} has a symbolic dimension {k}; give an input.npy")
                d = batch
            shape.append(d)
        if np.issubdtype(dtype, np.floating):
            arr = rng.standard_normal(shape).astype(dtype)
        else:
            arr = rng.integers(0, 2, size=shape).astype(dtype)
        f = os.path.join(tmpdir, f"{tag}_in{i}.npy")
        np.save(f, arr)
        files.append(f)
    return files


# --------------------------------------------------------------------------- machine and versions

def cpu_info():
    info = {"model_name": None, "family": None, "model": None, "flags": [], "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["model_name"] = line.split(":", 1)[1].strip()
    except Exception:  # noqa: BLE001
        pass
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        m = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
        info["family"] = m.group(1) if m else None
        m = re.search(r"^model\s*:\s*(\d+)", text, re.M)
        info["model"] = m.group(1) if m else None
        m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
        flags = set(m.group(1).split()) if m else set()
        info["flags"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
                                     "amx_int8") if f in flags]
        if not info["model_name"]:
            m = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
            info["model_name"] = m.group(1).strip() if m else platform.processor()
    except OSError:
        pass
    return info


def isa_summary(info):
    flags = set(info["flags"])
    parts = [f"avx2 {'yes' if 'avx2' in flags else 'no'}", f"avx512f {'yes' if 'avx512f' in flags else 'no'}",
             f"amx {'yes (' + ', '.join(f for f in info['flags'] if f.startswith('amx')) + ')' if 'amx_tile' in flags else 'no'}"]
    return ", ".join(parts)


def cbam_version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        text = (out.stdout or "").strip()
        if out.returncode == 0 and text and "Usage" not in text and "error" not in text.lower():
            return text.splitlines()[0]
    except Exception:  # noqa: BLE001
        pass
    return None


def git_revision():
    try:
        out = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def versions(binary, use_torch):
    v = {}
    from importlib import metadata
    for name in ("onnxruntime", "openvino", "torch", "onnx", "numpy"):
        if name == "torch" and not use_torch:
            continue
        try:
            v[name] = metadata.version(name)
        except Exception:  # noqa: BLE001
            v[name] = "not installed"
    v["cbam-run"] = cbam_version(binary) or "(no --version)"
    v["git"] = git_revision() or "?"
    return v


# --------------------------------------------------------------------------- model sets

class Job:
    """One model file at one batch size."""

    def __init__(self, set_name, model_id, path, inputs, batch=None, exporter="", spec_full=None, ref_output=None,
                 skip=None):
        self.set_name = set_name
        self.model_id = model_id
        self.path = path
        self.inputs = inputs              # list of .npy paths (may be filled later)
        self.batch = batch                # None = as stored
        self.exporter = exporter
        self.spec_full = spec_full        # True/False: zoo spec at full/reduced size; None: unknown (try both)
        self.ref_output = ref_output      # stored PyTorch output for the stored batch-2 input
        self.skip = skip                  # reason the job cannot run
        self.label = model_id if set_name == "zoo" else f"{model_id} {exporter} b{batch}" if batch else model_id


def resolve(path, base):
    return path if os.path.isabs(path) or os.path.exists(path) else os.path.join(base, path)


def zoo_jobs():
    mdir = os.path.join(ROOT, "Models")
    with open(os.path.join(mdir, "manifest.json")) as f:
        entries = json.load(f)["entries"]
    chosen = {}
    for e in entries:
        path = os.path.join(mdir, e["file"])
        if e["exporter"] == "torchscript" and e["opset"] == 17 and e.get("batchnorm") != "kept" and os.path.exists(path):
            chosen.setdefault(e["model"], e)
    jobs = []
    for e in chosen.values():
        ref = os.path.join(mdir, e["outputs"][0]["file"]) if e.get("outputs") else None
        jobs.append(Job("zoo", e["model"], os.path.join(mdir, e["file"]),
                        [os.path.join(mdir, i["file"]) for i in e["inputs"]], exporter="torchscript_op17",
                        spec_full=False, ref_output=ref))
    return jobs


def manifest_entries(directory, maker):
    """The entries of DIR/manifest.json, or an exit naming the command that makes it."""
    manifest = os.path.join(directory, "manifest.json")
    if not os.path.exists(manifest):
        raise SystemExit(f"{manifest} not found: make it with python3 {maker} --out {directory}")
    with open(manifest) as f:
        return json.load(f)["entries"]


def full_jobs(directory, blocks):
    entries = manifest_entries(directory, "tools/export_models.py --full")
    deep = set()
    try:
        sys.path.insert(0, HERE)
        from zoo import all_specs
        deep = {s.model_id for s in all_specs() if s.deep}
    except Exception:  # noqa: BLE001
        pass
    jobs = []
    for e in entries:
        if e.get("batchnorm") == "kept":
            continue
        if not ((e["exporter"] == "torchscript" and e["opset"] == 17) or e["exporter"] == "dynamo"):
            continue
        if not blocks and deep and e["model"] not in deep:
            continue
        path = os.path.join(directory, e["file"])
        if not os.path.exists(path):
            continue
        inputs = [os.path.join(directory, i["file"]) for i in e["inputs"]]
        ref = os.path.join(directory, e["outputs"][0]["file"]) if e.get("outputs") else None
        exporter = f"{e['exporter']}_op{e['opset']}"
        for batch in (1, 2):
            # A file with a static batch 2 may have a batch-1 companion (export_models.py --full).
            companion = os.path.join(directory, e["batch1_file"]) if batch == 1 and e.get("batch1_file") else None
            jobs.append(Job("full", e["model"], companion if companion and os.path.exists(companion) else path, inputs,
                            batch=batch, exporter=exporter, spec_full=True, ref_output=ref))
    return jobs


def family_jobs(directory):
    """One export per family of `tools/export_timm.py --wide --out DIR`, preferring TorchScript
    opset 17, with the stored input (its batch) and PyTorch's output."""
    entries = manifest_entries(directory, "tools/export_timm.py --wide")
    base = os.path.dirname(directory)  # the manifest's paths are relative to the folder above it
    chosen = {}
    for e in sorted(entries, key=lambda e: e["exporter"] != "torchscript_op17"):
        chosen.setdefault(e["name"].split("/")[0], e)
    jobs = []
    for family, e in chosen.items():
        job = Job("families", family, os.path.join(base, e["file"]), [os.path.join(base, i["file"]) for i in e["inputs"]],
                  exporter=e["exporter"], ref_output=os.path.join(base, e["outputs"][0]["file"]))
        job.label = f"{family} ({e['exporter']})"
        jobs.append(job)
    return jobs


def file_jobs(files):
    jobs = []
    for m in files:
        path = os.path.abspath(m)
        d = os.path.dirname(path)
        spec_full = None
        manifest = os.path.join(os.path.dirname(d), "manifest.json")
        if os.path.exists(manifest):
            try:
                with open(manifest) as f:
                    spec_full = bool(json.load(f).get("generator", {}).get("full", False))
            except Exception:  # noqa: BLE001
                pass
        inp = os.path.join(d, "input.npy")
        out = os.path.join(d, "output.npy")
        job = Job("files", os.path.basename(d), path, [inp] if os.path.exists(inp) else [],
                  exporter=os.path.splitext(os.path.basename(path))[0], spec_full=spec_full,
                  ref_output=out if os.path.exists(out) else None)
        job.label = f"{job.model_id}/{os.path.basename(path)}"
        jobs.append(job)
    return jobs


def prepare_inputs(job, tmpdir, index):
    """Fills job.inputs for the wanted batch; returns the feeds as arrays."""
    if not os.path.exists(job.path):
        raise RuntimeError(f"{job.path} not found")
    declared = onnx_inputs(job.path)
    if not job.inputs:
        job.inputs = random_inputs(job.path, job.batch or 1, tmpdir, f"job{index}")
    arrays = [np.load(f) for f in job.inputs]
    if job.batch is not None and arrays and arrays[0].shape[0] != job.batch:
        for (name, dims, _), arr in zip(declared, arrays):
            if dims and dims[0] is not None and dims[0] != job.batch:
                raise SkipJob(f"static batch {dims[0]} in the file")
        if job.batch > arrays[0].shape[0]:
            raise SkipJob(f"stored input has batch {arrays[0].shape[0]}")
        arrays = [a[:job.batch] for a in arrays]
        files = []
        for i, a in enumerate(arrays):
            f = os.path.join(tmpdir, f"job{index}_b{job.batch}_in{i}.npy")
            np.save(f, np.ascontiguousarray(a))
            files.append(f)
        job.inputs = files
    return arrays


class SkipJob(Exception):
    pass


# --------------------------------------------------------------------------- runtimes in this process

def ort_session(path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ov_config(threads):
    return {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": "f32"}


_OV_CORE = None


def ov_compiled(path, threads):
    global _OV_CORE
    import openvino as ov
    if _OV_CORE is None:
        _OV_CORE = ov.Core()
    return _OV_CORE.compile_model(path, "CPU", ov_config(threads))


class Peer:
    """A runtime in this process: `run()` does one inference, `output()` gives the first output."""

    def __init__(self, name, run, output, load_ms):
        self.name, self.run, self.output, self.load_ms = name, run, output, load_ms


def make_ort(path, arrays, threads):
    """Timed call: run_with_iobinding with the inputs bound once (no per-call numpy feeds
    conversion, which costs more than a small model's inference)."""
    start = time.perf_counter()
    session = ort_session(path, threads)
    load_ms = (time.perf_counter() - start) * 1000
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    binding = session.io_binding()
    for name, a in feeds.items():
        binding.bind_cpu_input(name, np.ascontiguousarray(a))
    for o in session.get_outputs():
        binding.bind_output(o.name, "cpu")
    return Peer("onnxruntime", lambda: session.run_with_iobinding(binding), lambda: session.run(None, feeds)[0],
                load_ms)


_OV_SAFE = {}


def ov_survives(path, arrays, threads):
    """Whether OpenVINO compiles and runs `path` without killing the process: checked once per
    model in a child process, because OpenVINO 2026.4 crashes with SIGSEGV on some graphs
    (seen: seed004_channelgate_all), which would end the whole benchmark."""
    key = (path, threads)
    if key not in _OV_SAFE:
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            files = []
            for i, a in enumerate(arrays):
                files.append(os.path.join(folder, f"in{i}.npy"))
                np.save(files[-1], a)
            # The same imports and configuration as this process: the crash depends on them.
            code = ("import sys, json, numpy as np, onnxruntime, openvino as ov\n"
                    "c = ov.Core().compile_model(sys.argv[1], 'CPU', json.loads(sys.argv[2]))\n"
                    "c([np.load(f) for f in sys.argv[3:]])\n")
            child = subprocess.run([sys.executable, "-c", code, path, json.dumps(ov_config(threads)), *files], capture_output=True)
            _OV_SAFE[key] = child.returncode == 0
            if child.returncode != 0:
                print(f"openvino fails on {path} (exit {child.returncode}); its column stays empty", file=sys.stderr)
    return _OV_SAFE[key]


def make_ov(path, arrays, threads):
    """Timed call: infer() on a request whose input tensors were set once (passing a dict of
    arrays to every infer() costs ~0.1 ms)."""
    import openvino as ov
    if not ov_survives(path, arrays, threads):
        raise RuntimeError("OpenVINO crashes on this model (checked in a child process)")
    start = time.perf_counter()
    compiled = ov_compiled(path, threads)
    load_ms = (time.perf_counter() - start) * 1000
    request = compiled.create_infer_request()
    kept = [np.ascontiguousarray(a) for a in arrays]
    for i, a in enumerate(kept):
        request.set_input_tensor(i, ov.Tensor(a, shared_memory=True))
    first = compiled.outputs[0]

    def output():
        request.infer()
        return np.array(request.get_tensor(first).data)

    peer = Peer("openvino", request.infer, output, load_ms)
    peer.keep = kept  # the request reads these arrays' memory
    return peer


DEFAULT_LIBRARY = os.path.join(ROOT, ".build", "release", "libcbamrun.so")


def make_cbam(path, arrays, threads, library):
    """cbam-run in this process (--paired): a `cbamrun.Session` over libcbamrun.so, the feeds
    made once (C-contiguous float32 arrays go to the C API without a copy)."""
    if not os.path.exists(library):
        raise RuntimeError(f"{library} not found: build it with swift build -c release --product cbamrun")
    os.environ["CBAMRUN_LIBRARY"] = library
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import cbamrun
    start = time.perf_counter()
    session = cbamrun.Session(path, threads=threads)
    feeds = {i.name: np.ascontiguousarray(a) for i, a in zip(session.inputs, arrays)}
    session.run(feeds)  # the plan for these shapes is compiled by the first run
    load_ms = (time.perf_counter() - start) * 1000
    return Peer("cbam-run", lambda: session.run(feeds), lambda: next(iter(session.run(feeds).values())), load_ms)


def make_torch(module, arrays, threads):
    import torch
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(*tensors)

    def output():
        y = run()
        while isinstance(y, (tuple, list)):
            y = y[0]
        return y.numpy()

    return Peer("pytorch", run, output, None)


# --------------------------------------------------------------------------- PyTorch rebuild

class TorchZoo:
    """Rebuilds zoo modules exactly as tools/export_models.py does and checks them."""

    def __init__(self):
        import torch  # noqa: F401
        sys.path.insert(0, HERE)
        import export_models  # sets torch to 1 intra-op and 1 inter-op thread
        from zoo import all_specs
        self.em = export_models
        self.specs = {s.model_id: s for s in all_specs()}
        self.cache = {}

    def build(self, model_id, full):
        import torch
        spec = self.specs[model_id]
        seed = self.em.stable_seed(model_id)
        torch.manual_seed(seed)
        model = spec.build(full)
        if self.em.has_bn(model):
            self.em.randomize_batchnorm(model, spec.input_shape(full), seed + 1)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def get(self, job, ort_reference):
        """(module, full, note): module None when it cannot be rebuilt exactly."""
        key = (job.model_id, job.spec_full, job.ref_output)
        if key in self.cache:
            return self.cache[key]
        result = (None, None, "not a zoo model id")
        if job.model_id in self.specs:
            import torch
            stored_input = os.path.join(os.path.dirname(job.ref_output), "input.npy") if job.ref_output else None
            if job.ref_output and os.path.exists(stored_input):
                x = np.load(stored_input)
                ref = np.load(job.ref_output)
            else:
                x, ref = ort_reference
            candidates = [job.spec_full] if job.spec_full is not None else [False, True]
            result = (None, None, "rebuilt module does not match the stored output")
            for full in candidates:
                try:
                    torch.set_num_threads(1)  # as export_models.py ran (BatchNorm calibration included)
                    module = self.build(job.model_id, full)
                    with torch.inference_mode():
                        y = module(torch.from_numpy(np.ascontiguousarray(x)))
                    while isinstance(y, (tuple, list)):
                        y = y[0]
                    err = rel_error(y.numpy(), ref)
                except Exception as error:  # noqa: BLE001
                    result = (None, None, f"rebuild failed: {short_error(error, 160)}")
                    continue
                if err <= TORCH_REBUILD_TOL:
                    result = (module, full, f"rebuilt (rel. diff {err:.1e})")
                    break
                result = (None, None, f"rebuilt module differs from the stored output (rel. {err:.1e})")
        self.cache[key] = result
        return result

    def bn_state_file(self, module, tmpdir, tag):
        """The BatchNorm tensors (all the randomisation touches) for the memory child."""
        import torch
        bn = {}
        for name, m in module.named_modules():
            if isinstance(m, self.em.BN_TYPES):
                for k, v in m.state_dict().items():
                    bn[f"{name}.{k}"] = v
        path = os.path.join(tmpdir, f"{tag}_bn.pt")
        torch.save(bn, path)
        return path


# --------------------------------------------------------------------------- cbam-run

TIME = os.path.exists("/usr/bin/time")


def cbam_bench(binary, model, inputs, threads, runs, warmup):
    """One `cbam-run bench --json` process. It is started through /usr/bin/time when there
    is one: a process forked from this (large) Python process inherits its peak RSS in
    ru_maxrss, one started by `time` does not."""
    cmd = [binary, "bench", model, *inputs, "--runs", str(runs), "--warmup", str(warmup), "--threads", str(threads),
           "--json"]
    with tempfile.NamedTemporaryFile("w+", suffix=".rss") as rss:
        if TIME:
            cmd = ["/usr/bin/time", "-f", "%M", "-o", rss.name] + cmd
        proc = subprocess.run(cmd, capture_output=True, text=True)
        rss.seek(0)
        lines = [ln for ln in rss.read().split() if ln.isdigit()]
    if proc.returncode != 0:
        stderr = "\n".join(ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("Command exited"))
        raise RuntimeError(stderr.splitlines()[-1] if stderr.strip() else f"exit status {proc.returncode}")
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.strip().startswith("{")), None)
    if line is None:
        raise RuntimeError(f"no JSON in cbam-run bench output: {proc.stdout.strip()[:200]}")
    result = json.loads(line)
    if lines:
        result["_time_peak_bytes"] = int(lines[-1]) * 1024
    return result


def cbam_output(binary, model, inputs, threads, tmpdir):
    out = os.path.join(tmpdir, "cbam_out.npy")
    if os.path.exists(out):
        os.remove(out)
    proc = subprocess.run([binary, model, *inputs, "-o", out, "--threads", str(threads)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "cbam-run failed")
    return np.load(out)


# --------------------------------------------------------------------------- peak memory in a child

def peak_rss():
    """This process's peak RSS in bytes: VmHWM (per address space, so not inherited from the
    parent the process was forked from, unlike ru_maxrss), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mem_child(argv):
    """`bench.py _mem RUNTIME MODEL THREADS RUNS [--torch ID FULL BNFILE] INPUT…`: prints
    {"baseline": bytes, "peak": bytes} (peak RSS after the import and inputs, and at the end)."""
    runtime, model, threads, runs = argv[0], argv[1], int(argv[2]), int(argv[3])
    rest = argv[4:]
    torch_args = None
    if rest and rest[0] == "--torch":
        torch_args, rest = rest[1:4], rest[4:]
    if runtime == "onnxruntime":
        import onnxruntime  # noqa: F401
    elif runtime == "openvino":
        import openvino  # noqa: F401
    elif runtime == "pytorch":
        import torch
        sys.path.insert(0, HERE)
        import export_models  # noqa: F401  (what the rebuild imports)
        from zoo import all_specs
    arrays = [np.load(f) for f in rest]
    baseline = peak_rss()
    if runtime == "onnxruntime":
        session = ort_session(model, threads)
        feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
        for _ in range(runs):
            session.run(None, feeds)
    elif runtime == "openvino":
        compiled = ov_compiled(model, threads)
        request = compiled.create_infer_request()
        for _ in range(runs):
            request.infer({i: a for i, a in enumerate(arrays)})
    elif runtime == "pytorch":
        model_id, full, bn_file = torch_args[0], torch_args[1] == "1", torch_args[2]
        spec = {s.model_id: s for s in all_specs()}[model_id]
        torch.manual_seed(export_models.stable_seed(model_id))
        module = spec.build(full)
        module.load_state_dict(torch.load(bn_file), strict=False)
        module.eval()
        torch.set_num_threads(threads)
        tensors = [torch.from_numpy(a) for a in arrays]
        with torch.inference_mode():
            for _ in range(runs):
                module(*tensors)
    peak = peak_rss()
    print(json.dumps({"baseline": baseline, "peak": peak}))


def measure_child(runtime, model, threads, inputs, torch_args=None):
    cmd = [sys.executable, os.path.abspath(__file__), "_mem", runtime, model, str(threads), str(MEM_RUNS)]
    if torch_args:
        cmd += ["--torch", *torch_args]
    cmd += inputs
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "child failed")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return max(0, data["peak"] - data["baseline"])


# --------------------------------------------------------------------------- timing

def timed_batch(peer, n):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        peer.run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def summarize(samples):
    return {"median_ms": statistics.median(samples), "mean_ms": statistics.fmean(samples), "min_ms": min(samples),
            "max_ms": max(samples), "samples": len(samples)}


def bench_paired(job, threads, args, peers, arrays, notes):
    """--paired: every runtime in this process, one timed run each in a rotating order, --runs
    times; cbam-run's compile time and memory from one `cbam-run bench` process."""
    try:
        peers = [make_cbam(job.path, arrays, threads, args.library)] + peers
    except Exception as error:  # noqa: BLE001
        notes.append(f"cbam-run failed ({threads} thr): {short_error(error)}")
    samples = {p.name: [] for p in peers}
    failed = set()
    for peer in peers:
        try:
            for _ in range(args.warmup):
                peer.run()
        except Exception as error:  # noqa: BLE001
            failed.add(peer.name)
            notes.append(f"{peer.name} failed ({threads} thr): {short_error(error)}")
    live = [p for p in peers if p.name not in failed]
    for k in range(args.runs):
        for peer in live[k % len(live):] + live[:k % len(live)] if live else []:
            # One untimed run right before the timed one: after the pause a single run would
            # meet cold caches (a 0.04 ms model measured 0.39 ms that way).
            peer.run()
            start = time.perf_counter()
            peer.run()
            samples[peer.name].append((time.perf_counter() - start) * 1000)
            time.sleep(args.pause)  # let spinning pool threads of the last runtime go idle
    stats = {name: summarize(s) for name, s in samples.items() if s}
    extras = {}
    try:
        extras = cbam_extras([cbam_bench(args.binary, job.path, job.inputs, threads, 3, args.warmup)])
    except Exception as error:  # noqa: BLE001
        notes.append(f"cbam-run bench (compile time, memory) failed ({threads} thr): {short_error(error)}")
    return stats, extras


def cbam_extras(cbam_rounds):
    """Compile time (median), plan and process memory (largest) over `cbam-run bench` rounds."""
    extras = {}
    for key in ("compile_ms", "plan_peak_bytes", "peak_rss_bytes"):
        values = [c[key] for c in cbam_rounds if key in c]
        if values:
            extras[key] = statistics.median(values) if key == "compile_ms" else max(values)
    above = [c["peak_rss_bytes"] - c["rss_at_start_bytes"] for c in cbam_rounds if "rss_at_start_bytes" in c]
    if above:  # as for the peers: the peak less the process before the model (libraries loaded)
        extras["peak_above_start_bytes"] = max(above)
    if "_time_peak_bytes" in cbam_rounds[0]:
        extras["time_peak_bytes"] = cbam_rounds[0]["_time_peak_bytes"]
    return extras


def bench_job(job, threads, args, peers_in_process, notes):
    """Interleaved rounds; returns {runtime: stats} and the cbam-run extras."""
    rounds = max(1, min(args.rounds, args.runs))
    per_round = math.ceil(args.runs / rounds)
    peers = [p for p in peers_in_process if p is not None]
    samples = {p.name: [] for p in peers}
    cbam_rounds = []
    failed = set()
    order = ["cbam-run"] + [p.name for p in peers]
    by_name = {p.name: p for p in peers}
    for r in range(rounds):
        rotated = order[r % len(order):] + order[:r % len(order)]
        for name in rotated:
            if name in failed:
                continue
            try:
                if name == "cbam-run":
                    cbam_rounds.append(cbam_bench(args.binary, job.path, job.inputs, threads, per_round, args.warmup))
                else:
                    for _ in range(args.warmup):  # as cbam-run warms up in each round's process
                        by_name[name].run()
                    samples[name].extend(timed_batch(by_name[name], per_round))
            except Exception as error:  # noqa: BLE001
                failed.add(name)
                notes.append(f"{name} failed ({threads} thr): {short_error(error)}")
            time.sleep(args.pause)  # let spinning pool threads of the last runtime go idle
    stats = {name: summarize(s) for name, s in samples.items() if s and name not in failed}
    extras = {}
    if cbam_rounds and "cbam-run" not in failed:
        medians = [c["median_ms"] for c in cbam_rounds]
        stats["cbam-run"] = {"median_ms": statistics.median(medians),
                             "mean_ms": statistics.fmean(c.get("mean_ms", c["median_ms"]) for c in cbam_rounds),
                             "min_ms": min(c.get("min_ms", c["median_ms"]) for c in cbam_rounds),
                             "samples": sum(c.get("runs", per_round) for c in cbam_rounds),
                             "round_medians": medians}
        if all("max_ms" in c for c in cbam_rounds):
            stats["cbam-run"]["max_ms"] = max(c["max_ms"] for c in cbam_rounds)
        extras = cbam_extras(cbam_rounds)
    return stats, extras


# --------------------------------------------------------------------------- per-layer profile

def conv_macs_from_graph(path):
    """{node name: (weight dims, group)} for Conv nodes whose weight is an initializer."""
    import onnx
    proto = onnx.load(path, load_external_data=False)
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    convs = {}
    for i, n in enumerate(proto.graph.node):
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits:
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            for key in {n.name, n.output[0]}:
                if key:
                    convs[key] = (inits[n.input[1]], group)
    return convs


def parse_shape(text):
    """The first shape of a trace's output_shape ("[2, 32, 16, 16]", "2x32x16x16"), or None."""
    text = str(text or "")
    m = re.search(r"\[([0-9,\s]*)\]", text)
    parts = m.group(1).split(",") if m else re.split(r"[x×]", text.split()[0]) if text.split() else []
    try:
        return [int(p) for p in parts if p.strip()] or None
    except ValueError:
        return None


def per_layer(model, args, tmpdir, threads):
    model = os.path.abspath(model)
    inp = os.path.join(os.path.dirname(model), "input.npy")
    inputs = [inp] if os.path.exists(inp) else random_inputs(model, 1, tmpdir, "perlayer")
    runs = []
    for k in range(args.per_layer_repeats):
        trace = os.path.join(tmpdir, f"trace{k}.json")
        proc = subprocess.run([args.binary, model, *inputs, "--profile-json", trace, "--warmup", "2", "--threads",
                               str(threads)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip() or "cbam-run failed")
        with open(trace) as f:
            data = json.load(f)
        events = data["traceEvents"] if isinstance(data, dict) else data
        runs.append([e for e in events if e.get("ph") == "X"])
    convs = {}
    try:
        convs = conv_macs_from_graph(model)
    except Exception:  # noqa: BLE001
        pass
    rows = []
    for i, e in enumerate(runs[0]):
        durations = [r[i]["dur"] for r in runs if i < len(r) and r[i].get("name") == e.get("name")]
        ms = statistics.median(durations) / 1000
        a = e.get("args", {}) or {}
        op = a.get("op_name") or a.get("op_type") or e.get("cat", "")
        macs, source = None, ""
        for key in ("macs", "MACs", "mac", "flops", "FLOPs"):
            if key in a:
                try:
                    macs = float(a[key]) / (2 if key.lower() == "flops" else 1)
                    source = "trace"
                except (TypeError, ValueError):
                    pass
                break
        if macs is None and op == "Conv" and e.get("name") in convs:
            out_shape = parse_shape(a.get("output_shape", ""))
            w, group = convs[e["name"]]
            if out_shape and len(w) >= 3:
                macs = float(np.prod(out_shape, dtype=np.float64)) * float(np.prod(w[1:], dtype=np.float64))
                source = "graph"
        gflops = 2 * macs / (ms / 1000) / 1e9 if macs and ms > 0 else None
        rows.append({"name": e.get("name", ""), "op": op, "ms": ms, "shape": a.get("output_shape", ""),
                     "macs": macs, "gflops": gflops, "macs_source": source, "kernel": a.get("kernel", "")})
    return {"model": rel(model), "threads": threads, "repeats": len(runs), "rows": rows,
            "total_ms": sum(r["ms"] for r in rows)}


def per_layer_markdown(p):
    lines = [f"### Per node: `{p['model']}` ({p['threads']} thread(s))", "",
             f"`cbam-run MODEL INPUT --profile-json trace.json --warmup 2 --threads {p['threads']}`, per-node median of "
             f"{p['repeats']} profiled run(s); sum {p['total_ms']:.3f} ms. GFLOP/s for Conv = 2·MACs / time"
             + (" (MACs from the graph: output elements × Cin/group × kernel size)"
                if any(r["macs_source"] == "graph" for r in p["rows"]) else "") + ".", ""]
    by_op = {}
    for r in p["rows"]:
        t = by_op.setdefault(r["op"], [0.0, 0])
        t[0] += r["ms"]
        t[1] += 1
    lines += ["| op | ms | share | nodes |", "|---|---:|---:|---:|"]
    total = max(p["total_ms"], 1e-12)
    for op, (ms, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {op} | {ms:.3f} | {100 * ms / total:.1f}% | {n} |")
    if any("winograd" in r.get("kernel", "") for r in p["rows"]):
        lines += ["", "A Winograd step's GFLOP/s counts the direct convolution's MACs (it does fewer), so it can pass the FMA peak."]
    lines += ["", "| # | node | op | output | ms | GFLOP/s | kernel |", "|---:|---|---|---|---:|---:|---|"]
    for i, r in enumerate(p["rows"]):
        name = r["name"].replace("|", "\\|")
        kernel = r.get("kernel", "").split(" (")[0].replace("|", "\\|")
        lines.append(f"| {i} | `{name}` | {r['op']} | {r['shape']} | {r['ms']:.3f} | {fmt(r['gflops'], 1)} | {kernel} |")
    return lines


def per_layer_console(p):
    print(f"\nper node: {p['model']} ({p['threads']} thread(s), median of {p['repeats']} profiled run(s), "
          f"sum {p['total_ms']:.3f} ms)")
    print(f"{'#':>4} {'node':40} {'op':18} {'ms':>9} {'GFLOP/s':>8}  output")
    for i, r in enumerate(p["rows"]):
        print(f"{i:4d} {r['name'][-40:]:40} {r['op'][:18]:18} {r['ms']:9.3f} {fmt(r['gflops'], 1):>8}  {r['shape']}")


# --------------------------------------------------------------------------- the run

def is_cbam_block(model_id, specs_deep):
    return "cbam" in model_id and model_id not in specs_deep and not any(w in model_id for w in ("resnet", "vgg", "fpn"))


def run_jobs(jobs, args, tmpdir, torch_zoo):
    results = []
    for index, job in enumerate(jobs):
        tag = f"[{index + 1}/{len(jobs)}] {job.label}"
        base = {"set": job.set_name, "model": job.model_id, "label": job.label, "file": rel(job.path),
                "exporter": job.exporter, "batch": job.batch, "notes": [], "errors": {}}
        try:
            arrays = prepare_inputs(job, tmpdir, index)
        except SkipJob as why:
            print(f"{tag}: skipped ({why})", flush=True)
            results.append(dict(base, skipped=str(why), threads=None))
            continue
        except Exception as error:  # noqa: BLE001
            print(f"{tag}: FAILED ({short_error(error)})", flush=True)
            results.append(dict(base, failed=short_error(error), threads=None))
            continue
        base["input"] = " ".join(shape_text(a.shape) for a in arrays)
        base["batch"] = job.batch or (arrays[0].shape[0] if arrays and arrays[0].ndim else None)
        try:
            base["weight_bytes"] = weight_bytes(job.path)
        except Exception:  # noqa: BLE001
            base["weight_bytes"] = None

        # one output check per job (threads of the first count)
        t0 = args.threads[0]
        errors = {}
        ort_out = None
        outputs = {}
        try:
            ort_out = make_ort(job.path, arrays, t0).output()
        except Exception as error:  # noqa: BLE001
            base["notes"].append(f"onnxruntime failed: {short_error(error)}")
        if args.openvino:
            try:
                outputs["openvino"] = make_ov(job.path, arrays, t0).output()
            except Exception as error:  # noqa: BLE001
                base["notes"].append(f"openvino failed: {short_error(error)}")
        try:
            outputs["cbam-run"] = cbam_output(args.binary, job.path, job.inputs, t0, tmpdir)
        except Exception as error:  # noqa: BLE001
            base["notes"].append(f"cbam-run failed: {short_error(error)}")
        reference = ort_out if ort_out is not None else outputs.get("openvino")
        if reference is not None:
            scale = float(np.abs(reference).max()) or 1.0  # errors relative to max |onnxruntime output|
            if "cbam-run" in outputs and ort_out is not None:
                errors["vs_ort"] = max_abs_diff(outputs["cbam-run"], ort_out) / scale
            if "cbam-run" in outputs and "openvino" in outputs:
                errors["vs_ov"] = max_abs_diff(outputs["cbam-run"], outputs["openvino"]) / scale
            if ort_out is not None and "openvino" in outputs:
                errors["ov_vs_ort"] = max_abs_diff(outputs["openvino"], ort_out) / scale
        base["errors"] = errors
        base["disagree"] = any(v > DISAGREE for k, v in errors.items() if k in ("vs_ort", "vs_ov"))
        if base["disagree"]:
            base["notes"].append("cbam-run output differs from a peer by more than 1e-3 relative "
                                 f"(ort {fmt_err(errors.get('vs_ort'))}, ov {fmt_err(errors.get('vs_ov'))})")

        module, module_full, torch_note = (None, None, None)
        if torch_zoo is not None:
            try:
                module, module_full, torch_note = torch_zoo.get(job, (arrays[0], ort_out))
            except Exception as error:  # noqa: BLE001
                torch_note = f"rebuild failed: {short_error(error, 160)}"
            base["torch"] = torch_note
        bn_file = None

        for threads in args.threads:
            row = dict(base, threads=threads, notes=list(base["notes"]))
            peers = []
            for make, name, enabled in ((make_ort, "onnxruntime", True), (make_ov, "openvino", args.openvino)):
                if not enabled:
                    continue
                try:
                    peers.append(make(job.path, arrays, threads))
                except Exception as error:  # noqa: BLE001
                    row["notes"].append(f"{name} failed ({threads} thr): {short_error(error)}")
            if module is not None:
                peers.append(make_torch(module, arrays, threads))
            if args.paired:
                stats, extras = bench_paired(job, threads, args, peers, arrays, row["notes"])
            else:
                stats, extras = bench_job(job, threads, args, peers, row["notes"])
            row["stats"] = stats
            row["load_ms"] = {p.name: p.load_ms for p in peers if p.load_ms is not None}
            row["cbam_extras"] = extras
            best_peer = min((stats[p]["median_ms"] for p in ("onnxruntime", "openvino") if p in stats), default=None)
            row["ratio"] = stats["cbam-run"]["median_ms"] / best_peer if "cbam-run" in stats and best_peer else None
            del peers

            mem = {}
            if "cbam-run" in stats:
                mem["cbam-run"] = extras.get("peak_rss_bytes", extras.get("time_peak_bytes"))
            if args.memory:
                wanted = [("onnxruntime", None)] + ([("openvino", None)] if args.openvino else [])
                if module is not None:
                    if bn_file is None:
                        bn_file = torch_zoo.bn_state_file(module, tmpdir, f"job{index}")
                    wanted.append(("pytorch", [job.model_id, "1" if module_full else "0", bn_file]))
                for name, targs in wanted:
                    try:
                        mem[name] = measure_child(name, job.path, threads, job.inputs, targs)
                    except Exception as error:  # noqa: BLE001
                        row["notes"].append(f"{name} memory child failed: {short_error(error)}")
            row["mem_bytes"] = mem
            results.append(row)
            print_progress(tag, row)
    return results


def print_progress(tag, row):
    s = row["stats"]
    parts = [f"{SHORT[r]} {s[r]['median_ms']:.3f}" for r in ALL_RUNTIMES if r in s]
    ratio = f"ratio {row['ratio']:.2f}" if row["ratio"] else "ratio -"
    err = row["errors"]
    print(f"{tag} {row['threads']} thr: " + "  ".join(parts) + f" ms  {ratio}  err ort {fmt_err(err.get('vs_ort'))}"
          f" ov {fmt_err(err.get('vs_ov'))}" + ("  DISAGREE" if row.get("disagree") else ""), flush=True)


# --------------------------------------------------------------------------- tables and summaries

def columns(rows, set_name):
    """(header, align, getter) for one table; optional columns only when some row has the figure."""
    def stat(r, name, key="median_ms"):
        return r["stats"].get(name, {}).get(key)

    cols = [("model", "l", lambda r: r["label"] if set_name != "full" else r["model"])]
    if set_name == "full":
        cols += [("export", "l", lambda r: r["exporter"]), ("batch", "r", lambda r: str(r["batch"]))]
    cols += [("input", "l", lambda r: r.get("input", "")),
             ("cbam-run ms", "r", lambda r: fmt(stat(r, "cbam-run"))),
             ("ort ms", "r", lambda r: fmt(stat(r, "onnxruntime"))),
             ("ov ms", "r", lambda r: fmt(stat(r, "openvino"))),
             ("torch ms", "r", lambda r: fmt(stat(r, "pytorch"))),
             ("ratio", "r", lambda r: (fmt(r["ratio"], 2) if r["ratio"] else "-") + ("!" if r.get("disagree") else "")),
             ("err ort", "r", lambda r: fmt_err(r["errors"].get("vs_ort"))),
             ("err ov", "r", lambda r: fmt_err(r["errors"].get("vs_ov")))]
    if any("max_ms" in r["stats"].get("cbam-run", {}) for r in rows):
        cols.append(("cbam max ms", "r", lambda r: fmt(stat(r, "cbam-run", "max_ms"))))
    if any("compile_ms" in r["cbam_extras"] for r in rows):
        cols.append(("cbam compile ms", "r", lambda r: fmt(r["cbam_extras"].get("compile_ms"), 1)))
    if any("plan_peak_bytes" in r["cbam_extras"] for r in rows):
        cols.append(("cbam plan MB", "r", lambda r: fmt(mb(r["cbam_extras"].get("plan_peak_bytes")), 1)))
    cols.append(("weights MB", "r", lambda r: fmt(mb(r.get("weight_bytes")), 3)))
    for name in ALL_RUNTIMES:
        if any(name in r["mem_bytes"] for r in rows):
            cols.append((f"{SHORT[name]} mem MB", "r", (lambda n: lambda r: fmt(mb(r["mem_bytes"].get(n)), 1))(name)))
        if name == "cbam-run" and any("peak_above_start_bytes" in r["cbam_extras"] for r in rows):
            cols.append(("cbam mem above start MB", "r", lambda r: fmt(mb(r["cbam_extras"].get("peak_above_start_bytes")), 1)))
    # a peer that was switched off (--no-openvino, --no-torch) leaves no empty column
    return [c for c in cols if c[0] not in ("ov ms", "torch ms", "err ov") or any(c[2](r) for r in rows)]


def console_table(rows, set_name):
    cols = columns(rows, set_name)
    cells = [[c[2](r) for c in cols] for r in rows]
    widths = [max([len(c[0])] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) if c[1] == "l" else v.rjust(w) for v, w, c in zip(vals, widths, cols))  # noqa: E731
    print(line([c[0] for c in cols]))
    for row in cells:
        print(line(row))


def markdown_table(rows, set_name):
    cols = columns(rows, set_name)
    out = ["| " + " | ".join(c[0] for c in cols) + " |",
           "|" + "|".join("---" if c[1] == "l" else "---:" for c in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c[2](r) for c in cols) + " |")
    return out


def summaries(rows, set_name, specs_deep):
    """Lines of text: geometric means and the worst model for one set and thread count."""
    done = [r for r in rows if r["ratio"]]
    lines = []
    if not done:
        return ["no ratios (every row failed)"]
    what = "small zoo models" if set_name == "zoo" else "rows"
    lines.append(f"geometric mean ratio over {len(done)} {what}: {geomean([r['ratio'] for r in done]):.2f}")
    for peer, short in (("onnxruntime", "onnxruntime"), ("openvino", "OpenVINO"), ("pytorch", "PyTorch")):
        pairs = [r["stats"]["cbam-run"]["median_ms"] / r["stats"][peer]["median_ms"] for r in done
                 if peer in r["stats"] and "cbam-run" in r["stats"]]
        if pairs:
            lines.append(f"  cbam-run / {short} alone: {geomean(pairs):.2f} ({len(pairs)} rows)")
    blocks = [r for r in done if is_cbam_block(r["model"], specs_deep)]
    if blocks and set_name != "full":
        names = ", ".join(f"{r['model']} {r['ratio']:.2f}" for r in blocks)
        lines.append(f"CBAM blocks ({len(blocks)}): geometric mean {geomean([r['ratio'] for r in blocks]):.2f} ({names})")
    if set_name == "full":
        for exporter in sorted({r["exporter"] for r in done}):
            for batch in sorted({r["batch"] for r in done}):
                sel = [r["ratio"] for r in done if r["exporter"] == exporter and r["batch"] == batch]
                if sel:
                    lines.append(f"  {exporter} batch {batch}: geometric mean {geomean(sel):.2f} ({len(sel)} rows)")
    worst = max(done, key=lambda r: r["ratio"])
    best = min(done, key=lambda r: r["ratio"])
    lines.append(f"worst: {worst['label']} {worst['ratio']:.2f}; best: {best['label']} {best['ratio']:.2f}")
    bad = [r for r in rows if r.get("disagree")]
    if bad:
        lines.append("outputs disagree (> 1e-3 relative): " + ", ".join(r["label"] for r in bad))
    return lines


SET_TITLES = {"zoo": "Small zoo models (Models/, TorchScript opset 17, batch 2)",
              "full": "Full-size networks (tools/export_models.py --full)",
              "files": "Models given with --models",
              "families": "Modern families (tools/export_timm.py --wide; figures only, no bar)"}


def groups(results, threads):
    for set_name in ("zoo", "full", "files", "families"):
        for t in threads:
            rows = [r for r in results if r["set"] == set_name and r.get("threads") == t]
            if rows:
                yield set_name, t, rows


def problems(results):
    out = []
    for r in results:
        if r.get("skipped"):
            out.append(f"{r['label']}: skipped ({r['skipped']})")
        elif r.get("failed"):
            out.append(f"{r['label']}: FAILED ({r['failed']})")
        else:
            for n in r["notes"]:
                line = f"{r['label']} ({r['threads']} thr): {n}"
                if line not in out:
                    out.append(line)
    return out


# --------------------------------------------------------------------------- chart and BENCHMARKS.md

def chart(results, threads, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = [s for s in ("zoo", "full", "files") if any(r["set"] == s and r.get("ratio") for r in results)]
    if not sets:
        return False
    labels_by_set = {}
    for s in sets:
        labels = []
        for r in results:
            if r["set"] == s and r.get("threads") is not None and r["label"] not in labels:
                labels.append(r["label"])
        labels_by_set[s] = labels
    heights = [max(2.0, 0.24 * len(labels_by_set[s]) * max(1, len(threads)) ** 0.5 + 1.2) for s in sets]
    fig, axes = plt.subplots(len(sets), 1, figsize=(9, sum(heights)), gridspec_kw={"height_ratios": heights},
                             squeeze=False)
    colors = ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]
    for ax, s in zip(axes[:, 0], sets):
        labels = labels_by_set[s]
        n = len(threads)
        bar = 0.8 / n
        all_ratios = []
        for k, t in enumerate(threads):
            ratios = []
            for label in labels:
                row = next((r for r in results if r["set"] == s and r["label"] == label and r.get("threads") == t), None)
                ratios.append(row["ratio"] if row and row.get("ratio") else np.nan)
            all_ratios += [v for v in ratios if not np.isnan(v)]
            ys = np.arange(len(labels)) + (k - (n - 1) / 2) * bar
            ax.barh(ys, ratios, height=bar, color=colors[k % len(colors)], label=f"{t} thread{'s' if t > 1 else ''}")
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_yticks(np.arange(len(labels)))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # first model on top, no empty margins
        ax.set_xscale("log")
        lo = min(all_ratios + [1.0]) / 1.15
        hi = max(all_ratios + [1.0]) * 1.15
        ax.set_xlim(lo, hi)
        ticks = [v for v in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16) if lo <= v <= hi]
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{v:g}" for v in ticks])
        ax.minorticks_off()
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.set_title(SET_TITLES[s], fontsize=10)
        ax.set_xlabel("cbam-run time / faster of onnxruntime and OpenVINO (log scale; < 1 = cbam-run faster)",
                      fontsize=8)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def deep_specs():
    """The model ids of the zoo's deep specs (tools/zoo.py), or none where it does not import."""
    try:
        sys.path.insert(0, HERE)
        from zoo import all_specs
        return {s.model_id for s in all_specs() if s.deep}
    except Exception:  # noqa: BLE001
        return set()


def write_outputs(results, args, header, per_layers, specs_deep):
    """BENCHMARKS.md and docs/bench-ratios.png from one run's figures."""
    chart_path = os.path.join(ROOT, "docs", "bench-ratios.png")
    has_chart = chart(results, args.threads, chart_path) if results else False
    write_benchmarks(os.path.join(ROOT, "BENCHMARKS.md"), results, args, header, per_layers, specs_deep,
                     "docs/bench-ratios.png" if has_chart else None)
    print(f"\nwrote {rel(os.path.join(ROOT, 'BENCHMARKS.md'))}" + (f" and {rel(chart_path)}" if has_chart else ""))


def rewrite_benchmarks(parser, path):
    """--rewrite: the saved run's own arguments (from its header's command) and figures, written out."""
    with open(path) as f:
        saved = json.load(f)
    command = shlex.split(saved["header"]["command"])
    args = parser.parse_args(command[2:] if command[:2] == ["python3", "tools/bench.py"] else command[1:])
    write_outputs(saved["results"], args, saved["header"], saved.get("per_layer", []), deep_specs())
    return 0


def write_benchmarks(path, results, args, header, per_layers, specs_deep, chart_rel):
    cpu, vers = header["cpu"], header["versions"]
    lines = ["# Benchmarks", "",
             "Generated by `tools/bench.py --write` (do not edit by hand; re-run the tool).", "",
             f"- date: {header['date']}",
             f"- CPU: {cpu['model_name']} (family {cpu['family']}, model {cpu['model']}), {cpu['cores']} logical CPUs; "
             f"{isa_summary(cpu)}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
             f"- command: `{header['command']}`"]
    if header["env"]:
        lines.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in header["env"].items()))
    lines += ["",
              (f"Each row (--paired): {args.warmup} untimed warm-up run(s) of each runtime, then {args.runs} timed runs of "
               "each, the runtimes taking turns run by run in a rotating order (each timed run right after an untimed one), all in one process (cbam-run through "
               "its Python package over libcbamrun.so, which adds its per-call overhead of about 15 µs; onnxruntime "
               "through run_with_iobinding, OpenVINO through infer() on preset input tensors). Times are median "
               "milliseconds per run; compile time and memory from one `cbam-run bench` process."
               if args.paired else
               f"Each row: {args.runs} timed runs per runtime in {max(1, min(args.rounds, args.runs))} interleaved rounds "
               f"(in each round every runtime, in a rotating order, does {args.warmup} untimed warm-up run(s), then its "
               "share of the timed runs; onnxruntime through run_with_iobinding, OpenVINO through infer() on preset "
               "input tensors). Times are "
               "median milliseconds per run (cbam-run: median of its per-round medians, each round a fresh "
               "`cbam-run bench` process with its own warm-up).")
              + " ratio = cbam-run / the faster of onnxruntime and "
              "OpenVINO (lower is better); `!` marks a cbam-run output that differs from onnxruntime or OpenVINO by "
              "more than 1e-3 × max |output| (columns err ort / err ov). PyTorch is eager mode under "
              "`torch.inference_mode()` with the module rebuilt from tools/zoo, empty where it cannot be rebuilt. "
              "Memory: peak RSS of a process that loads the model and runs it; for the Python peers minus the "
              "process's RSS after importing the library; cbam-run: its whole process (mem) and, measured like the peers, its "
              "peak less its RSS before it opened the model (above start). weights = ONNX initializers.",
              ""]
    if chart_rel:
        lines += [f"![cbam-run / faster peer per model]({chart_rel})", ""]
    for set_name, t, rows in groups(results, args.threads):
        lines += [f"## {SET_TITLES[set_name]}, {t} thread{'s' if t > 1 else ''}", ""]
        lines += markdown_table(rows, set_name)
        lines += [""] + [f"  - {s.strip()}" if s.startswith(" ") else f"- {s}"
                         for s in summaries(rows, set_name, specs_deep)] + [""]
    probs = problems(results)
    if probs:
        lines += ["## Failures, skips and notes", ""] + [f"- {p}" for p in probs] + [""]
    torch_notes = sorted({(r["label"], r["torch"]) for r in results if r.get("torch") and r.get("threads")})
    if torch_notes and any(not n.startswith("rebuilt") for _, n in torch_notes):
        lines += ["## PyTorch column", ""]
        lines += [f"- {label}: {note}" for label, note in torch_notes if not note.startswith("rebuilt")] + [""]
    if per_layers:
        lines += ["## Per-node profile", ""]
        for p in per_layers:
            lines += per_layer_markdown(p) + [""]
    # Measurements made by other tools (the Python package's call overhead, Ray vs shards) are
    # kept in docs/benchmarks-other.md, with the commands that made them, and carried over here.
    other = os.path.join(ROOT, "docs", "benchmarks-other.md")
    if os.path.exists(other):
        lines += ["", open(other).read().rstrip()]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


# --------------------------------------------------------------------------- main

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_mem":
        mem_child(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sets = parser.add_argument_group("model sets (default: the small zoo)")
    sets.add_argument("--models", nargs="+", metavar="FILE", help="these .onnx files (input.npy beside each, "
                      "else random inputs with a fixed seed, batch 1)")
    sets.add_argument("--full", metavar="DIR", help="full-size networks exported by tools/export_models.py --full "
                      "--out DIR: TorchScript op17 and dynamo files, batch 1 and 2")
    sets.add_argument("--full-blocks", action="store_true", help="with --full: also the full-size blocks, not only "
                      "the networks")
    sets.add_argument("--families", metavar="DIR", help="issue 15's modern families exported by tools/export_timm.py "
                      "--wide --out DIR: one export per family, batch as exported")
    sets.add_argument("--zoo", action="store_true", help="the small zoo set too, when --full, --models or --families "
                      "is given")
    sets.add_argument("--only", action="append", default=[], metavar="TEXT",
                      help="keep models whose id or path contains TEXT (repeatable)")
    timing = parser.add_argument_group("timing")
    timing.add_argument("--threads", type=int, nargs="+", default=[1], metavar="T",
                        help="thread counts, each its own rows (default: 1); e.g. --threads 1 2")
    timing.add_argument("--runs", type=int, default=20, help="timed runs per runtime and row (default: 20)")
    timing.add_argument("--warmup", type=int, default=3,
                        help="untimed warm-up runs of each runtime at the start of every round (default: 3)")
    timing.add_argument("--rounds", type=int, default=5, help="interleaved rounds the runs are split into (default: 5)")
    timing.add_argument("--pause", type=float, default=0.05, help="seconds between runtimes in a round (default: 0.05)")
    timing.add_argument("--paired", action="store_true",
                        help="runtimes take turns run by run, all in this process (cbam-run through libcbamrun.so); "
                             "steadier ratios on a noisy machine")
    timing.add_argument("--library", default=DEFAULT_LIBRARY,
                        help="libcbamrun.so for --paired (default: .build/release/libcbamrun.so)")
    peers = parser.add_argument_group("peers")
    peers.add_argument("--no-torch", dest="torch", action="store_false", help="no PyTorch column")
    peers.add_argument("--no-openvino", dest="openvino", action="store_false", help="no OpenVINO column")
    peers.add_argument("--no-memory", dest="memory", action="store_false",
                       help="skip the peak-memory child processes of the Python peers")
    peers.add_argument("--binary", default=DEFAULT_BINARY, help="the cbam-run binary (default: .build/release/cbam-run)")
    out = parser.add_argument_group("output")
    out.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    out.add_argument("--write", action="store_true",
                     help="write BENCHMARKS.md at the repository root and the chart docs/bench-ratios.png")
    out.add_argument("--json", metavar="FILE", help="also save every figure as JSON")
    out.add_argument("--per-layer", action="append", default=[], metavar="MODEL",
                     help="per-node times of MODEL from cbam-run's --profile-json trace (repeatable; first --threads count)")
    out.add_argument("--per-layer-repeats", type=int, default=3, help="profiled runs per --per-layer model (default: 3)")
    out.add_argument("--no-bench", action="store_true", help="no timing table (with --per-layer: only the profile)")
    out.add_argument("--rewrite", metavar="FILE", help="time nothing: write BENCHMARKS.md (and the chart) from the "
                     "--json FILE of an earlier run, as that run's --write would have")
    args = parser.parse_args()
    if args.rewrite:
        return rewrite_benchmarks(parser, args.rewrite)
    if args.runs < 1 or args.warmup < 0 or args.rounds < 1 or any(t < 1 for t in args.threads):
        parser.error("--runs, --rounds and --threads must be >= 1, --warmup >= 0")
    args.binary = os.path.abspath(args.binary)
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: build it first: swift build -c release --product cbam-run")
    if args.openvino:
        try:
            import openvino  # noqa: F401
        except ImportError:
            print("openvino not installed: no OpenVINO column (pip install -r tools/requirements.txt)", file=sys.stderr)
            args.openvino = False

    jobs = []
    if not args.no_bench:
        if args.models:
            jobs += file_jobs(args.models)
        if args.full:
            jobs += full_jobs(os.path.abspath(args.full), args.full_blocks)
        if args.families:
            jobs += family_jobs(os.path.abspath(args.families))
        if args.zoo or not (args.models or args.full or args.families):
            jobs += zoo_jobs()
        if args.only:
            jobs = [j for j in jobs if any(o in j.model_id or o in j.path for o in args.only)]
        if not jobs:
            sys.exit("no model to benchmark")

    specs_deep = set()
    torch_zoo = None
    if args.torch and jobs:
        try:
            torch_zoo = TorchZoo()
            specs_deep = {k for k, s in torch_zoo.specs.items() if s.deep}
        except Exception as error:  # noqa: BLE001
            print(f"PyTorch column off: {short_error(error)}", file=sys.stderr)
    if not specs_deep:
        specs_deep = deep_specs()

    header = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu_info(),
              "versions": versions(args.binary, args.torch),
              "command": "python3 tools/bench.py " + shlex.join(sys.argv[1:]),
              "env": {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}}
    cpu = header["cpu"]
    print(f"CPU: {cpu['model_name']} (family {cpu['family']}, model {cpu['model']}), {cpu['cores']} CPUs; {isa_summary(cpu)}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in header["versions"].items()))

    tmpdir = tempfile.mkdtemp(prefix="cbam-bench-")
    try:
        results = run_jobs(jobs, args, tmpdir, torch_zoo) if jobs else []
        per_layers = []
        for model in args.per_layer:
            try:
                p = per_layer(model, args, tmpdir, args.threads[0])
                per_layers.append(p)
                per_layer_console(p)
            except Exception as error:  # noqa: BLE001
                print(f"per-layer {model}: FAILED ({short_error(error)})", file=sys.stderr)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    for set_name, t, rows in groups(results, args.threads):
        print(f"\n{SET_TITLES[set_name]}, {t} thread(s), median of {args.runs} runs in "
              f"{max(1, min(args.rounds, args.runs))} interleaved rounds:")
        if args.markdown:
            print("\n".join(markdown_table(rows, set_name)))
        else:
            console_table(rows, set_name)
        for line in summaries(rows, set_name, specs_deep):
            print(line)
    probs = problems(results)
    if probs:
        print("\nfailures, skips and notes:")
        for p in probs:
            print(f"  {p}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "results": results, "per_layer": per_layers}, f, indent=1, default=str)
    if args.write:
        write_outputs(results, args, header, per_layers, specs_deep)
    failed = any(r.get("failed") for r in results) or len(per_layers) < len(args.per_layer)
    return 1 if failed and not any(r.get("ratio") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
