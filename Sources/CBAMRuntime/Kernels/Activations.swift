import Foundation

// Elementwise float math: activations and unary functions. float32 is the fast
// path; float64 is computed in Double; Abs, Neg and Sign also take integers.

extension OpRegistry {
    mutating func registerActivations() {
        // Sigmoid and Exp run eight lanes at a time in float32 (VectorMath.exp); float64 keeps libm.
        register("Sigmoid") { _ in vectorUnary({ 1 / (1 + VectorMath.exp(-$0)) }, { 1 / (1 + Foundation.exp(-$0)) }) }
        register("Relu") { _ in unary({ Swift.max($0, 0) }, { Swift.max($0, 0) }, integer: { Swift.max($0, 0) }) }
        register("Tanh") { _ in unary({ Foundation.tanh($0) }, { Foundation.tanh($0) }) }
        register("Exp") { _ in vectorUnary({ VectorMath.exp($0) }, { Foundation.exp($0) }) }
        register("Log") { _ in unary({ Foundation.log($0) }, { Foundation.log($0) }) }
        register("Sqrt") { _ in unary({ $0.squareRoot() }, { $0.squareRoot() }) }
        register("Erf") { _ in unary({ Foundation.erf($0) }, { Foundation.erf($0) }) }
        register("Sin") { _ in unary({ Foundation.sin($0) }, { Foundation.sin($0) }) }
        register("Cos") { _ in unary({ Foundation.cos($0) }, { Foundation.cos($0) }) }
        register("Reciprocal") { _ in unary({ 1 / $0 }, { 1 / $0 }) }
        register("Floor") { _ in unary({ $0.rounded(.down) }, { $0.rounded(.down) }) }
        register("Ceil") { _ in unary({ $0.rounded(.up) }, { $0.rounded(.up) }) }
        register("Round") { _ in unary({ $0.rounded(.toNearestOrEven) }, { $0.rounded(.toNearestOrEven) }) }
        register("Softplus") { _ in unary({ Foundation.log1p(Foundation.exp($0)) }, { Foundation.log1p(Foundation.exp($0)) }) }
        register("Softsign") { _ in unary({ $0 / (1 + Swift.abs($0)) }, { $0 / (1 + Swift.abs($0)) }) }
        register("Abs") { _ in unary({ Swift.abs($0) }, { Swift.abs($0) }, integer: { $0 == .min ? .min : Swift.abs($0) }) }
        register("Neg") { _ in unary({ -$0 }, { -$0 }, integer: { 0 &- $0 }) }
        register("Sign") { _ in unary({ $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }, integer: { $0.signum() }) }
        register("HardSwish") { _ in unary({ $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }, { $0 * Swift.max(0, Swift.min(1, $0 / 6 + 0.5)) }) }

        register("Gelu") { context in
            let tanh = try geluApproximation(context)
            return unary({ gelu($0, tanh: tanh) }, { gelu($0, tanh: tanh) })
        }
        register("LeakyRelu") { context in
            let alpha = try context.float("alpha", default: 0.01)
            return unary({ $0 >= 0 ? $0 : alpha * $0 }, { $0 >= 0 ? $0 : Double(alpha) * $0 })
        }
        register("Elu") { context in
            let alpha = try context.float("alpha", default: 1)
            return unary({ $0 >= 0 ? $0 : alpha * (Foundation.exp($0) - 1) }, { $0 >= 0 ? $0 : Double(alpha) * (Foundation.exp($0) - 1) })
        }
        register("HardSigmoid") { context in
            let alpha = try context.float("alpha", default: 0.2), beta = try context.float("beta", default: 0.5)
            return unary({ Swift.max(0, Swift.min(1, alpha * $0 + beta)) },
                         { Swift.max(0, Swift.min(1, Double(alpha) * $0 + Double(beta))) })
        }
        register("Clip") { context in
            // Before opset 11 the bounds are attributes; from 11 on they are optional inputs.
            let attributeMin = try context.float("min", default: -.infinity)
            let attributeMax = try context.float("max", default: .infinity)
            let fromInputs = context.opset >= 11
            return Kernel.single { inputs in
                let x = try required(inputs, 0, "input")
                func bound(_ index: Int, _ fallback: Double) throws -> Double {
                    guard fromInputs, index < inputs.count, let t = inputs[index] else { return fallback }
                    guard t.count == 1 else { throw CBAMError(.shapeMismatch, "Clip bound must be a scalar, got shape \(Shape.describe(t.shape))") }
                    return t.doubles()[0]
                }
                let low = try bound(1, Double(attributeMin)), high = try bound(2, Double(attributeMax))
                switch x.storage {
                case .float(let v):
                    let lo = Float(low), hi = Float(high)
                    return .float(x.shape, v.map { Swift.min(Swift.max($0, lo), hi) })
                case .double(let v): return Tensor(unchecked: x.shape, .double(v.map { Swift.min(Swift.max($0, low), high) }))
                case .int64(let v):
                    let lo = clampedInt64(low), hi = clampedInt64(high)
                    return .int64(x.shape, v.map { Swift.min(Swift.max($0, lo), hi) })
                case .int32(let v):
                    let lo = Int32(clamping: clampedInt64(low)), hi = Int32(clamping: clampedInt64(high))
                    return Tensor(unchecked: x.shape, .int32(v.map { Swift.min(Swift.max($0, lo), hi) }))
                case .int8(let v):
                    let lo = Int8(clamping: clampedInt64(low)), hi = Int8(clamping: clampedInt64(high))
                    return Tensor(unchecked: x.shape, .int8(v.map { Swift.min(Swift.max($0, lo), hi) }))
                case .uint8(let v):
                    let lo = UInt8(clamping: clampedInt64(low)), hi = UInt8(clamping: clampedInt64(high))
                    return Tensor(unchecked: x.shape, .uint8(v.map { Swift.min(Swift.max($0, lo), hi) }))
                default: throw CBAMError(.typeMismatch, "Clip does not take \(x.dataType)")
                }
            }
        }
    }
}

