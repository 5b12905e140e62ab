#!/usr/bin/env python3
"""Export modern timm / torchvision families (issue 15) and check cbam-run against PyTorch.

Each model is built with random weights (nothing is downloaded: pretrained=False,
weights=None), seeded, in eval mode, with a small input. The script writes, per model,

    <out>/<name>/input.npy           float32 input (batch 2)
    <out>/<name>/output.npy          PyTorch's output for it
    <out>/<name>/torchscript_op17.onnx, dynamo.onnx   (where the exporter succeeds)
    <out>/<name>/attention/NN_self-attention.npy      PyTorch's self-attention maps (inputs of
                                     timm's attn_drop modules, in execution order)

and <out>/manifest.json in the format of Models/manifest.json (paths relative to the
directory above <out>, so Models/timm/ entries read "timm/<name>/…"), with the tolerance
of issue 15: max abs error ≤ 1e-4 × max |output| (atol = that, rtol = 0). Each entry also
carries the expected counts, from PyTorch's own forward pass (a TorchFunctionMode counting
timm's calls): "expected_gates" (sigmoid / hard-sigmoid calls: SE, ECA and the like) and
"expected_self_attention" (softmax calls). Where timm's attn_drop modules do not see every
softmax (BoTNet, HaloNet, LambdaResNet, GCNet, EfficientViT-M0 compute it inline), the
expected softmax tensors come from onnxruntime instead: a copy of the export with every
Softmax output added as a graph output, run by onnxruntime ("attention_source":
"onnxruntime", files under <name>/attention_<exporter>/); PyTorch's softmax outputs, seen by
the same TorchFunctionMode, are compared with them and the largest difference is printed.
Exports PyTorch cannot make are listed under "failures" (family, exporter, one line why).

With --check it also runs every export through cbam-run (--cbam-run, default
.build/debug/cbam-run) and onnxruntime and prints each one's max abs error, the bound,
and the op types the file uses. Only the exports a family lists as stored are kept,
and only when the file is at most --max-bytes (default 2 MB; --keep-large keeps larger
ones) and cbam-run passed (when checked); the others are deleted after the check. With
--wide every export PyTorch makes is kept.

    python3 tools/export_timm.py --check                       # all families, into Models/timm
    python3 tools/export_timm.py --check --only convnext --out /tmp/timm
    python3 tools/export_timm.py --wide --out .build/timm-wide   # issue 15's whole list, both exporters, all kept
    python3 tools/export_timm.py --check --large --out /tmp/timm   # + torchvision's full-size ConvNeXt-T, checked only

--wide (what `make test-wide` runs) exports one model of each family of issue 15's done-when
list with both exporters and keeps every file that PyTorch writes, whatever its size, for
WideFamilyTests (CBAM_TIMM_WIDE=<out> swift test --filter WideFamily).

Needs timm 1.0.31 and torchvision (pip install timm==1.0.31; see tools/requirements.txt).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

torch.set_num_threads(1)


def timm_model(name, **kwargs):
    def build():
        import timm
        return timm.create_model(name, pretrained=False, **kwargs)
    return build


def metaformer(norm, **kwargs):
    """timm's PoolFormer (v1: GroupNorm1 and GELU MLPs; v2: GroupNorm1NoBias) at a smaller width."""
    def build():
        from timm.models import metaformer as mf
        common = dict(depths=(1, 1, 2, 1), dims=(16, 32, 48, 64), num_classes=10, use_mlp_head=False)
        if norm == "v1":
            common.update(downsample_norm=None, mlp_act=torch.nn.GELU, mlp_bias=True, norm_layers=mf.GroupNorm1,
                          layer_scale_init_values=1e-5, res_scale_init_values=None)
        else:
            common.update(norm_layers=mf.GroupNorm1NoBias)
        return mf.MetaFormer(**dict(common, **kwargs))
    return build


def torchvision_convnext_tiny():
    import torchvision
    return torchvision.models.convnext_tiny(weights=None)


def torchvision_convnext_small():
    """torchvision's ConvNeXt class (its own CNBlock and LayerNorm2d) at a smaller width."""
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 48, 1), CNBlockConfig(48, 64, 2), CNBlockConfig(64, None, 1)],
                    num_classes=10)


def eca_nfnet_test():
    """timm's test_nfnet with ECA instead of SE: the attention of the eca_nfnet_l* models."""
    import dataclasses
    from timm.models import nfnet
    return nfnet.NormFreeNet(dataclasses.replace(nfnet.model_cfgs["test_nfnet"], attn_layer="eca", attn_kwargs={}), num_classes=10)


