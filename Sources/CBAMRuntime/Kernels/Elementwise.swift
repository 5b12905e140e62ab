import Foundation

// Elementwise ops: arithmetic and comparisons with numpy broadcasting, logic, Where, Cast.
// Float math lives in Activations.swift.

extension OpRegistry {
    mutating func registerElementwise() {
        register("Add") { context in binary { a, b in try arithmetic(a, b, threads: context.threads, floatOperator: .add, float: +, double: +, int64: { $0 &+ $1 }, int32: { $0 &+ $1 }) } }
        register("Sub") { context in binary { a, b in try arithmetic(a, b, threads: context.threads, floatOperator: .subtract, float: -, double: -, int64: { $0 &- $1 }, int32: { $0 &- $1 }) } }
        register("Mul") { context in binary { a, b in try arithmetic(a, b, threads: context.threads, floatOperator: .multiply, float: *, double: *, int64: { $0 &* $1 }, int32: { $0 &* $1 }) } }
        register("Div") { context in binary { a, b in try arithmetic(a, b, threads: context.threads, floatOperator: .divide, float: /, double: /, int64: integerDivide, int32: integerDivide) } }
        register("Pow") { _ in binary(power) }
        register("Mod") { context in
            // fmod = 1: the remainder takes the dividend's sign (C's fmod and %); fmod = 0: the
            // divisor's (Python's %). ONNX asks fmod = 1 for floats; onnx's reference computes
            // numpy.mod for fmod = 0 whatever the type, and so does this kernel.
            let truncated = try context.int("fmod", default: 0) != 0
            return binary { a, b in
                try arithmetic(a, b, float: { truncated ? Foundation.fmod($0, $1) : floatModulo($0, $1) },
                               double: { truncated ? Foundation.fmod($0, $1) : floatModulo($0, $1) },
                               int64: { try integerModulo($0, $1, truncated: truncated) },
                               int32: { try integerModulo($0, $1, truncated: truncated) })
            }
        }
        register("Max") { _ in variadic { a, b in try arithmetic(a, b, float: { Swift.max($0, $1) }, double: { Swift.max($0, $1) }, int64: { Swift.max($0, $1) }, int32: { Swift.max($0, $1) }) } }
        register("Min") { _ in variadic { a, b in try arithmetic(a, b, float: { Swift.min($0, $1) }, double: { Swift.min($0, $1) }, int64: { Swift.min($0, $1) }, int32: { Swift.min($0, $1) }) } }
        register("Sum") { _ in variadic { a, b in try arithmetic(a, b, float: +, double: +, int64: { $0 &+ $1 }, int32: { $0 &+ $1 }) } }
        register("Mean") { _ in
            Kernel.single { inputs in
                let total = try variadicFold(inputs) { a, b in try arithmetic(a, b, float: +, double: +, int64: { $0 &+ $1 }, int32: { $0 &+ $1 }) }
                let n = Float(inputs.count)
                switch total.storage {
                case .float(let v): return .float(total.shape, v.map { $0 / n })
                case .double(let v): return Tensor(unchecked: total.shape, .double(v.map { $0 / Double(n) }))
                default: throw CBAMError(.typeMismatch, "Mean takes float tensors, not \(total.dataType)")
                }
            }
        }

        register("Equal") { _ in binary { a, b in try compare(a, b, ==) } }
        register("Less") { _ in binary { a, b in try compare(a, b, <) } }
        register("Greater") { _ in binary { a, b in try compare(a, b, >) } }
        register("LessOrEqual") { _ in binary { a, b in try compare(a, b, <=) } }
        register("GreaterOrEqual") { _ in binary { a, b in try compare(a, b, >=) } }

        register("And") { _ in binary { a, b in try logical(a, b) { $0 && $1 } } }
        register("Or") { _ in binary { a, b in try logical(a, b) { $0 || $1 } } }
        register("Xor") { _ in binary { a, b in try logical(a, b) { $0 != $1 } } }
        register("Not") { _ in
            Kernel.single { inputs in
                let x = try required(inputs, 0, "X")
                guard case .bool(let v) = x.storage else { throw CBAMError(.typeMismatch, "Not takes bool, not \(x.dataType)") }
                return Tensor(unchecked: x.shape, .bool(v.map { !$0 }))
            }
        }

        register("Where") { _ in
            Kernel.single { inputs in
                let condition = try required(inputs, 0, "condition")
                let x = try required(inputs, 1, "X"), y = try required(inputs, 2, "Y")
                guard case .bool = condition.storage else {
                    throw CBAMError(.typeMismatch, "condition must be bool, not \(condition.dataType)")
                }
                let shape = try Shape.broadcast(Shape.broadcast(condition.shape, x.shape), y.shape)
                guard case .bool(let c) = try expand(condition, to: shape).storage else { fatalError("unreachable") }
                let xs = try expand(x, to: shape), ys = try expand(y, to: shape)
                func select<T>(_ a: [T], _ b: [T]) -> [T] { (0..<c.count).map { c[$0] ? a[$0] : b[$0] } }
                switch (xs.storage, ys.storage) {
                case (.float(let a), .float(let b)): return Tensor(unchecked: shape, .float(select(a, b)))
                case (.double(let a), .double(let b)): return Tensor(unchecked: shape, .double(select(a, b)))
                case (.int64(let a), .int64(let b)): return Tensor(unchecked: shape, .int64(select(a, b)))
                case (.int32(let a), .int32(let b)): return Tensor(unchecked: shape, .int32(select(a, b)))
                case (.bool(let a), .bool(let b)): return Tensor(unchecked: shape, .bool(select(a, b)))
                case (.uint8(let a), .uint8(let b)): return Tensor(unchecked: shape, .uint8(select(a, b)))
                case (.int8(let a), .int8(let b)): return Tensor(unchecked: shape, .int8(select(a, b)))
                case (.float16(let a), .float16(let b)): return Tensor(unchecked: shape, .float16(select(a, b)))
                default: throw CBAMError(.typeMismatch, "X is \(x.dataType) but Y is \(y.dataType)")
                }
            }
        }

        register("Cast") { context in
            let code = try context.intIfPresent("to") ?? 0
            guard let target = DataType(rawValue: Int32(truncatingIfNeeded: code)) else {
                throw context.invalid("to", "casting to \(DataType.onnxName(of: Int32(truncatingIfNeeded: code))) is not supported")
            }
            return Kernel.single { inputs in try cast(try required(inputs, 0, "input"), to: target) }
        }
        register("CastLike") { _ in
            Kernel.single { inputs in try cast(try required(inputs, 0, "input"), to: try required(inputs, 1, "target_type").dataType) }
        }
    }
}

