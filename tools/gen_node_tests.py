#!/usr/bin/env python3
"""Generate ONNX "node" backend conformance cases for selected op types.

The cases come from the installed onnx package's own definitions
(onnx.backend.test.case.node.collect_testcases), i.e. the same source the onnx
repository uses for onnx/backend/test/data/node. Each case is written in the
standard layout:

    <out>/<case name>/model.onnx
    <out>/<case name>/test_data_set_<k>/input_<j>.pb, output_<j>.pb

TensorProto files are named after the graph input/output they feed, exactly as
onnx/backend/test/cmd_tools.py does (numpy_helper.from_array(arr, name); cases
that already define TensorProto values are written as-is).

A manifest (<out>/manifest.json) lists every written case with its op, opset,
tolerances, I/O names, dtypes, whether it is a function-body expansion, and
whether onnxruntime reproduces the stored outputs. Cases that are not written
(non-tensor I/O, too large) are listed under "skipped".

The output directory is owned by this script: stale case directories
(test_*/ holding a model.onnx) are removed on every run.

Usage:
    python3 tools/gen_node_tests.py                      # default op list
    python3 tools/gen_node_tests.py --ops Conv,Relu      # subset
    python3 tools/gen_node_tests.py --no-onnxruntime     # skip the ORT check
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO_ROOT, "Tests", "CBAMRuntimeTests", "Fixtures", "node")

def registered_ops() -> str:
    """The op types cbam-run registers, read from its kernel sources
    (`register("OpType")` lines in Sources/CBAMRuntime/Kernels/), so the cases
    follow the registry without a second list to keep in sync."""
    kernels = os.path.join(REPO_ROOT, "Sources", "CBAMRuntime", "Kernels")
    ops = set()
    for name in sorted(os.listdir(kernels)):
        if name.endswith(".swift"):
            with open(os.path.join(kernels, name), encoding="utf-8") as f:
                ops.update(re.findall(r'register\("([A-Za-z0-9]+)"', f.read()))
    return ",".join(sorted(ops))


DEFAULT_OPS = registered_ops()

MAX_CASE_BYTES = 2 * 1024 * 1024
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-7
EXPANDED_RE = re.compile(r"^(?P<base>.+)_expanded(?:_ver\d+)?$")


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------


def collect_all_cases() -> list[Any]:
    """All node cases of the installed onnx package.

    collect_testcases(op_type) can only be used once per process (the case
    modules run their exports at import time), so collect everything once and
    filter by the op type of each case's node.
    """
    import onnx.backend.test.case.node as node_cases

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        import numpy as np

        with np.errstate(all="ignore"):
            return list(node_cases.collect_testcases())


def non_tensor_reason(model: Any) -> str | None:
    g = model.graph
    for kind, vis in (("input", g.input), ("output", g.output)):
        for vi in vis:
            which = vi.type.WhichOneof("value")
            if which != "tensor_type":
                return f"graph {kind} {vi.name!r} has {which or 'no'} type (only tensor I/O is stored)"
    return None


def default_opset(model: Any) -> int | None:
    for oi in model.opset_import:
        if oi.domain in ("", "ai.onnx"):
            return int(oi.version)
    return None


def dtype_names(model: Any) -> list[str]:
    from onnx import TensorProto

    names = set()
    for vi in list(model.graph.input) + list(model.graph.output):
        names.add(TensorProto.DataType.Name(vi.type.tensor_type.elem_type))
    return sorted(names)


def tensor_bytes(value: Any, name: str) -> bytes:
    from onnx import TensorProto, numpy_helper

    if isinstance(value, TensorProto):
        # Same as onnx's cmd_tools: predefined TensorProtos are stored verbatim.
        return value.SerializeToString()
    return numpy_helper.from_array(value, name).SerializeToString()


def serialize_case(case: Any) -> dict[str, bytes]:
    """Relative path -> file content for one case."""
    files: dict[str, bytes] = {"model.onnx": case.model.SerializeToString()}
    g = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets):
        d = f"test_data_set_{k}"
        for j, value in enumerate(inputs):
            files[f"{d}/input_{j}.pb"] = tensor_bytes(value, g.input[j].name)
        for j, value in enumerate(outputs):
            files[f"{d}/output_{j}.pb"] = tensor_bytes(value, g.output[j].name)
    return files


def clean_out_dir(out: str) -> None:
    if not os.path.isdir(out):
        return
    for entry in os.listdir(out):
        p = os.path.join(out, entry)
        if entry.startswith("test_") and os.path.isdir(p) and os.path.exists(os.path.join(p, "model.onnx")):
            shutil.rmtree(p)


def tree_sizes(path: str) -> tuple[int, int, int]:
    """(file content bytes, allocated bytes incl. directories as du counts, file count)."""
    apparent = allocated = count = 0
    for root, _dirs, files in os.walk(path):
        allocated += getattr(os.stat(root), "st_blocks", 0) * 512
        for f in files:
            st = os.stat(os.path.join(root, f))
            apparent += st.st_size
            allocated += getattr(st, "st_blocks", 0) * 512
            count += 1
    return apparent, allocated, count


# --------------------------------------------------------------------------
# onnxruntime check (runs in a child process so an ORT crash cannot take the
# generator down; a crash is recorded against the case that caused it)
# --------------------------------------------------------------------------


def _short(msg: str, limit: int = 160) -> str:
    msg = " ".join(str(msg).split())
    # ORT messages start with a long "[ONNXRuntimeError] : 1 : FAIL : " prefix.
    msg = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", msg)
    msg = re.sub(r"ONNX Runtime only \*guarantees\* support.*Current official support for domain (\S+) is till opset (\d+)\.?",
                 r"onnxruntime supports \1 officially only up to opset \2", msg)
    msg = re.sub(r"Load model from \S+ failed:", "", msg)
    msg = re.sub(r"This is an invalid model\. In Node, .*?Error (No Op registered)", r"\1", msg)
    # Drop "/onnxruntime_src/<file>:<line> <C++ signature>) " source locations.
    msg = re.sub(r"/onnxruntime_src/\S+:\d+ .*?\) ", "", msg)
    msg = re.sub(r"/onnxruntime_src/\S+:\d+ ", "", msg)
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def load_data_sets(case_dir: str) -> list[tuple[list[Any], list[Any]]]:
    """Read every test_data_set_<k> of a written case back from disk."""
    import onnx
    from onnx import numpy_helper

    sets = []
    k = 0
    while os.path.isdir(os.path.join(case_dir, f"test_data_set_{k}")):
        ds = os.path.join(case_dir, f"test_data_set_{k}")
        io_lists: list[list[Any]] = []
        for prefix in ("input", "output"):
            arrs = []
            j = 0
            while os.path.exists(os.path.join(ds, f"{prefix}_{j}.pb")):
                t = onnx.TensorProto()
                with open(os.path.join(ds, f"{prefix}_{j}.pb"), "rb") as f:
                    t.ParseFromString(f.read())
                arrs.append(numpy_helper.to_array(t))
                j += 1
            io_lists.append(arrs)
        sets.append((io_lists[0], io_lists[1]))
        k += 1
    return sets


def compare_outputs(outs: list[Any], refs: list[Any], rtol: float, atol: float, k: int) -> str | None:
    """None if outs match refs like onnx's backend runner would accept, else a reason."""
    import numpy as np

    if len(outs) != len(refs):
        return f"data set {k}: {len(outs)} outputs, expected {len(refs)}"
    for i, (out, ref) in enumerate(zip(outs, refs, strict=True)):
        out = np.asarray(out)
        if out.shape != ref.shape:
            return f"data set {k} output {i}: shape {out.shape} != {ref.shape}"
        try:
            if ref.dtype == object or out.dtype == object:  # strings
                np.testing.assert_array_equal(out, ref)
                continue
            if out.dtype != ref.dtype:
                return f"data set {k} output {i}: dtype {out.dtype} != {ref.dtype}"
            r = rtol
            if out.dtype.name == "bfloat16":  # as onnx's runner: two bfloat16 ULPs
                r = max(rtol, 2**-6)
                out, ref = out.astype(np.float32), ref.astype(np.float32)
            elif out.dtype.name.startswith(("float8", "float4")):
                out, ref = out.astype(np.float32), ref.astype(np.float32)
            elif out.dtype.name in ("int4", "uint4", "int2", "uint2"):
                out, ref = out.astype(np.int32), ref.astype(np.int32)
            with np.errstate(all="ignore"):
                np.testing.assert_allclose(out, ref, rtol=r, atol=atol)
        except AssertionError as e:
            msg = [line.strip() for line in str(e).splitlines() if "Max absolute" in line or "Mismatched" in line]
            return _short(f"data set {k} output {i}: " + "; ".join(msg or [str(e)]))
        except Exception as e:  # noqa: BLE001
            return _short(f"data set {k} output {i}: cannot compare: {e}")
    return None