def bn_calibrated(build, size):
    """`build`, with every BatchNorm's statistics measured on 4 random batches (a cumulative
    average), as a trained network's are. With fresh statistics (mean 0, variance 1) Visformer's
    activations grow to ~100 and its attention logits so large that float32 rounding alone moves
    the maps: onnxruntime's differ from PyTorch's by up to 4e-4 (cbam-run's by 5e-4), beyond the
    1e-5 of the test. Calibrated, onnxruntime is within 1.1e-6."""
    def calibrated():
        model = build()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        with torch.no_grad():
            for seed in range(4):
                model(torch.randn(8, 3, size, size, generator=torch.Generator().manual_seed(100 + seed)))
        return model
    return calibrated


# (name, builder, input size (H = W), exporters whose files are stored in Models/timm): the
# smallest variants that keep each family's blocks. The others are checked only, or exported
# for WideFamilyTests with --wide; torchvision's full-size ConvNeXt-T (110 MB) is checked with
# --large and never stored.
TS, DYNAMO = "torchscript_op17", "dynamo"
FAMILIES = [
    ("convnext_test", timm_model("test_convnext", num_classes=10), 64, (DYNAMO,)),
    ("convnext_atto_small", timm_model("convnext_atto", num_classes=10, dims=(16, 32, 48, 64), depths=(1, 1, 2, 1)), 64, (TS, DYNAMO)),
    ("convnextv2_small", timm_model("convnextv2_atto", num_classes=10, dims=(16, 32, 48, 64), depths=(1, 1, 2, 1)), 64, (DYNAMO,)),
    ("poolformer_small", metaformer("v1"), 64, (TS, DYNAMO)),
    ("poolformerv2_small", metaformer("v2"), 64, (DYNAMO,)),
    ("efficientnet_gn_test", timm_model("test_efficientnet_gn", num_classes=10), 64, (DYNAMO,)),
    ("efficientnet_ln_test", timm_model("test_efficientnet_ln", num_classes=10), 64, (TS,)),
    ("nfnet_test", timm_model("test_nfnet", num_classes=10), 64, ()),
    ("vit_test", timm_model("test_vit", num_classes=10, img_size=64), 64, (DYNAMO,)),
    ("coatnet_test", timm_model("test_coatnet", num_classes=10, img_size=64), 64, (TS,)),
    ("maxvit_test", timm_model("test_maxvit", num_classes=10, img_size=64), 64, ()),
]
OTHERS = [
    ("eca_nfnet_test", eca_nfnet_test, 64, ()),
    ("edgenext_xx_small", timm_model("edgenext_xx_small", num_classes=10), 64, ()),
    ("efficientvit_m0", timm_model("efficientvit_m0", num_classes=10, img_size=64), 64, ()),
    ("efficientvit_b0", timm_model("efficientvit_b0", num_classes=10), 64, ()),
    ("gcresnext26ts", timm_model("gcresnext26ts", num_classes=10), 64, ()),
    ("botnet26t", timm_model("botnet26t_256", num_classes=10, img_size=64), 64, ()),
    # HaloAttn needs every stage's map to be a multiple of its 8×8 blocks: 256 is the smallest input.
    ("halonet26t", timm_model("halonet26t", num_classes=10, img_size=256), 256, ()),
    ("lambda_resnet26t", timm_model("lambda_resnet26t", num_classes=10, img_size=64), 64, ()),
    ("mobilevit_xxs", timm_model("mobilevit_xxs", num_classes=10), 64, ()),
    ("fastvit_t8", timm_model("fastvit_t8", num_classes=10), 64, ()),
    ("repvit_m0_9", timm_model("repvit_m0_9", num_classes=10), 64, ()),
    ("visformer_tiny", bn_calibrated(timm_model("visformer_tiny", num_classes=10, img_size=64), 64), 64, ()),
    ("torchvision_convnext_small", torchvision_convnext_small, 64, ()),
]
# Issue 15's done-when list, one model per family: ConvNeXt, ConvNeXt-V2, CoAtNet, MaxViT,
# MobileViT, EdgeNeXt, PoolFormer, FastViT, RepViT, NFNet, ECA-NFNet, Visformer, EfficientViT
# (MSRA's M0 and MIT's B0), BoTNet, HaloNet, LambdaResNet, GCNet, torchvision's ConvNeXt.
WIDE_NAMES = ("convnext_atto_small", "convnextv2_small", "coatnet_test", "maxvit_test", "mobilevit_xxs", "edgenext_xx_small",
              "poolformer_small", "fastvit_t8", "repvit_m0_9", "nfnet_test", "eca_nfnet_test", "visformer_tiny",
              "efficientvit_m0", "efficientvit_b0", "botnet26t", "halonet26t", "lambda_resnet26t", "gcresnext26ts",
              "torchvision_convnext_small")
WIDE = [f for name in WIDE_NAMES for f in FAMILIES + OTHERS if f[0] == name]
LARGE = [("torchvision_convnext_tiny", torchvision_convnext_tiny, 64, ())]


