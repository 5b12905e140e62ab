import CBAMRuntime
import FuzzSupport

/// Any bytes → load → Session → plan → one run on sample inputs, with budgets small enough
/// that a valid but huge graph is refused before it allocates (memory), plans too much
/// work (MACs) or runs too long (timeout), instead of stalling the fuzzer.
/// Tests/CBAMRuntimeTests/FuzzRegressionTests.swift replays inputs the same way.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRun(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        let model = try ModelLoader.load(bytes: bytes, fileName: "fuzz.onnx")
        let options = SessionOptions(threads: 1, limits: ResourceLimits(maxMemory: 64 << 20, maxMACs: 50_000_000),
                                     convolution: .im2col, timeout: 2)
        let session = try Session(model: model, fileName: "fuzz.onnx", options: options)
        _ = try session.run(try session.sampleInputs(symbolicSize: 2, maxElements: 1 << 16))
    } catch is CBAMError {
    } catch {
        fatalError("the runtime threw a non-CBAMError: \(error)")
    }
    return 0
}

@_cdecl("fuzz_run_main")
public func fuzzRunMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzRun)
}

/// Structure-aware mutations of the model (Fuzz/Sources/ONNXMutator), mixed with libFuzzer's byte mutations.
@_cdecl("LLVMFuzzerCustomMutator")
public func customMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    ONNXMutator.customMutator(data, size, maxSize, seed)
}
