# cbam-run: the two set-up commands of the README, and a few more.
#   make demo    install what is missing, build, run a CBAM model shipped in Models/ and export its attention maps
#   make test    install what is missing, check the generated protobuf code, run every test
#   make test-asan / test-tsan   every test under AddressSanitizer / ThreadSanitizer (slow; not CI)
#   make fuzz    each libFuzzer target for FUZZ_SECONDS (tools/fuzz.sh; not CI)
SWIFT ?= swift
DEMO_MODEL ?= Models/seed000_cbam_fc_k7/torchscript_op17.onnx
DEMO_INPUT ?= Models/seed000_cbam_fc_k7/input.npy

FUZZ_SECONDS ?= 300

.PHONY: deps demo test test-asan test-tsan fuzz release bench tools-deps proto

deps:
	@tools/install-deps.sh

demo: deps
	$(SWIFT) build -c release --product cbam-run
	.build/release/cbam-run $(DEMO_MODEL) $(DEMO_INPUT) -o /tmp/cbam-run-demo.npy --attention /tmp/cbam-run-demo-attention
	@echo "wrote /tmp/cbam-run-demo.npy; attention maps in /tmp/cbam-run-demo-attention (open index.html)"

test: deps
	tools/gen-proto.sh --check
	$(SWIFT) test

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

# Python tools (export, reference outputs, benchmark against onnxruntime, OpenVINO, PyTorch).
tools-deps: deps
	@tools/install-deps.sh --python

# The small zoo at 1 thread; e.g. python3 tools/bench.py --threads 1 2 --write for BENCHMARKS.md.
bench: release tools-deps
	python3 tools/bench.py

proto:
	tools/gen-proto.sh
