import CBAMRuntime

/// Any bytes → load → Session → plan → one run on sample inputs, with budgets small enough
/// that a valid but huge graph is refused before it allocates (memory), plans too much
/// work (MACs) or runs too long (timeout), instead of stalling the fuzzer.
/// Tests/CBAMRuntimeTests/FuzzRegressionTests.swift replays inputs the same way.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRun(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
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