def ort_check_case(case_dir: str, rtol: float, atol: float) -> tuple[str, str]:
    """Return (onnxruntime status, detail)."""
    import onnx
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    note = ""
    try:
        model = onnx.load(os.path.join(case_dir, "model.onnx"))
        sess = ort.InferenceSession(
            os.path.join(case_dir, "model.onnx"), sess_options=so, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # noqa: BLE001
        m = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", str(e))
        if not m:
            return "error: " + _short(f"load: {e}"), ""
        # The stored model uses a newer IR version than this onnxruntime reads.
        # To still check the stored data, retry an in-memory copy with the IR
        # version lowered (the file on disk is untouched); the detail says so.
        try:
            lowered = onnx.ModelProto()
            lowered.CopyFrom(model)
            lowered.ir_version = int(m.group(2))
            sess = ort.InferenceSession(
                lowered.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
            )
            note = f"checked with ir_version lowered {m.group(1)}->{m.group(2)} (onnxruntime cannot load IR {m.group(1)})"
        except Exception as e2:  # noqa: BLE001
            return "error: " + _short(f"load: IR {m.group(1)} unsupported; with IR {m.group(2)}: {e2}"), ""

    in_names = [vi.name for vi in model.graph.input]
    out_names = [vi.name for vi in model.graph.output]
    try:
        data_sets = load_data_sets(case_dir)
    except Exception as e:  # noqa: BLE001
        return "error: " + _short(f"cannot read stored data: {e}"), note
    for k, (inputs, refs) in enumerate(data_sets):
        try:
            outs = sess.run(out_names[: len(refs)], dict(zip(in_names, inputs, strict=False)))
        except Exception as e:  # noqa: BLE001
            return "error: " + _short(f"run: {e}"), note
        why = compare_outputs(outs, refs, rtol, atol, k)
        if why is not None:
            return "fail", _join(note, why)
    return "pass", note


def reference_check_case(case_dir: str, rtol: float, atol: float) -> str:
    """Second opinion from onnx.reference.ReferenceEvaluator (used when ORT does not pass)."""
    import numpy as np
    import onnx
    from onnx.reference import ReferenceEvaluator

    try:
        model = onnx.load(os.path.join(case_dir, "model.onnx"))
        ev = ReferenceEvaluator(model)
        in_names = [vi.name for vi in model.graph.input]
        for k, (inputs, refs) in enumerate(load_data_sets(case_dir)):
            with np.errstate(all="ignore"):
                outs = ev.run(None, dict(zip(in_names, inputs, strict=False)))
            why = compare_outputs(list(outs)[: len(refs)], refs, rtol, atol, k)
            if why is not None:
                return "onnx.reference: fail (" + why + ")"
        return "onnx.reference: pass"
    except Exception as e:  # noqa: BLE001
        return "onnx.reference: error (" + _short(str(e), 100) + ")"


def ort_worker(out: str, list_file: str) -> int:
    with open(list_file) as f:
        jobs = json.load(f)
    warnings.simplefilter("ignore")
    for job in jobs:
        print(json.dumps({"name": job["name"], "start": True}), flush=True)
        case_dir = os.path.join(out, job["name"])
        status, detail = ort_check_case(case_dir, job["rtol"], job["atol"])
        if status != "pass":
            detail = _join(detail, reference_check_case(case_dir, job["rtol"], job["atol"]))
        print(json.dumps({"name": job["name"], "status": status, "detail": detail}), flush=True)
    return 0


def run_ort_checks(out: str, jobs: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    import tempfile

    results: dict[str, tuple[str, str]] = {}
    pending = list(jobs)
    while pending:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tf:
            json.dump(pending, tf)
            list_file = tf.name
        try:
            # Let onnxruntime load models stamped with the newest (unreleased
            # for it) opset; kernels registered for an op's current version
            # still apply. Without this every opset-28 model is refused.
            env = dict(os.environ, ALLOW_RELEASED_ONNX_OPSET_ONLY="0")
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--ort-worker", list_file, "--out", out],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            os.unlink(list_file)
        started = None
        for line in proc.stdout.splitlines():
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if msg.get("start"):
                started = msg["name"]
            else:
                results[msg["name"]] = (msg["status"], msg["detail"])
                started = None
        if started is not None:  # the worker died while running this case
            results[started] = (f"error: onnxruntime process crashed (exit code {proc.returncode})", "")
        elif not all(j["name"] in results for j in pending):
            for j in pending:  # worker failed outside any case (e.g. import error)
                results.setdefault(j["name"], (f"error: checker failed (exit code {proc.returncode})", _short(proc.stderr)))
        pending = [j for j in pending if j["name"] not in results]
    return results


# --------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default=DEFAULT_OPS, help="comma-separated ONNX op types (default: every op cbam-run registers)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    ap.add_argument("--max-case-bytes", type=int, default=MAX_CASE_BYTES, help="skip cases larger than this (default 2 MiB)")
    ap.add_argument("--no-onnxruntime", action="store_true", help="do not run the onnxruntime sanity check")
    ap.add_argument("--ort-worker", metavar="JOBS_JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()

    out = os.path.abspath(args.out)
    if args.ort_worker:
        return ort_worker(out, args.ort_worker)

    import onnx

    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    wanted = set(ops)

    all_cases = collect_all_cases()
    # Op type of every base (non-expanded) case; expansions inherit it.
    base_op: dict[str, str] = {}
    for c in all_cases:
        if not EXPANDED_RE.match(c.name) and c.model is not None and len(c.model.graph.node) == 1:
            base_op[c.name] = c.model.graph.node[0].op_type

    selected = []
    for c in all_cases:
        if c.kind != "node" or c.model is None:
            continue
        m = EXPANDED_RE.match(c.name)
        op = base_op.get(m.group("base")) if m else base_op.get(c.name)
        if op is None and m is None and len(c.model.graph.node) == 1:
            op = c.model.graph.node[0].op_type
        if op in wanted:
            selected.append((op, c, m is not None))
    selected.sort(key=lambda t: t[1].name)

    os.makedirs(out, exist_ok=True)
    clean_out_dir(out)

    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for op, case, expanded in selected:
        reason = non_tensor_reason(case.model)
        files: dict[str, bytes] = {}
        if reason is None:
            try:
                files = serialize_case(case)
            except Exception as e:  # noqa: BLE001
                reason = "cannot serialize data: " + _short(str(e))
        if reason is None:
            size = sum(len(b) for b in files.values())
            if size > args.max_case_bytes:
                reason = f"too large ({size} bytes > {args.max_case_bytes})"
        if reason is not None:
            skipped.append({"name": case.name, "op": op, "expanded": expanded, "reason": reason})
            continue
        case_dir = os.path.join(out, case.name)
        for rel, data in files.items():
            p = os.path.join(case_dir, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        rtol = float(case.rtol) if case.rtol is not None else DEFAULT_RTOL
        atol = float(case.atol) if case.atol is not None else DEFAULT_ATOL
        entries.append(
            {
                "name": case.name,
                "op": op,
                "opset": default_opset(case.model),
                "rtol": rtol,
                "atol": atol,
                "inputs": [vi.name for vi in case.model.graph.input],
                "outputs": [vi.name for vi in case.model.graph.output],
                "dtypes": dtype_names(case.model),
                "expanded": expanded,
                "onnxruntime": "not run",
                "status": "unknown",
                "reason": "",
            }
        )

    ort_version = None
    if not args.no_onnxruntime and entries:
        import onnxruntime

        ort_version = onnxruntime.__version__
        res = run_ort_checks(out, [{"name": e["name"], "rtol": e["rtol"], "atol": e["atol"]} for e in entries])
        for e in entries:
            status, detail = res.get(e["name"], ("error: no result", ""))
            e["onnxruntime"] = status
            if detail:
                e["onnxruntime_detail"] = detail

    counts: dict[str, int] = {op: 0 for op in ops}
    for e in entries:
        counts[e["op"]] += 1
    manifest = {
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort_version,
        "generator": "tools/gen_node_tests.py",
        "ops": ops,
        "case_counts": counts,
        "ops_without_cases": [op for op in ops if counts[op] == 0 and not any(s["op"] == op for s in skipped)],
        "cases": entries,
        "skipped": skipped,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    # ---- report ----
    print(f"onnx {onnx.__version__}: {len(entries)} cases written to {out}, {len(skipped)} skipped")
    for op in ops:
        n_exp = sum(1 for e in entries if e["op"] == op and e["expanded"])
        n_skip = sum(1 for s in skipped if s["op"] == op)
        print(f"  {op:20s} {counts[op]:4d} cases ({n_exp} expanded){f', {n_skip} skipped' if n_skip else ''}")
    if manifest["ops_without_cases"]:
        print("ops with no node cases in this onnx version:", ", ".join(manifest["ops_without_cases"]))
    for s in skipped:
        print(f"  skipped {s['name']}: {s['reason']}")
    if ort_version:
        bad = [e for e in entries if e["onnxruntime"] != "pass"]
        print(f"onnxruntime {ort_version}: {len(entries) - len(bad)} pass, {len(bad)} not pass")
        for e in bad:
            print(f"  {e['name']}: {e['onnxruntime']} {e.get('onnxruntime_detail', '')}".rstrip())
    apparent, allocated, nfiles = tree_sizes(out)
    print(
        f"total size: {apparent / 1e6:.2f} MB of file content in {nfiles} files "
        f"({allocated / 1e6:.2f} MB allocated on disk incl. directories, as du reports)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