def export_torchscript(model, x, path):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False, input_names=["input"], output_names=["output"])


def export_dynamo(model, x, path):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, input_names=["input"], output_names=["output"])
        program.save(path, external_data=False)


def op_types(path):
    import onnx
    model = onnx.load(path, load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    ops = Counter(n.op_type for n in model.graph.node)
    for f in model.functions:  # dynamo exports may keep local functions
        ops.update(n.op_type for n in f.node)
    return opset, dict(sorted(ops.items()))


def run_cbam(binary, model_path, input_path, out_path):
    """cbam-run's output, and the kinds of the attention maps --attention found (or an error)."""
    folder = out_path + ".attention"
    proc = subprocess.run([binary, model_path, input_path, "-o", out_path, "--attention", folder], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1], {}
    with open(os.path.join(folder, "attention.json")) as f:
        kinds = Counter(m["kind"] for m in json.load(f)["maps"])
    shutil.rmtree(folder, ignore_errors=True)
    return np.load(out_path), None, dict(kinds)


def run_ort(model_path, x):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]



class CallCounter(TorchFunctionMode):
    """Counts, during one PyTorch forward pass, the calls that make attention: sigmoid and
    hard-sigmoid (the gates of SE, ECA and the like) and softmax (self-attention, GCNet's
    context pooling, LambdaResNet's keys), keeping each softmax's output. The mode is off
    while a call runs, so F.softmax counts once, not again for the Tensor.softmax inside it."""

    def __init__(self):
        super().__init__()
        self.gates = 0
        self.softmaxes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in ("sigmoid", "hardsigmoid"):
            self.gates += 1
        elif name == "softmax":
            self.softmaxes.append(result.detach().clone())
        return result


def ort_softmaxes(path, x):
    """onnxruntime's value of every Softmax node of the export, in graph order: a copy of the
    model with each Softmax output added as a graph output."""
    import onnx
    import onnxruntime as ort
    model = onnx.load(path)
    names = [n.output[0] for n in model.graph.node if n.op_type == "Softmax" and n.domain in ("", "ai.onnx")]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no fusion may swallow a Softmax
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return session.run(names, {session.get_inputs()[0].name: x})


def save_maps(tensors, folder, base):
    """The expected self-attention tensors as NN_self-attention.npy in `folder`, for the manifest."""
    maps = []
    for index, tensor in enumerate(tensors):
        os.makedirs(folder, exist_ok=True)
        file = os.path.join(folder, f"{index:02d}_self-attention.npy")
        np.save(file, np.asarray(tensor))
        maps.append({"index": index, "kind": "self-attention", "shape": list(np.shape(tensor)), "file": os.path.relpath(file, base)})
    return maps


