#!/usr/bin/env python3
"""Run a model on every image (or .npy) in folders and files on Ray Data, and write the same
results.jsonl as `cbam-run batch`.

    python3 tools/ray_batch.py MODEL INPUT... --output-dir OUT [--attention] [--labels FILE] [--force]
                               [--batch-size B] [--concurrency N] [--threads T] [--address ADDR | --num-cpus N]

Inputs are files and folders (searched recursively for .png, .jpg, .jpeg and .npy), in sorted
order, as `cbam-run batch` takes them. The driver sends only the file paths through Ray
(`ray.data.from_items` → `map_batches`), in chunks of at most --batch-size files that shrink
towards the end so the actors finish together (with --stack: chunks of --batch-size); a pool of
actors, each holding one `cbamrun.Session` (--threads per actor, default 1; --concurrency
actors, default one per CPU of the cluster), reads, preprocesses (images: `cbamrun.load_image`,
the CLI's default preprocessing for the model's input) and runs its chunk of files one by one
(with --stack: inputs of one shape as one run), and returns one record per file.

OUT/results.jsonl gets one JSON line per input, the keys of `cbam-run batch`: file, status (ok or
error), error, preprocessing, outputs (shape, min/max/mean, top-5, with --labels names), maps
(per-map statistics and files), seconds; sorted by file at the end. With --attention each
input's maps are written by the actors as OUT/items/<name>/NN_<kind>.npy, the CLI's layout (OUT
must be on storage every node sees). Not done here, unlike the CLI: heat-map pictures, pages,
thumbnails, the gallery, and the image flags --resize/--crop/--mean/--std/--channels. Running
again skips inputs recorded as ok (--force runs them again); a bad input is recorded and the
exit status is 1 when any input failed.

Ray: with --address (or RAY_ADDRESS, as `ray job submit` sets) the script joins that cluster;
otherwise it starts a local one with --num-cpus CPUs (default all). See docs/scale-out.md.
"""
import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="the .onnx model file (a path every node can read)")
    parser.add_argument("inputs", nargs="+", help="input files and folders")
    parser.add_argument("--output-dir", required=True, metavar="OUT", help="where results.jsonl and items/<name>/ go")
    parser.add_argument("--attention", action="store_true", help="write each input's attention maps as OUT/items/<name>/NN_<kind>.npy")
    parser.add_argument("--force", action="store_true", help="run inputs already recorded as ok again")
    parser.add_argument("--labels", metavar="FILE", help="class names, one a line, for the top-5")
    parser.add_argument("--batch-size", type=int, default=16, metavar="B",
                        help="files per map_batches call at most, read and run by one actor (default 16); the last "
                             "calls take fewer, so the actors finish together (with --stack: B each)")
    parser.add_argument("--stack", action="store_true",
                        help="run a batch's inputs of one shape as one run (the model's batch dimension must be symbolic), "
                             "as cbam-run batch --batch-size B does; the default runs each input alone (batch 1), as "
                             "cbam-run batch does by default: stacked runs may differ in the last bits")
    parser.add_argument("--concurrency", type=int, metavar="N", help="actors (default: the cluster's CPUs / --threads)")
    parser.add_argument("--threads", type=int, default=1, metavar="T", help="threads per actor's Session, CPUs reserved per actor (default 1)")
    parser.add_argument("--max-memory", type=int, metavar="BYTES", help="bytes a plan may use (as cbam-run's --max-memory)")
    parser.add_argument("--max-macs", type=int, metavar="N", help="multiply-accumulates a run may do (as cbam-run's --max-macs)")
    parser.add_argument("--address", help="the Ray cluster to join (default $RAY_ADDRESS, else a new local cluster)")
    parser.add_argument("--num-cpus", type=int, metavar="N", help="CPUs of the local cluster started when there is no --address")
    args = parser.parse_args(argv)
    for name in ("batch_size", "threads", "concurrency", "num_cpus", "max_memory", "max_macs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
    if not os.path.isfile(args.model):
        parser.error(f"{args.model}: no such model file")
    if args.labels and not os.path.isfile(args.labels):
        parser.error(f"{args.labels}: no such labels file")
    return args


def start_ray(args):
    """Joins the cluster asked for, or starts a local one whose workers import this repository's
    package (and the same libcbamrun.so) when cbamrun is not installed."""
    import ray

    if ray.is_initialized():
        return
    if args.address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=args.address, log_to_driver=False)
        return
    # A local cluster's workers inherit this environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "python"), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)


