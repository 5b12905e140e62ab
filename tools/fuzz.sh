#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer + AddressSanitizer (the Fuzz/ package).
#
#   tools/fuzz.sh TARGET SECONDS [libFuzzer flags…]   run one target; TARGET is
#       fuzz-load | fuzz-run | fuzz-npy | fuzz-tensorproto
#   tools/fuzz.sh --build                            only build the targets
#
# The corpus grows in Fuzz/.corpus/TARGET (not committed), seeded from Fuzz/Corpus/TARGET
# (committed, small). A crash, leak or sanitizer report stops the run and leaves its input
# in Fuzz/Crashes/TARGET/; fix the bug, then copy the input to Fuzz/Regressions/TARGET/,
# where `swift test` (FuzzRegressionTests) replays it. One job, one core: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

build() {
    swift build -c release --package-path Fuzz \
        -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address "$@"
}

if [[ "${1:-}" == "--build" ]]; then build; exit 0; fi
if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
target=$1 seconds=$2
shift 2
case $target in
    fuzz-load|fuzz-run|fuzz-npy|fuzz-tensorproto) ;;
    *) echo "fuzz.sh: unknown target '$target'" >&2; exit 2 ;;
esac
build --product "$target"
mkdir -p "Fuzz/.corpus/$target" "Fuzz/Crashes/$target"
max_len=65536
[[ $target == fuzz-npy || $target == fuzz-tensorproto ]] && max_len=16384
# protobuf-c and the kernels allocate from sizes in the input; budgets in the targets keep
# them small, and -rss_limit_mb catches any that escape.
exec "Fuzz/.build/release/$target" \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -max_len="$max_len" \
    -print_final_stats=1 -use_value_profile=1 \
    -artifact_prefix="Fuzz/Crashes/$target/" \
    "$@" "Fuzz/.corpus/$target" "Fuzz/Corpus/$target"