// MARK: - Building blocks

/// A two-input kernel.
func binary(_ op: @escaping (Tensor, Tensor) throws -> Tensor) -> Kernel {
    Kernel.single { inputs in try op(try required(inputs, 0, "A"), try required(inputs, 1, "B")) }
}

/// A kernel folding one or more inputs left to right with a broadcasting binary op.
func variadic(_ op: @escaping (Tensor, Tensor) throws -> Tensor) -> Kernel {
    Kernel.single { inputs in try variadicFold(inputs, op) }
}

func variadicFold(_ inputs: [Tensor?], _ op: (Tensor, Tensor) throws -> Tensor) throws -> Tensor {
    let present = inputs.compactMap { $0 }
    guard var result = present.first else { throw CBAMError(.missingInput, "the op needs at least one input") }
    for next in present.dropFirst() { result = try op(result, next) }
    return result
}

/// A broadcasting arithmetic op on two tensors of the same element type.
@inline(__always)
func arithmetic(_ a: Tensor, _ b: Tensor, threads: Int = 1, floatOperator: FloatOperator? = nil,
                float: (Float, Float) -> Float, double: (Double, Double) -> Double,
                int64: (Int64, Int64) throws -> Int64, int32: (Int32, Int32) throws -> Int32) throws -> Tensor {
    switch (a.storage, b.storage) {
    case (.float(let x), .float(let y)):
        if let floatOperator { return try floatOperator.apply(x, a.shape, y, b.shape, threads: threads) }
        return try broadcastMap(x, a.shape, y, b.shape, threads: threads, float).tensor(Tensor.Storage.float)
    case (.double(let x), .double(let y)): return try broadcastMap(x, a.shape, y, b.shape, double).tensor(Tensor.Storage.double)
    case (.int64(let x), .int64(let y)): return try broadcastMap(x, a.shape, y, b.shape, int64).tensor(Tensor.Storage.int64)
    case (.int32(let x), .int32(let y)): return try broadcastMap(x, a.shape, y, b.shape, int32).tensor(Tensor.Storage.int32)
    // Half precision is computed in float32 and rounded back once per element.
    case (.float16(let x), .float16(let y)):
        return try broadcastMap(x, a.shape, y, b.shape) { Float16(float(Float($0), Float($1))) }.tensor(Tensor.Storage.float16)
    // Narrow integers are computed in int32 and wrapped back, as C and numpy do.
    case (.int8(let x), .int8(let y)):
        return try broadcastMap(x, a.shape, y, b.shape) { Int8(truncatingIfNeeded: try int32(Int32($0), Int32($1))) }.tensor(Tensor.Storage.int8)
    case (.uint8(let x), .uint8(let y)):
        return try broadcastMap(x, a.shape, y, b.shape) { UInt8(truncatingIfNeeded: try int32(Int32($0), Int32($1))) }.tensor(Tensor.Storage.uint8)
    default:
        throw CBAMError(.typeMismatch, "inputs must have the same numeric type (float32, float64, int64 or int32), got \(a.dataType) and \(b.dataType)")
    }
}

