#!/usr/bin/env bash
# Installs the Debian packages cbam-run builds against, when any is missing:
#   libprotobuf-c-dev    protobuf-c runtime (the ONNX decoder)
#   libdnnl-dev          oneDNN (C API) for Conv, ConvTranspose and MatMul kernels tuned to the CPU
#   libpng-dev           libpng: PNG inputs and the attention pictures
#   libjpeg62-turbo-dev  libjpeg-turbo: JPEG inputs
#   protobuf-c-compiler  protoc-c, to check Sources/CONNXProto against Schemas/onnx.proto
#   pkg-config           how SwiftPM finds the libraries
# With --python it also installs tools/requirements.txt (PyTorch, onnx, onnxruntime)
# for exporting models and benchmarking; building and testing never need Python.
set -euo pipefail
packages=(libprotobuf-c-dev libdnnl-dev libpng-dev libjpeg62-turbo-dev protobuf-c-compiler pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--python" ]; then
  python3 -m pip install -q -r "$(dirname "$0")/requirements.txt"
fi
