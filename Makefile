# cbam-run: the two set-up commands of the README, and a few more.
#   make demo    install what is missing, build, run a CBAM model shipped in Models/ and export its attention maps
#   make test    install what is missing, check the generated protobuf code, run every test
#                (swift test, the C API's C program plain and under AddressSanitizer, pytest python/tests)
#   make test-wide  issue 15's whole list of modern families, both exporters, against PyTorch (needs the
#                Python tools; exports once into TIMM_WIDE, outside git; not CI)
#   make test-asan / test-tsan   every test under AddressSanitizer / ThreadSanitizer (slow; not CI)
#   make fuzz    each libFuzzer target for FUZZ_SECONDS (tools/fuzz.sh; not CI)
#   make release-static  cbam-run with the Swift runtime linked in, for machines without Swift
SWIFT ?= swift
CC ?= cc
PYTHON ?= python3
DEMO_MODEL ?= Models/demo_shapes_cbam/torchscript_op17.onnx
DEMO_INPUT ?= Models/demo_shapes_cbam/samples/triangle.png

FUZZ_SECONDS ?= 300

.PHONY: deps demo docs test test-avx2 capi-test python-test python python-wheel-check test-wide test-asan test-tsan fuzz release release-static bench tools-deps proto

deps:
	@tools/install-deps.sh

demo: deps
	$(SWIFT) build -c release --product cbam-run
	.build/release/cbam-run $(DEMO_MODEL) $(DEMO_INPUT) --resize 64 --labels Models/demo_shapes_cbam/labels.txt -o /tmp/cbam-run-demo.npy --attention /tmp/cbam-run-demo-attention
	@echo "wrote /tmp/cbam-run-demo.npy; attention maps in /tmp/cbam-run-demo-attention (open index.html)"

test: deps
	tools/gen-proto.sh --check
	$(SWIFT) test
	$(MAKE) capi-test python-test

# The Swift tests once more with oneDNN held to AVX2 (DNNL_MAX_CPU_ISA) and our C loops and
# kernels too (CBAM_MAX_ISA), so the AVX2 machines' kernels and nChw8c layout are tested whichever
# CPU runs CI; on a CPU without AVX-512 the plain `swift test` already did this.
test-avx2: deps
	@if grep -qw avx512f /proc/cpuinfo; then DNNL_MAX_CPU_ISA=AVX2 CBAM_MAX_ISA=avx2 $(SWIFT) test; \
	else echo "test-avx2: this CPU has no AVX-512; make test already ran the AVX2 kernels"; fi

# The C API from C (Tests/capi/capi_test.c against libcbamrun.so), then the same under
# AddressSanitizer with leak checking: every handle the test takes, it frees.
CAPI_FLAGS = -std=c11 -Wall -Wextra -Werror -g -ISources/CBAMRunC/include -L.build/debug -Wl,-rpath,$(CURDIR)/.build/debug
capi-test:
	$(SWIFT) build --product cbamrun
	@mkdir -p .build/capi
	$(CC) $(CAPI_FLAGS) -o .build/capi/capi_test Tests/capi/capi_test.c -lcbamrun -lm
	.build/capi/capi_test Models
	$(CC) $(CAPI_FLAGS) -fsanitize=address -fno-omit-frame-pointer -o .build/capi/capi_test_asan Tests/capi/capi_test.c -lcbamrun -lm
	.build/capi/capi_test_asan Models

# The Python package (python/, ctypes over libcbamrun.so) against the debug build, and the
# CLI for the attention-map comparison.
python-test:
	$(SWIFT) build --product cbamrun
	$(SWIFT) build --product cbam-run
	CBAMRUN_LIBRARY=$(CURDIR)/.build/debug/libcbamrun.so CBAM_RUN=$(CURDIR)/.build/debug/cbam-run $(PYTHON) -m pytest python/tests -q

