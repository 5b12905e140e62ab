#!/usr/bin/env python3
"""Throughput of batch inference on 2 CPUs, two ways, on the same input files (issue 14):

  shards  two `cbam-run batch MODEL DIR --shard I/2 --threads 1` processes in parallel
  ray     tools/ray_batch.py on `ray.init(num_cpus=2)`: Ray Data map_batches over the file paths,
          two actors each holding one cbamrun.Session (1 thread) that read their files themselves

Inputs: --count `.npy` files of the model's input shape with batch 1, made from the `input.npy`
beside the model (the zoo's layout; item 0) with a little noise, fixed seed. Both sides write
results.jsonl (and with --attention the maps) into their own folder.

Two figures per side:
  whole job     inputs / seconds from start to the last result written: each shard process and each
                actor loads the model once inside it; `ray.init` is not counted (a cluster is up
                before jobs arrive), the start of Ray Data's actor pool is
  steady state  the sum over workers of (inputs after its first result / seconds from its first
                result to its last): the pool's rate while it runs, start-up and the last worker's
                tail left out (shards: each input's progress line; Ray: each batch's start and end
                as its actor clocked them, so Ray Data's time between batches is counted)
and when work started (shards: the first result; Ray: the first batch an actor began, after its
model loaded) and the busy share: the inputs' own `seconds` (read, preprocess, run, record; from
results.jsonl) summed, over 2 CPUs × the whole job — what is left is start-up and, on Ray, its
overhead. Ray also prints when each actor's __init__ (the model load) began and ended — before it,
Ray Data's executor starts and each actor's process starts and imports ray.data — and when its
last call ended. With --repeat, rounds alternate the two sides on one Ray cluster: round 1 also pays
Ray Data's first use on a new cluster (its helper actors, the driver's imports), later rounds not.

    python3 tools/ray_vs_shards.py --model /tmp/full2/seed002_resnet18_cbam_prepost/torchscript_op17.onnx
    python3 tools/ray_vs_shards.py [--count 200] [--batch-size 16] [--stack] [--attention] [--repeat 3]
Needs the release builds: swift build -c release --product cbam-run; swift build -c release --product cbamrun.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def load_average() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def busy_seconds(results_files):
    return sum(json.loads(line).get("seconds", 0) for f in results_files for line in Path(f).read_text().splitlines())


def run_shards(args, inputs, out, count):
    """Two shard processes side by side; each input's progress line (standard error) is an event."""
    workers = {0: [], 1: []}
    start = time.perf_counter()
    command = [args.binary, "batch", args.model, str(inputs), "--threads", "1"] + (["--attention"] if args.attention else [])
    processes = [subprocess.Popen(command + ["--output-dir", str(out / f"shard{i}"), "--shard", f"{i}/2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]

    def read(index):
        for line in processes[index].stderr:
            if "/" in line.split()[0]:  # "12/100  …  ok  file"
                workers[index].append((time.perf_counter() - start, 1))

    readers = [threading.Thread(target=read, args=(i,)) for i in range(2)]
    for reader in readers:
        reader.start()
    codes = [p.wait() for p in processes]
    seconds = time.perf_counter() - start
    for reader in readers:
        reader.join()
    files = [out / f"shard{i}" / "results.jsonl" for i in range(2)]
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert codes == [0, 0] and lines == count, (codes, lines)
    return seconds, workers, min(events[0][0] for events in workers.values()), busy_seconds(files)


def run_ray(args, ray_batch, inputs, out, count):
    """tools/ray_batch.py's run() on the running cluster; each batch of records the driver gets is an event."""
    options = [args.model, str(inputs), "--output-dir", str(out), "--batch-size", str(args.batch_size)]
    options += ["--attention"] * args.attention + ["--stack"] * args.stack
    timings = []
    start, clock, driver_cpu = time.perf_counter(), time.time(), time.process_time()
    records, _ = ray_batch.run(ray_batch.parse(options), timings=timings)
    seconds, driver_cpu = time.perf_counter() - start, time.process_time() - driver_cpu
    assert len(records) == count and all(r["status"] == "ok" for r in records)
    workers, actors = {}, {}
    for pid, _, finished, n, init_began, init_ended in timings:
        workers.setdefault(pid, []).append((finished - clock, n))
        actors[pid] = (init_began - clock, init_ended - clock)
    print("  ray    actors' __init__ (model load) from " + ", ".join(f"{b:.2f}–{e:.2f} s" for b, e in sorted(actors.values()))
          + f"; the last batch ended {max(t[2] for t in timings) - clock:.2f} s, the driver done {seconds:.2f} s; "
          + f"{len(timings)} map_batches calls; the driver used {driver_cpu:.2f} s of CPU")
    return seconds, workers, min(t[1] for t in timings) - clock, busy_seconds([out / "results.jsonl"])


def steady(workers):
    """Σ over workers of (inputs after the first result) / (seconds from the first result to the last);
    ``workers`` maps a worker to its (seconds, inputs finished then) events."""
    total = 0.0
    for events in workers.values():
        events = sorted(events)
        if len(events) > 1 and events[-1][0] > events[0][0]:
            total += sum(n for _, n in events[1:]) / (events[-1][0] - events[0][0])
    return total


def report(name, count, seconds, workers, started, busy):
    rate, steady_rate = count / seconds, steady(workers)
    print(f"  {name:6s} whole job {seconds:6.2f} s = {rate:6.1f} inputs/s; steady state {steady_rate:6.1f} inputs/s; "
          f"work began after {started:5.2f} s; busy {busy / (2 * seconds):.0%}")
    return rate, steady_rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16, help="files per map_batches call (ray_batch.py --batch-size)")
    parser.add_argument("--stack", action="store_true", help="Ray: run each batch as one stacked run (ray_batch.py --stack)")
    parser.add_argument("--attention", action="store_true", help="both: write the attention maps too")
    parser.add_argument("--repeat", type=int, default=1, help="measure each side this many times, alternating")
    parser.add_argument("--conv", default="blocked", choices=["blocked", "im2col", "onednn", "timed"],
                        help="CBAM_CONV for both sides (default blocked). `timed` leaves each process to time the "
                             "Conv kernels when it plans, as by default; on a loaded machine processes then pick "
                             "differently (onednn at 1 thread was 2.5x slower than blocked on ResNet-18 here), "
                             "which measures the pick, not Ray")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait before each side runs (default 10): Ray's start and the teardown of the "
                             "previous actor pool keep the CPUs busy for a few seconds, which would slow the shards")
    parser.add_argument("--model", default=str(ROOT / "Models/demo_shapes_cbam/torchscript_op17.onnx"))
    parser.add_argument("--binary", default=str(ROOT / ".build/release/cbam-run"))
    args = parser.parse_args()
    os.environ.setdefault("CBAMRUN_LIBRARY", str(ROOT / ".build/release/libcbamrun.so"))
    if args.conv != "timed":
        os.environ["CBAM_CONV"] = args.conv  # the shard processes and Ray's workers inherit it
    # The local cluster's workers inherit this environment: the package and the same library.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(ROOT / "tools"))
    import ray_batch

    sys.path.insert(0, str(ROOT / "python"))
    import cbamrun

    first = (cbamrun.Session(args.model).inputs[0].shape or [None])[0]  # the zoo's input.npy has batch 2
    base = np.load(Path(args.model).parent / "input.npy")[:first if isinstance(first, int) else 1]
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="ray-vs-shards-"))
    inputs = work / "inputs"
    inputs.mkdir()
    for i in range(args.count):
        np.save(inputs / f"{i:04d}.npy", (base + rng.normal(0, 0.05, base.shape)).astype(np.float32))

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # not timed; workers inherit the environment
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if line.startswith("Model name")), platform.processor())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu}; {os.cpu_count()} CPUs; {load_average()}")
    print(f"inputs: {args.count} × {list(base.shape)} .npy; model {args.model}; "
          f"Ray batch size {args.batch_size}{', stacked' if args.stack else ''}{'; --attention' if args.attention else ''}; "
          f"CBAM_CONV={os.environ.get('CBAM_CONV', '(timed per process)')}")
    ratios = []
    for round in range(args.repeat):
        print(f"round {round + 1}: {load_average()}")
        time.sleep(args.settle)
        shards = report("shards", args.count, *run_shards(args, inputs, work / f"shards{round}", args.count))
        time.sleep(args.settle)
        on_ray = report("ray", args.count, *run_ray(args, ray_batch, inputs, work / f"ray{round}", args.count))
        ratios.append((on_ray[0] / shards[0], on_ray[1] / shards[1]))
        print(f"  ray / shards: whole job {ratios[-1][0]:.2f}, steady state {ratios[-1][1]:.2f}; {load_average()}")
    ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    if args.repeat > 1:
        print("ray / shards over rounds: whole job " + ", ".join(f"{r[0]:.2f}" for r in ratios)
              + "; steady state " + ", ".join(f"{r[1]:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
