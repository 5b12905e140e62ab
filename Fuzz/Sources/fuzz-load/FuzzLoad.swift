import CBAMRuntime

/// Any bytes → ModelLoader. A CBAMError is a clean refusal; anything else is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzLoad(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        _ = try ModelLoader.load(bytes: bytes, fileName: "fuzz.onnx")
    } catch is CBAMError {
    } catch {
        fatalError("ModelLoader threw a non-CBAMError: \(error)")
    }
    return 0
}
