// swift-tools-version:6.0
// libFuzzer targets over CBAMRuntime, kept out of the main package so `swift build` and
// `swift test` never need the fuzzer runtime. Build and run them with tools/fuzz.sh, which
// passes -sanitize=fuzzer,address to every Swift module (CBAMRuntime included) and
// -fsanitize=fuzzer-no-link,address to the C ones (the protobuf-c generated code).
import PackageDescription

let library: [Target.Dependency] = [.product(name: "CBAMRuntime", package: "cbam-run"), "FuzzSupport"]
// Each target defines LLVMFuzzerTestOneInput and a `<module>_main` (the name SwiftPM links as
// main) that starts libFuzzer through LLVMFuzzerRunDriver.
let noMain: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]

let package = Package(
    name: "cbam-run-fuzz",
    dependencies: [.package(name: "cbam-run", path: "..")],
    targets: [
        // The libFuzzer driver hook and the structure-aware ONNX mutator.
        .target(name: "FuzzSupport"),
        // model bytes → ModelLoader (nesting guard, protobuf-c decode, conversion and checks).
        .executableTarget(name: "fuzz-load", dependencies: library, swiftSettings: noMain),
        // model bytes → load → Session (graph checks, folding) → plan → run, under small budgets.
        .executableTarget(name: "fuzz-run", dependencies: library, swiftSettings: noMain),
        // .npy bytes → NPY.decode.
        .executableTarget(name: "fuzz-npy", dependencies: library, swiftSettings: noMain),
        // ONNX TensorProto bytes (.pb test data) → ModelLoader.loadTensor.
        .executableTarget(name: "fuzz-tensorproto", dependencies: library, swiftSettings: noMain),
    ]
)
