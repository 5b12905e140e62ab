#!/usr/bin/env bash
# Installs the Debian packages cbam-run builds against, when any is missing:
#   libprotobuf-c-dev    protobuf-c runtime (the ONNX decoder)
#   libdnnl-dev          oneDNN (C API) for Conv, ConvTranspose and MatMul kernels tuned to the CPU
#   libpng-dev           libpng: PNG inputs and the attention pictures
#   libjpeg62-turbo-dev  libjpeg-turbo: JPEG inputs
#   protobuf-c-compiler  protoc-c, to check Sources/CONNXProto against Schemas/onnx.proto
#   pkg-config           how SwiftPM finds the libraries
# and, when python3 cannot import them, python/requirements.txt (numpy and pytest) and
# python/requirements-ray.txt (Ray Data) for the Python package's tests in `make test`.
# With --python it also installs tools/requirements.txt (PyTorch, onnx, onnxruntime)
# for exporting models and benchmarking.
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
here="$(dirname "$0")"
pip_install() {
  # Debian's own python3 refuses pip outside a venv unless told to (PEP 668).
  python3 -m pip install -q -r "$1" 2>/dev/null || python3 -m pip install -q --break-system-packages -r "$1"
}
if ! python3 -c "import numpy, pytest" >/dev/null 2>&1; then
  echo "install-deps: installing python/requirements.txt (numpy, pytest)"
  pip_install "$here/../python/requirements.txt"
fi
if ! python3 -c "import ray, ray.data" >/dev/null 2>&1; then
  echo "install-deps: installing python/requirements-ray.txt (Ray Data, for cbamrun.ray)"
  pip_install "$here/../python/requirements-ray.txt"
fi
if [ "${1:-}" = "--python" ]; then
  pip_install "$here/requirements.txt"
fi
