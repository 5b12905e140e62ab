import CBAMRuntime
import CCBAMRun
import Foundation

// The C API (include/cbamrun.h): opaque handles are retained Swift objects passed as
// OpaquePointer; every function catches what it calls and turns it into a status, so no
// Swift error crosses the boundary. These files only convert arguments and results.

/// What `cbamrun_status *` points to: a code and the message the CLI would print.
final class StatusBox {
    let code: cbamrun_code
    let message: OwnedCString

    init(code: cbamrun_code, message: String) {
        self.code = code
        self.message = OwnedCString(message)
    }

    /// A status for any error: a ``CBAMError`` keeps its kind and its one-line description
    /// (the text after "cbam-run: error: "); anything else is an I/O error with its text.
    convenience init(_ error: Error) {
        if let error = error as? APIError {
            self.init(code: CBAMRUN_INVALID_ARGUMENT, message: error.message)
        } else if let error = error as? CBAMError {
            self.init(code: Self.code(error.kind), message: error.description)
        } else {
            self.init(code: CBAMRUN_IO, message: "\(error)")
        }
    }

    static func code(_ kind: CBAMError.Kind) -> cbamrun_code {
        switch kind {
        case .notONNX: return CBAMRUN_NOT_ONNX
        case .malformedModel: return CBAMRUN_MALFORMED_MODEL
        case .unsupportedOp: return CBAMRUN_UNSUPPORTED_OP
        case .unsupportedType: return CBAMRUN_UNSUPPORTED_TYPE
        case .invalidAttribute: return CBAMRUN_INVALID_ATTRIBUTE
        case .invalidShape: return CBAMRUN_INVALID_SHAPE
        case .shapeMismatch: return CBAMRUN_SHAPE_MISMATCH
        case .typeMismatch: return CBAMRUN_TYPE_MISMATCH
        case .missingInput: return CBAMRUN_MISSING_INPUT
        case .io: return CBAMRUN_IO
        case .badNPY: return CBAMRUN_BAD_NPY
        case .usage: return CBAMRUN_USAGE
        case .resourceLimit: return CBAMRUN_RESOURCE_LIMIT
        case .badImage: return CBAMRUN_BAD_IMAGE
        case .cancelled: return CBAMRUN_CANCELLED
        }
    }
}

/// A misuse of the C API itself (a NULL pointer, an index out of range): CBAMRUN_INVALID_ARGUMENT.
struct APIError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Runs `body` and returns NULL, or the status of what it threw.
func guarded(_ body: () throws -> Void) -> OpaquePointer? {
    do {
        try body()
        return nil
    } catch {
        return retain(StatusBox(error))
    }
}

/// A +1 reference to `object` as a C handle; ``release(_:as:)`` drops it.
func retain<T: AnyObject>(_ object: T) -> OpaquePointer {
    OpaquePointer(Unmanaged.passRetained(object).toOpaque())
}

/// The object behind a handle, without changing its reference count.
func object<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type) -> T? {
    handle.map { Unmanaged<T>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

func release<T: AnyObject>(_ handle: OpaquePointer?, as type: T.Type) {
    if let handle { Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release() }
}

/// A NUL-terminated copy of a string, freed with its owner.
/// Immutable after init, so it may be shared between threads.
final class OwnedCString: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<CChar>

    init(_ text: String) {
        let bytes = Array(text.utf8CString)
        pointer = .allocate(capacity: bytes.count)
        pointer.initialize(from: bytes, count: bytes.count)
    }

    deinit { pointer.deallocate() }
}

/// The strings and arrays a handle hands out through its structs, freed with it.
final class OwnedArray<T> {
    let pointer: UnsafeMutablePointer<T>
    let count: Int

    init(_ values: [T]) {
        count = values.count
        pointer = .allocate(capacity: max(values.count, 1))
        pointer.initialize(from: values, count: values.count)
    }

    deinit {
        pointer.deinitialize(count: count)
        pointer.deallocate()
    }
}

// MARK: - Version and status functions

/// Kept equal to `cbam-run --version` (the Python tests compare them).
private let versionString = OwnedCString("0.3.0")

@_cdecl("cbamrun_version")
public func cbamrun_version() -> UnsafePointer<CChar> {
    UnsafePointer(versionString.pointer)
}

@_cdecl("cbamrun_api_version")
public func cbamrun_api_version() -> Int32 {
    CBAMRUN_API_VERSION
}

@_cdecl("cbamrun_status_code")
public func cbamrun_status_code(_ status: OpaquePointer?) -> cbamrun_code {
    object(status, as: StatusBox.self)?.code ?? CBAMRUN_OK
}

private let emptyString = OwnedCString("")

@_cdecl("cbamrun_status_message")
public func cbamrun_status_message(_ status: OpaquePointer?) -> UnsafePointer<CChar> {
    UnsafePointer((object(status, as: StatusBox.self)?.message ?? emptyString).pointer)
}

@_cdecl("cbamrun_status_free")
public func cbamrun_status_free(_ status: OpaquePointer?) {
    release(status, as: StatusBox.self)
}
