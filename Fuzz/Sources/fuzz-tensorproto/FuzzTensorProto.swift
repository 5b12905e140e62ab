import CBAMRuntime

/// Any bytes → ModelLoader.loadTensor (the `.pb` inputs of ONNX test data).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTensorProto(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try ModelLoader.loadTensor(bytes: bytes, fileName: "fuzz.pb")
    } catch is CBAMError {
    } catch {
        fatalError("loadTensor threw a non-CBAMError: \(error)")
    }
    return 0
}
