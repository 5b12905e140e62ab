import CBAMRuntime
import FuzzSupport

/// Any bytes → ModelLoader.loadTensor (the `.pb` inputs of ONNX test data).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTensorProto(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        _ = try ModelLoader.loadTensor(bytes: bytes, fileName: "fuzz.pb")
    } catch is CBAMError {
    } catch {
        fatalError("loadTensor threw a non-CBAMError: \(error)")
    }
    return 0
}

@_cdecl("fuzz_tensorproto_main")
public func fuzzTensorProtoMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzTensorProto)
}
