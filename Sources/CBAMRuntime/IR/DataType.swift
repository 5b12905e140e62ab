/// The element types cbam-run can hold in a ``Tensor``.
///
/// Raw values are ONNX `TensorProto.DataType` codes, so a code read from a file
/// converts with `DataType(rawValue:)`; codes cbam-run does not hold (string,
/// complex, bfloat16, …) give `nil` and are refused by the loader with the field named.
public enum DataType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case float = 1
    case uint8 = 2
    case int8 = 3
    case int32 = 6
    case int64 = 7
    case bool = 9
    case float16 = 10
    case double = 11

    /// Bytes per element in ONNX `raw_data` and in `.npy` files.
    public var byteSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .float16: return 2
        case .float, .int32: return 4
        case .int64, .double: return 8
        }
    }

    public var description: String {
        switch self {
        case .float: return "float32"
        case .uint8: return "uint8"
        case .int8: return "int8"
        case .int32: return "int32"
        case .int64: return "int64"
        case .bool: return "bool"
        case .double: return "float64"
        case .float16: return "float16"
        }
    }

    /// The ONNX name of a data-type code, for error messages about codes we do not hold.
    public static func onnxName(of code: Int32) -> String {
        let names = [0: "UNDEFINED", 1: "FLOAT", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16",
                     6: "INT32", 7: "INT64", 8: "STRING", 9: "BOOL", 10: "FLOAT16", 11: "DOUBLE",
                     12: "UINT32", 13: "UINT64", 14: "COMPLEX64", 15: "COMPLEX128", 16: "BFLOAT16",
                     17: "FLOAT8E4M3FN", 18: "FLOAT8E4M3FNUZ", 19: "FLOAT8E5M2", 20: "FLOAT8E5M2FNUZ",
                     21: "UINT4", 22: "INT4", 23: "FLOAT4E2M1", 24: "FLOAT8E8M0", 25: "UINT2", 26: "INT2"]
        return names[Int(code)] ?? "type code \(code)"
    }
}