def quiet_ray_data():
    """No progress bars or per-operator progress lines from Ray Data: the script prints its own summary."""
    import logging
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run(args, progress=None, timings=None):
    """Runs the inputs not recorded as ok yet; returns (records of this run, all records by file).
    ``progress(done, total)`` is called as records arrive; ``timings`` as cbamrun.ray.run_files'."""
    sys.path.insert(0, str(ROOT / "python"))
    from cbamrun import batch
    import cbamrun.ray

    all_files = batch.collect(args.inputs, output_dir=args.output_dir)
    if not all_files:
        raise SystemExit(f"ray_batch.py: error: no .png, .jpg, .jpeg or .npy files in {', '.join(args.inputs)}")
    os.makedirs(args.output_dir, exist_ok=True)
    results = os.path.join(args.output_dir, "results.jsonl")
    if args.force and os.path.exists(results):
        os.remove(results)
    known = batch.read_results(results)
    todo = [f for f in all_files if known.get(f, {}).get("status") != "ok"]
    if len(todo) < len(all_files):
        print(f"ray_batch: {len(all_files) - len(todo)} of {len(all_files)} input(s) already done in {results} (--force runs them again)")
    labels = batch.read_labels(args.labels) if args.labels else None
    names = batch.item_names(all_files)  # the CLI's names: they depend on the whole list
    start_ray(args)
    quiet_ray_data()
    records = []
    with open(results, "a", encoding="utf-8") as out:  # appended as they come: an interrupted run resumes
        if todo:
            for record in cbamrun.ray.run_files(todo, args.model, args.output_dir, names={f: names[f] for f in todo},
                                                attention=args.attention, labels=labels, concurrency=args.concurrency,
                                                batch_size=args.batch_size, threads=args.threads, stack=args.stack,
                                                max_memory=args.max_memory, max_macs=args.max_macs, timings=timings):
                out.write(batch.line(record))
                records.append(record)
                if progress:
                    progress(len(records), len(todo))
    known.update({r["file"]: r for r in records})
    batch.write_results(results, known.values())
    return records, known


def root_cause(error):
    """The message of the OSError or cbamrun.Error behind ``error``, or None. An actor that cannot
    load the model dies; Ray raises ActorDiedError, which carries the actor's traceback only as text."""
    from cbamrun import Error

    if isinstance(error, (OSError, Error)) and type(error).__module__.split(".")[0] != "ray":
        return getattr(error, "message", None) or str(error)
    found = re.findall(r"^cbamrun\.session\.\w+: (.+)$", str(error), re.MULTILINE)
    return found[-1] if found else None


def main(argv=None) -> int:
    args = parse(argv)
    start = time.perf_counter()
    try:
        records, known = run(args)
    except Exception as error:  # a missing input; a model an actor cannot load (inside Ray's error)
        message = root_cause(error)
        if message is None:
            raise
        print(f"ray_batch.py: error: {message}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    bad = sum(1 for r in known.values() if r["status"] != "ok")
    for record in records:
        if record["status"] != "ok":
            print(f"error: {record['error']}", file=sys.stderr)
    rate = f", {len(records) / seconds:.1f} inputs/s" if records else ""
    print(f"ray_batch: {len(known) - bad} ok, {bad} failed of {len(known)} → {os.path.join(args.output_dir, 'results.jsonl')} "
          f"({len(records)} run in {seconds:.1f} s{rate})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
