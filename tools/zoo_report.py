#!/usr/bin/env python3
"""Fill the cbam-run column of Models/README.md with what cbam-run measures.

For every export in Models/manifest.json, runs the release binary
(`cbam-run FILE INPUT -o out.npy --attention DIR`), compares its output with
PyTorch's stored output (numpy, largest absolute difference, pass/fail by the
entry's atol/rtol) and its attention maps with PyTorch's (count and kinds), and
writes `<status> <max abs err> (maps found/expected)` into the table's last column.

  swift build -c release --product cbam-run && python3 tools/zoo_report.py
  python3 tools/zoo_report.py --models /tmp/fresh   # a zoo exported elsewhere by tools/export_models.py --out
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".build", "release", "cbam-run")
MODELS = os.path.join(ROOT, "Models")  # replaced by --models


def measure(entry, scratch):
    out = os.path.join(scratch, "out.npy")
    att = os.path.join(scratch, "att")
    inputs = [os.path.join(MODELS, i["file"]) for i in entry["inputs"]]
    run = subprocess.run([BINARY, os.path.join(MODELS, entry["file"]), *inputs, "-o", out, "--attention", att],
                         capture_output=True, text=True)
    if run.returncode != 0:
        return f"error: {run.stderr.strip()[:80]}", None
    actual = np.load(out)
    expected = np.load(os.path.join(MODELS, entry["outputs"][0]["file"]))
    err = float(np.abs(actual.astype(np.float64) - expected).max()) if actual.shape == expected.shape else float("inf")
    ok = actual.shape == expected.shape and np.allclose(actual, expected, atol=entry["atol"], rtol=entry["rtol"])
    with open(os.path.join(att, "attention.json")) as f:
        kinds = [m["kind"] for m in json.load(f)["maps"]]
    want = [a["kind"] for a in entry.get("attention", [])]
    maps = f"{len(kinds)}/{len(want)} maps" + ("" if kinds == want else " MISMATCH")
    return f"{'ok' if ok else 'FAIL'} {err:.2e} ({maps})", ok and kinds == want


def main():
    global MODELS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS, help="zoo folder with manifest.json (default: Models/)")
    MODELS = os.path.abspath(parser.parse_args().models)
    if not os.path.exists(BINARY):
        sys.exit("build first: swift build -c release --product cbam-run")
    with open(os.path.join(MODELS, "manifest.json")) as f:
        entries = {e["name"]: e for e in json.load(f)["entries"]}
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, entry in entries.items():
            results[name] = measure(entry, scratch)
    readme = os.path.join(MODELS, "README.md")
    lines = open(readme).read().split("\n")
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 4 and f"{cells[1]}/{cells[3]}" in results:
            cells[-2] = results[f"{cells[1]}/{cells[3]}"][0]
            lines[i] = "| " + " | ".join(cells[1:-1]) + " |"
    # The op types of every export, after the table (replacing an earlier copy of this section).
    text = "\n".join(lines)
    marker = "\n## Ops in each export\n"
    text = text.split(marker)[0].rstrip("\n") + "\n" + marker + "\n"
    text += "Op types in each file (from the manifest), all run by cbam-run:\n\n"
    for name, entry in sorted(entries.items()):
        text += f"- `{name}`: {', '.join(entry['ops'])}\n"
    open(readme, "w").write(text)
    passed = sum(1 for r in results.values() if r[1])
    worst = max((float(r[0].split()[1]) for r in results.values() if r[0].startswith(("ok", "FAIL"))), default=0)
    print(f"{passed} of {len(results)} exports match PyTorch (output and attention maps); largest abs error {worst:.2e}")
    for name, (text, ok) in sorted(results.items()):
        if not ok:
            print(f"  {name}: {text}")


if __name__ == "__main__":
    main()
