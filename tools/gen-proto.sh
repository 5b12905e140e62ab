#!/usr/bin/env bash
# Regenerates Sources/CONNXProto from Schemas/onnx.proto with protoc-c
# (Debian: protobuf-c-compiler). The output is committed so builds need no protoc-c.
#
#   tools/gen-proto.sh            regenerate in place
#   tools/gen-proto.sh --check    exit 1 if the committed code differs from a fresh run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v protoc-c >/dev/null 2>&1; then
  echo "gen-proto: protoc-c not found (apt-get install protobuf-c-compiler); skipping" >&2
  exit 0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$root/Schemas" && protoc-c --c_out="$out" onnx.proto)
# SwiftPM wants the public header under include/; the .c file includes it by its base name.
if [ "${1:-}" = "--check" ]; then
  if cmp -s "$out/onnx.pb-c.c" "$root/Sources/CONNXProto/onnx.pb-c.c" &&
     cmp -s "$out/onnx.pb-c.h" "$root/Sources/CONNXProto/include/onnx.pb-c.h"; then
    echo "gen-proto: generated code matches Schemas/onnx.proto"
  else
    echo "gen-proto: Sources/CONNXProto is stale; run tools/gen-proto.sh" >&2
    exit 1
  fi
else
  cp "$out/onnx.pb-c.c" "$root/Sources/CONNXProto/onnx.pb-c.c"
  cp "$out/onnx.pb-c.h" "$root/Sources/CONNXProto/include/onnx.pb-c.h"
  echo "gen-proto: wrote Sources/CONNXProto"
fi