/// The float32 arithmetic that attention gates and residual connections spend their time
/// in, written with SIMD8 loads and stores so the loops are vector code whatever the
/// optimiser makes of a generic closure (it left those scalar).
enum FloatOperator {
    case add, subtract, multiply, divide

    func apply(_ x: [Float], _ xShape: [Int], _ y: [Float], _ yShape: [Int], threads: Int) throws -> Tensor {
        switch self {
        case .add: return try run(AddOperator.self)
        case .subtract: return try run(SubtractOperator.self)
        case .multiply: return try run(MultiplyOperator.self)
        case .divide: return try run(DivideOperator.self)
        }
        func run<O: FloatBinaryOperator>(_: O.Type) throws -> Tensor {
            let plan = try BroadcastPlan(xShape, yShape)
            let workers = plan.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(threads, plan.runCount)) : 1
            let values = [Float](unsafeUninitializedCapacity: plan.count) { out, initialized in
                x.withUnsafeBufferPointer { xp in
                    y.withUnsafeBufferPointer { yp in
                        let (a, b, c) = (xp.baseAddress, yp.baseAddress, out.baseAddress)
                        Parallel.forEach(workers) { worker in
                            plan.forEachRun(in: Parallel.share(worker, of: workers, count: plan.runCount)) { o, ai, bi, length, aStep, bStep in
                                O.fill(c! + o, length, a! + ai, aStep, b! + bi, bStep)
                            }
                        }
                    }
                }
                initialized = plan.count
            }
            return Tensor(unchecked: plan.outputShape, .float(values))
        }
    }
}

protocol FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float>
}

extension FloatBinaryOperator {
    /// `c[k] = a[k·aStep] ∘ b[k·bStep]` for k < length, where each step is 0 (a broadcast
    /// scalar) or 1 (contiguous): eight lanes at a time, then the tail.
    @inline(__always)
    static func fill(_ c: UnsafeMutablePointer<Float>, _ length: Int,
                     _ a: UnsafePointer<Float>, _ aStep: Int, _ b: UnsafePointer<Float>, _ bStep: Int) {
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ step: Int, _ k: Int) -> SIMD8<Float> {
            step == 0 ? SIMD8(repeating: p[0]) : UnsafeRawPointer(p + k).loadUnaligned(as: SIMD8<Float>.self)
        }
        var k = 0
        while k + 8 <= length {
            UnsafeMutableRawPointer(c + k).storeBytes(of: apply(load(a, aStep, k), load(b, bStep, k)), as: SIMD8<Float>.self)
            k += 8
        }
        while k < length {
            c[k] = apply(a[k * aStep], b[k * bStep])
            k += 1
        }
    }
}

