#!/usr/bin/env bash
# Heap allocations per steady-state run of `cbam-run bench`, counted by valgrind:
# the difference between a 10-run and a 40-run process, divided by 30.
#   tools/allocations-per-run.sh MODEL.onnx INPUT.npy [THREADS]
# valgrind 3.19 cannot read the DWARF 5 debug info Swift writes, so a stripped copy runs.
set -euo pipefail
model=$1 input=$2 threads=${3:-1}
binary=$(dirname "$0")/../.build/release/cbam-run
[ -x "$binary" ] || { echo "build first: swift build -c release --product cbam-run" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
cp "$binary" "$stripped"; strip -g "$stripped"; chmod +x "$stripped"
count() {
  valgrind --tool=memcheck --leak-check=no "$stripped" bench "$model" "$input" --threads "$threads" --runs "$1" --warmup 0 2>&1 \
    | sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*, \([0-9,]*\) bytes allocated.*/\1 \2/p' | tr -d ,
}
read -r a10 b10 < <(count 10)
read -r a40 b40 < <(count 40)
echo "$model: $(( (a40 - a10) / 30 )) allocations and $(( (b40 - b10) / 30 )) bytes per run (threads $threads)"