# A wheel of the Python package carrying libcbamrun.so, with the Swift runtime and Foundation
# linked in statically (-static-stdlib; its own build folder, .build-static): it needs only the
# Debian libraries libprotobuf-c1, libdnnl2, libpng16-16, libjpeg62-turbo and libgomp1, no Swift toolchain.
python: deps
	$(SWIFT) build -c release --product cbamrun --scratch-path .build-static -Xswiftc -static-stdlib
	cp .build-static/release/libcbamrun.so python/cbamrun/libcbamrun.so
	strip --strip-unneeded python/cbamrun/libcbamrun.so
	rm -rf python/build dist/cbamrun-*.whl
	$(PYTHON) -m pip wheel --no-deps -w dist ./python
	rm -rf python/cbamrun/libcbamrun.so python/build python/cbamrun.egg-info
	@ls -l dist/cbamrun-*.whl

# Installs the wheel into a fresh venv (no system packages, numpy from PyPI) and runs a zoo
# model from outside the repository, checking no Swift library is loaded.
python-wheel-check: python
	rm -rf .build/wheel-venv && $(PYTHON) -m venv .build/wheel-venv
	.build/wheel-venv/bin/pip install -q dist/cbamrun-*.whl
	cd /tmp && $(CURDIR)/.build/wheel-venv/bin/python $(CURDIR)/python/tools/wheel_check.py $(CURDIR)/Models

# tools/export_timm.py --wide (skipped when TIMM_WIDE already has a manifest), then WideFamilyTests
# on those files: outputs, gate and softmax counts, self-attention tensors. With CBAM_TIMM_WIDE set,
# a missing or empty export fails the suite instead of skipping it.
TIMM_WIDE ?= .build/timm-wide
test-wide: deps
	test -f $(TIMM_WIDE)/manifest.json || $(PYTHON) tools/export_timm.py --wide --out $(TIMM_WIDE)
	CBAM_TIMM_WIDE=$(abspath $(TIMM_WIDE)) $(SWIFT) test --filter WideFamilyTests

# Sanitizer runs build into their own folders so they never invalidate the plain build.
# ASan: tools/lsan.supp lists leaks that are Foundation's, XCTest's or the test suite's globals.
# TSan: tools/tsan.supp silences the hand-off of Parallel.forEach through libgomp (uninstrumented, so TSan cannot see its barrier).
test-asan: deps
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp \
		$(SWIFT) test --sanitize=address --scratch-path .build-asan

test-tsan: deps
	TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
		$(SWIFT) test --sanitize=thread --scratch-path .build-tsan

fuzz: deps
	tools/fuzz.sh --build
	for target in fuzz-load fuzz-run fuzz-npy fuzz-tensorproto; do tools/fuzz.sh $$target $(FUZZ_SECONDS) || exit 1; done

release: deps
	$(SWIFT) build -c release --product cbam-run

# cbam-run for machines without a Swift toolchain (a container image, a cluster's nodes): the
# Swift runtime and Foundation linked in statically, in the wheel's build folder (.build-static).
# It needs only the Debian libraries libprotobuf-c1, libdnnl2, libpng16-16, libjpeg62-turbo and
# libgomp1, and starts with 18 MB resident instead of 26.
release-static: deps
	$(SWIFT) build -c release --product cbam-run --scratch-path .build-static -Xswiftc -static-stdlib
	@if ldd .build-static/release/cbam-run | grep -q libswift; then echo "a Swift library is still linked dynamically" >&2; exit 1; fi
	@echo "built .build-static/release/cbam-run (no Swift toolchain library needed)"

# The DocC catalogue of the library (a getting-started article and the API), as a static site in .build/docs.
docs: deps
	$(SWIFT) package --allow-writing-to-directory .build/docs generate-documentation --target CBAMRuntime \
		--output-path .build/docs --transform-for-static-hosting --hosting-base-path cbam-run
	@echo "documentation in .build/docs (serve the folder; the library's pages are under documentation/cbamruntime)"

# Python tools (export, reference outputs, benchmark against onnxruntime, OpenVINO, PyTorch).
tools-deps: deps
	@tools/install-deps.sh --python

# The small zoo at 1 thread; e.g. python3 tools/bench.py --threads 1 2 --write for BENCHMARKS.md.
bench: release tools-deps
	python3 tools/bench.py

proto:
	tools/gen-proto.sh