/// Gelu's `approximate` attribute (opset 20): "none" (the erf form) or "tanh"; true for "tanh".
func geluApproximation(_ context: NodeContext) throws -> Bool {
    let approximate = try context.string("approximate", default: "none")
    guard approximate == "none" || approximate == "tanh" else {
        throw context.invalid("approximate", "must be \"none\" or \"tanh\", got \"\(approximate)\"")
    }
    return approximate == "tanh"
}

/// Gelu: `x/2 · (1 + erf(x/√2))`, or with `tanh` `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
@inline(__always)
func gelu<T: BinaryFloatingPoint>(_ x: T, tanh: Bool) -> T {
    if tanh {
        let inner = Double(x) * (1 + 0.044715 * Double(x) * Double(x)) * 0.7978845608028654
        return T(0.5 * Double(x) * (1 + Foundation.tanh(inner)))
    }
    return T(0.5 * Double(x) * (1 + Foundation.erf(Double(x) * 0.7071067811865476)))
}

/// A float32 elementwise kernel computed with SIMD8 lanes (`double` serves float64).
func vectorUnary(_ lanes: @escaping (SIMD8<Float>) -> SIMD8<Float>, _ double: @escaping (Double) -> Double) -> Kernel {
    let fallback = unary({ lanes(SIMD8(repeating: $0))[0] }, double)
    return Kernel { inputs in
        let x = try required(inputs, 0, "X")
        guard case .float(let values) = x.storage else { return try fallback.run(inputs) }
        let result = [Float](unsafeUninitializedCapacity: values.count) { out, initialized in
            values.withUnsafeBufferPointer { source in
                if let s = source.baseAddress, let t = out.baseAddress { VectorMath.map(s, t, values.count, lanes) }
            }
            initialized = values.count
        }
        return [.float(x.shape, result)]
    }
}

/// A bound read as Double, as an Int64: past-the-end values (and ±infinity) clamp to
/// the Int64 range; `Double(Int64.max)` rounds up to 2^63, which `Int64(_:)` would trap on.
private func clampedInt64(_ value: Double) -> Int64 {
    if value.isNaN { return 0 }
    if value >= 9.223372036854775e18 { return .max }
    if value <= -9.223372036854775e18 { return .min }
    return Int64(value)
}

/// A one-input elementwise kernel: `float` for float32, `double` for float64 and,
/// when given, `integer` for int64/int32/int8 (computed in Int64, narrowed back).
/// Inlined into each registration so `float` is a known closure and the loop specialises.
@inline(__always)
func unary(_ float: @escaping (Float) -> Float, _ double: @escaping (Double) -> Double,
           integer: ((Int64) -> Int64)? = nil) -> Kernel {
    Kernel.single { inputs in
        let x = try required(inputs, 0, "X")
        switch x.storage {
        case .float(let v):
            return .float(x.shape, [Float](unsafeUninitializedCapacity: v.count) { out, initialized in
                v.withUnsafeBufferPointer { source in
                    for i in 0..<source.count { out[i] = float(source[i]) }
                }
                initialized = v.count
            })
        case .double(let v): return Tensor(unchecked: x.shape, .double(v.map(double)))
        case .int64(let v) where integer != nil: return .int64(x.shape, v.map(integer!))
        case .int32(let v) where integer != nil:
            return Tensor(unchecked: x.shape, .int32(v.map { Int32(truncatingIfNeeded: integer!(Int64($0))) }))
        case .int8(let v) where integer != nil:
            return Tensor(unchecked: x.shape, .int8(v.map { Int8(truncatingIfNeeded: integer!(Int64($0))) }))
        default:
            throw CBAMError(.typeMismatch, "input must be float32 or float64\(integer != nil ? " or an integer type" : ""), not \(x.dataType)")
        }
    }
}