/// Integer division truncating toward zero, as ONNX (and C) define it; errors instead of trapping.
func integerDivide<T: FixedWidthInteger>(_ a: T, _ b: T) throws -> T {
    guard b != 0 else { throw CBAMError(.invalidShape, "integer division by zero") }
    let (quotient, overflow) = a.dividedReportingOverflow(by: b)
    return overflow ? T.min : quotient
}

/// The remainder of a / b with the sign of b (numpy.mod); a zero remainder is +0 or −0 like b.
func floatModulo<T: BinaryFloatingPoint>(_ a: T, _ b: T) -> T {
    var r = a.truncatingRemainder(dividingBy: b)
    if r != 0, (r < 0) != (b < 0) { r += b }
    if r == 0 { r = b < 0 ? -0.0 : 0 }
    return r
}

/// The integer remainder of a / b: with a's sign (`truncated`, C's %) or b's (Python's %).
/// Division by zero is an error; `T.min % -1` is 0.
func integerModulo<T: FixedWidthInteger>(_ a: T, _ b: T, truncated: Bool) throws -> T {
    guard b != 0 else { throw CBAMError(.invalidShape, "integer modulo by zero") }
    let (r, overflow) = a.remainderReportingOverflow(dividingBy: b)
    if overflow { return 0 }
    if !truncated, r != 0, (r < 0) != (b < 0) { return r &+ b }
    return r
}

/// Pow: float bases take any numeric exponent; integer bases take integer or float exponents.
func power(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    switch a.storage {
    case .float(let x) where b.count == 1:
        // One exponent for the whole tensor (LP pooling's x² and its √): exact special
        // cases as multiplications and a square root, otherwise powf in float32.
        let e = b.doubles()[0]
        let f: (Float) -> Float
        switch e {
        case 1: f = { $0 }
        case 2: f = { $0 * $0 }
        case 3: f = { $0 * $0 * $0 }
        case 0.5: f = { $0.squareRoot() }
        default:
            let exponent = Float(e)
            // powf's float32 result differs from the Double route only past float32 precision.
            f = { Foundation.powf($0, exponent) }
        }
        return try Tensor(shape: try Shape.broadcast(a.shape, b.shape), storage: .float(x.map(f)))
    case .float(let x):
        let y = b.doubles()
        return try broadcastMap(x, a.shape, y, b.shape) { Float(Foundation.pow(Double($0), $1)) }.tensor(Tensor.Storage.float)
    case .double(let x):
        return try broadcastMap(x, a.shape, b.doubles(), b.shape) { Foundation.pow($0, $1) }.tensor(Tensor.Storage.double)
    case .int64(let x):
        return try broadcastMap(x, a.shape, b.doubles(), b.shape) { try integerPower($0, $1) }.tensor(Tensor.Storage.int64)
    case .int32(let x):
        return try broadcastMap(x, a.shape, b.doubles(), b.shape) { Int32(truncatingIfNeeded: try integerPower(Int64($0), $1)) }.tensor(Tensor.Storage.int32)
    default:
        throw CBAMError(.typeMismatch, "Pow does not take \(a.dataType) bases")
    }
}

private func integerPower(_ base: Int64, _ exponent: Double) throws -> Int64 {
    let value = Foundation.pow(Double(base), exponent)
    guard value.isFinite, abs(value) < 9.2e18 else { throw CBAMError(.invalidShape, "integer Pow result \(value) does not fit in int64") }
    return Int64(value.rounded(.towardZero))
}

