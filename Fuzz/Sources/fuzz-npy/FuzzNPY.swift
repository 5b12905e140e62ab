import CBAMRuntime
import FuzzSupport

/// Any bytes → NPY.decode; a decoded tensor is encoded again and must decode to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNPY(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
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

@_cdecl("fuzz_npy_main")
public func fuzzNPYMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    runFuzzer(argc, argv, fuzzNPY)
}
