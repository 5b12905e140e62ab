import CBAMRuntime
import FuzzSupport

/// Any bytes → ModelLoader. A CBAMError is a clean refusal; anything else is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoad(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        _ = try ModelLoader.load(bytes: bytes, fileName: "fuzz.onnx")
    } catch is CBAMError {
    } catch {
        fatalError("ModelLoader threw a non-CBAMError: \(error)")
    }
    return 0
}

@_cdecl("fuzz_load_main")
public func fuzzLoadMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzLoad)
}

/// Structure-aware mutations of the model (Fuzz/Sources/ONNXMutator), mixed with libFuzzer's byte mutations.
@_cdecl("LLVMFuzzerCustomMutator")
public func customMutator(_ data: UnsafeMutablePointer<UInt8>, _ size: Int, _ maxSize: Int, _ seed: UInt32) -> Int {
    ONNXMutator.customMutator(data, size, maxSize, seed)
}