def one_line(error):
    """The error's first sentence (PyTorch's exporter adds a plea for pull requests and a cause)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0][:200]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "Models", "timm"))
    ap.add_argument("--only", default="", help="comma-separated substrings of family names")
    ap.add_argument("--check", action="store_true", help="run every export through cbam-run and onnxruntime")
    ap.add_argument("--cbam-run", default=os.path.join(ROOT, ".build", "debug", "cbam-run"))
    ap.add_argument("--wide", action="store_true", help="issue 15's whole list instead, both exporters, every export kept "
                    "(use an --out outside git, e.g. .build/timm-wide)")
    ap.add_argument("--large", action="store_true", help="also the full-size torchvision ConvNeXt-T (checked, never stored)")
    ap.add_argument("--max-bytes", type=int, default=2 * 1024 * 1024)
    ap.add_argument("--keep-large", action="store_true", help="keep exports above --max-bytes in the manifest")
    args = ap.parse_args()

    # The attention maps as softmax(q·kᵀ) computed explicitly (the fused kernel has no map to hook).
    from timm.layers import set_fused_attn
    set_fused_attn(False)
    out = os.path.abspath(args.out)
    base = os.path.dirname(out)
    os.makedirs(out, exist_ok=True)
    wanted = [s for s in args.only.split(",") if s]
    entries, report, failures = [], [], []
    families = (WIDE if args.wide else FAMILIES) + (LARGE if args.large else [])
    for name, build, size, stored in families:
        if wanted and not any(w in name for w in wanted):
            continue
        torch.manual_seed(0)
        try:
            model = build().eval()
        except Exception as e:  # noqa: BLE001
            print(f"{name}: cannot build: {str(e).splitlines()[0][:160]}", flush=True)
            continue
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        # Self-attention maps: timm's attention modules apply attn_drop (identity in eval) to
        # softmax(q·kᵀ) right after computing it, so its input is the map as computed.
        maps = []
        hooks = [m.register_forward_hook(lambda _m, args, _out: maps.append(args[0].detach().clone()))
                 for n, m in model.named_modules() if n.endswith("attn_drop")]
        counter = CallCounter()
        try:
            with torch.no_grad(), counter:
                y = model(x)
        except Exception as e:  # noqa: BLE001
            print(f"{name}: PyTorch forward failed: {one_line(e)}", flush=True)
            continue
        finally:
            for h in hooks:
                h.remove()
        expected = {"expected_gates": counter.gates, "expected_self_attention": len(counter.softmaxes)}
        # attn_drop sees every softmax only where timm's attention modules have one per softmax;
        # otherwise (softmax computed inline) the expected tensors come from onnxruntime, per export.
        hooked = len(maps) == len(counter.softmaxes)
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, "input.npy"), x.numpy())
        np.save(os.path.join(folder, "output.npy"), y.numpy())
        attention = save_maps([m.numpy() for m in maps], os.path.join(folder, "attention"), base) if hooked else []
        bound = 1e-4 * float(np.abs(y.numpy()).max())
        for exporter, export in (("torchscript_op17", export_torchscript), ("dynamo", export_dynamo)):
            path = os.path.join(folder, exporter + ".onnx")
            try:
                with torch.no_grad():
                    export(model, x, path)
            except Exception as e:  # noqa: BLE001
                failures.append({"name": name, "exporter": exporter, "error": one_line(e)})
                report.append(f"{name} {exporter}: export failed: {one_line(e)}")
                print(report[-1], flush=True)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            opset, ops = op_types(path)
            nbytes = os.path.getsize(path)
            line = f"{name} {exporter} (opset {opset}, {params} params, {nbytes / 1e6:.2f} MB): "
            source, maps_here = "pytorch", attention
            if not hooked:
                source, softmaxes = "onnxruntime", ort_softmaxes(path, x.numpy())
                maps_here = save_maps(softmaxes, os.path.join(folder, "attention_" + exporter), base)
                same = len(softmaxes) == len(counter.softmaxes) and all(
                    np.shape(o) == tuple(t.shape) for o, t in zip(softmaxes, counter.softmaxes))
                cross = max((float(np.abs(o - t.numpy()).max()) for o, t in zip(softmaxes, counter.softmaxes)), default=0.0)
                line += (f"{len(softmaxes)} onnxruntime softmax(es), PyTorch's within {cross:.3g}; " if same else
                         f"{len(softmaxes)} onnxruntime softmax(es) of other shapes than PyTorch's {len(counter.softmaxes)}; ")
            status = None
            if args.check:
                try:
                    ort_err = float(np.abs(run_ort(path, x.numpy()) - y.numpy()).max())
                except Exception as e:  # noqa: BLE001
                    ort_err = f"error {one_line(e)[:80]}"
                actual, error, kinds = run_cbam(args.cbam_run, path, os.path.join(folder, "input.npy"), os.path.join(folder, exporter + ".cbam.npy"))
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, exporter + ".cbam.npy"))
                if actual is None:
                    status = "refused"
                    line += f"cbam-run refused: {error}"
                else:
                    err = float(np.abs(actual - y.numpy()).max())
                    status = "pass" if err <= bound else "FAIL"
                    line += f"cbam-run max abs error {err:.3g} (bound {bound:.3g}) {status}"
                    line += f"; --attention: {kinds or 'no maps'} (expected: {expected['expected_gates']} gate(s), " \
                            f"{expected['expected_self_attention']} softmax(es))"
                line += f"; onnxruntime {ort_err if isinstance(ort_err, str) else f'{ort_err:.3g}'}"
            line += "\n    ops: " + ", ".join(f"{k}×{v}" for k, v in ops.items())
            report.append(line)
            print(line, flush=True)
            keep = args.wide or (exporter in stored and (nbytes <= args.max_bytes or args.keep_large) and status in (None, "pass"))
            if not keep:
                os.remove(path)
                continue
            rel = lambda p: os.path.relpath(p, base)  # noqa: E731
            entries.append({
                "name": f"{name}/{exporter}", "file": rel(path), "exporter": exporter, "opset": opset,
                "inputs": [{"name": "input", "file": rel(os.path.join(folder, "input.npy"))}],
                "outputs": [{"name": "output", "file": rel(os.path.join(folder, "output.npy"))}],
                "atol": bound, "rtol": 0.0, "params": params, "ops": ops, "attention": maps_here,
                "attention_source": source, **expected,
            })
        if not any(e["name"].startswith(name + "/") for e in entries):
            shutil.rmtree(folder, ignore_errors=True)
    import timm
    import torchvision
    manifest = {"generator": "tools/export_timm.py", "torch": torch.__version__, "timm": timm.__version__,
                "torchvision": torchvision.__version__, "tolerance": "max abs error <= 1e-4 * max|PyTorch output|",
                "families": sorted({name for name, *_ in families if not wanted or any(w in name for w in wanted)}),
                "entries": entries, "failures": failures}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"{len(entries)} export(s) kept in {out}/manifest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