/// A broadcasting comparison giving bool.
@inline(__always)
func compare(_ a: Tensor, _ b: Tensor, _ op: (Double, Double) -> Bool) throws -> Tensor {
    func run<T>(_ x: [T], _ y: [T], _ convert: (T) -> Double) throws -> Tensor {
        try broadcastMap(x, a.shape, y, b.shape) { op(convert($0), convert($1)) }.tensor(Tensor.Storage.bool)
    }
    switch (a.storage, b.storage) {
    case (.float(let x), .float(let y)): return try run(x, y) { Double($0) }
    case (.double(let x), .double(let y)): return try run(x, y) { $0 }
    case (.int64(let x), .int64(let y)):
        // Compare integers exactly: int64 values past 2^53 do not survive a trip through Double.
        return try broadcastMap(x, a.shape, y, b.shape) { op($0 == $1 ? 0 : ($0 < $1 ? -1 : 1), 0) }.tensor(Tensor.Storage.bool)
    case (.int32(let x), .int32(let y)): return try run(x, y) { Double($0) }
    case (.int8(let x), .int8(let y)): return try run(x, y) { Double($0) }
    case (.uint8(let x), .uint8(let y)): return try run(x, y) { Double($0) }
    case (.bool(let x), .bool(let y)): return try run(x, y) { $0 ? 1 : 0 }
    case (.float16(let x), .float16(let y)): return try run(x, y) { Double($0) }
    default: throw CBAMError(.typeMismatch, "cannot compare \(a.dataType) with \(b.dataType)")
    }
}

func logical(_ a: Tensor, _ b: Tensor, _ op: (Bool, Bool) -> Bool) throws -> Tensor {
    guard case .bool(let x) = a.storage, case .bool(let y) = b.storage else {
        throw CBAMError(.typeMismatch, "logical ops take bool inputs, got \(a.dataType) and \(b.dataType)")
    }
    return try broadcastMap(x, a.shape, y, b.shape, op).tensor(Tensor.Storage.bool)
}

/// Converts element types. Float to integer truncates toward zero; NaN, infinities and
/// out-of-range values are an error rather than a trap.
func cast(_ x: Tensor, to target: DataType) throws -> Tensor {
    if x.dataType == target { return x }
    func fromDouble<T: FixedWidthInteger>(_ values: [Double], _: T.Type) throws -> [T] {
        try values.map { value in
            guard let exact = T(exactly: value.rounded(.towardZero)) else {
                throw CBAMError(.typeMismatch, "cannot cast \(value) to \(target)")
            }
            return exact
        }
    }
    func fromInts<T: FixedWidthInteger>(_ values: [Int64], _: T.Type) -> [T] { values.map { T(truncatingIfNeeded: $0) } }
    let storage: Tensor.Storage
    let isInteger: Bool
    switch x.storage {
    case .float, .double, .float16: isInteger = false
    default: isInteger = true
    }
    let wide: [Int64] = isInteger ? try x.integers().map { Int64($0) } : []
    let real: [Double] = isInteger ? [] : x.doubles()
    switch target {
    case .float: storage = .float(isInteger ? wide.map { Float($0) } : real.map { Float($0) })
    case .double: storage = .double(isInteger ? wide.map { Double($0) } : real)
    case .bool: storage = .bool(isInteger ? wide.map { $0 != 0 } : real.map { $0 != 0 })
    case .int64: storage = .int64(isInteger ? wide : try fromDouble(real, Int64.self))
    case .int32: storage = .int32(isInteger ? fromInts(wide, Int32.self) : try fromDouble(real, Int32.self))
    case .int8: storage = .int8(isInteger ? fromInts(wide, Int8.self) : try fromDouble(real, Int8.self))
    case .uint8: storage = .uint8(isInteger ? fromInts(wide, UInt8.self) : try fromDouble(real, UInt8.self))
    // Float → half rounds to nearest even, as ONNX's Cast does; integers go through Float.
    case .float16: storage = .float16(isInteger ? wide.map { Float16(Float($0)) } : real.map { Float16(Float($0)) })
    }
    return Tensor(unchecked: x.shape, storage)
}
