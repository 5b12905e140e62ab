import CBAMRuntime

/// Any bytes → NPY.decode; a decoded tensor is encoded again and must decode to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let tensor = try NPY.decode(bytes)
        let again = try NPY.decode(NPY.encode(tensor))
        precondition(again.shape == tensor.shape && again.dataType == tensor.dataType, "NPY round trip changed the tensor")
    } catch is CBAMError {
    } catch {
        fatalError("NPY.decode threw a non-CBAMError: \(error)")
    }
    return 0
}
