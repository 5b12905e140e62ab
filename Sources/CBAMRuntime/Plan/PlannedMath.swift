import Foundation

// Planned float32 math beyond the binary arithmetic: the unary functions and
// activations (through ``PlannedKernels/unary(_:detail:_:)``), Clip with constant bounds,
// Pow with one constant exponent, and the n-ary Sum / Max / Min / Mean. Each computes what
// its reference kernel computes, element for element (the scalar functions run lane by
// lane; Swift.max / Swift.min are mirrored with compare-and-select, NaN included).

extension PlannedKernels {
    static func registerMath(_ table: inout [String: Builder]) {
        table["Exp"] = { try unary($0, detail: "exp \(VectorMath.InstructionSet.best)") { VectorMath.exp($0, $1, $2) } }
        table["Log"] = { try unary($0, detail: "log") { lanewise($0) { Foundation.log($0) } } }
        table["Tanh"] = { try unary($0, detail: "tanh") { lanewise($0) { Foundation.tanh($0) } } }
        table["Erf"] = { try unary($0, detail: "erf") { lanewise($0) { Foundation.erf($0) } } }
        table["Sin"] = { try unary($0, detail: "sin") { lanewise($0) { Foundation.sin($0) } } }
        table["Cos"] = { try unary($0, detail: "cos") { lanewise($0) { Foundation.cos($0) } } }
        table["Gelu"] = { context in
            let tanh = try geluApproximation(context.node)
            return try unary(context, detail: (tanh ? "gelu tanh " : "gelu ") + "\(VectorMath.InstructionSet.best)") {
                VectorMath.gelu($0, bias: nil, $1, $2, tanh: tanh)
            }
        }
        table["Softplus"] = { try unary($0, detail: "softplus") { lanewise($0) { Foundation.log1p(Foundation.exp($0)) } } }
        table["Sqrt"] = { try unary($0, detail: "sqrt") { $0.squareRoot() } }
        table["Neg"] = { try unary($0, detail: "neg") { -$0 } }
        table["Abs"] = { try unary($0, detail: "abs") { magnitude($0) } }
        table["Reciprocal"] = { try unary($0, detail: "reciprocal") { 1 / $0 } }
        table["Floor"] = { try unary($0, detail: "floor") { $0.rounded(.down) } }
        table["Ceil"] = { try unary($0, detail: "ceil") { $0.rounded(.up) } }
        table["Round"] = { try unary($0, detail: "round") { $0.rounded(.toNearestOrEven) } }
        table["Sign"] = { try unary($0, detail: "sign") { v in
            SIMD8<Float>.zero.replacing(with: 1, where: v .> 0).replacing(with: -1, where: v .< 0)
        } }
        table["Softsign"] = { try unary($0, detail: "softsign") { $0 / (1 + magnitude($0)) } }
        table["HardSwish"] = { try unary($0, detail: "hardswish") { hardSwish($0) } }
        table["HardSigmoid"] = { context in
            let alpha = SIMD8<Float>(repeating: try context.node.float("alpha", default: 0.2))
            let beta = SIMD8<Float>(repeating: try context.node.float("beta", default: 0.5))
            return try unary(context, detail: "hardsigmoid") { v in largest(.zero, smallest(SIMD8(repeating: 1), alpha * v + beta)) }
        }
        table["LeakyRelu"] = { context in
            let alpha = SIMD8<Float>(repeating: try context.node.float("alpha", default: 0.01))
            return try unary(context, detail: "leakyrelu") { v in (alpha * v).replacing(with: v, where: v .>= 0) }
        }
        table["Elu"] = { context in
            let alpha = try context.node.float("alpha", default: 1)
            return try unary(context, detail: "elu") { lanewise($0) { $0 >= 0 ? $0 : alpha * (Foundation.exp($0) - 1) } }
        }
        table["Clip"] = { try clip($0) }
        table["Pow"] = { try power($0) }
        table["Sum"] = { try variadic($0, AddOperator.self, detail: "simd sum") }
        table["Mean"] = { try variadic($0, AddOperator.self, detail: "simd mean", mean: true) }
        table["Max"] = { try variadic($0, MaxOperator.self, detail: "simd max") }
        table["Min"] = { try variadic($0, MinOperator.self, detail: "simd min") }
    }

    /// Clip to bounds known now: attributes before opset 11, constant inputs from 11.
    private static func clip(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        var low = Double(try node.float("min", default: -.infinity)), high = Double(try node.float("max", default: .infinity))
        if node.opset >= 11 {
            for bound in [1, 2] where bound < context.inputs.count && context.inputs[bound] != nil {
                guard let value = node.constant(bound), value.count == 1 else { return nil }  // a bound computed at run time
                if bound == 1 { low = value.doubles()[0] } else { high = value.doubles()[0] }
            }
        }
        let lo = SIMD8<Float>(repeating: Float(low)), hi = SIMD8<Float>(repeating: Float(high))
        // Swift.min(Swift.max(x, lo), hi), lane by lane.
        return try unary(context, detail: "clip") { v in smallest(largest(v, lo), hi) }
    }

    /// Pow with one constant exponent: exact multiplications and a square root for
    /// 1, 2, 3 and ½, powf otherwise (the reference kernel's cases).
    private static func power(_ context: PlanContext) throws -> PlannedKernel? {
        guard let exponent = context.node.constant(1), exponent.count == 1, exponent.dataType != .bool else { return nil }
        let e = exponent.doubles()[0]
        switch e {
        case 1: return try unary(context, detail: "pow 1") { $0 }
        case 2: return try unary(context, detail: "square") { $0 * $0 }
        case 3: return try unary(context, detail: "cube") { $0 * $0 * $0 }
        case 0.5: return try unary(context, detail: "sqrt") { $0.squareRoot() }
        default:
            let p = Float(e)
            return try unary(context, detail: "powf") { lanewise($0) { Foundation.powf($0, p) } }
        }
    }

    /// Sum / Max / Min / Mean of one or more inputs with numpy broadcasting, folded left to
    /// right into Y as the reference does: Y = X₀ ∘ X₁ (or X₀ broadcast into Y), then Y ∘= Xᵢ.
    private static func variadic<O: FloatBinaryOperator>(_ context: PlanContext, _: O.Type, detail: String,
                                                         mean: Bool = false) throws -> PlannedKernel? {
        let y = try context.output(0)
        let inputs = context.inputs.compactMap { $0 }
        guard let first = inputs.first, y.type.dataType == .float, inputs.allSatisfy({ $0.type.dataType == .float }) else { return nil }
        var prefill: StridedCopy? = nil
        var steps: [(plan: BroadcastPlan, left: Operand?, right: Operand, workers: Int)] = []
        func step(_ plan: BroadcastPlan, _ left: Operand?, _ right: Operand) {
            let workers = plan.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, plan.runCount)) : 1
            steps.append((plan, left, right, workers))
        }
        var rest = inputs.dropFirst()
        if inputs.count >= 2, let plan = try? BroadcastPlan(first.shape, inputs[1].shape), plan.outputShape == y.shape {
            step(plan, first, inputs[1])
            rest = inputs.dropFirst(2)
        } else {
            guard let copy = StridedCopy(broadcasting: first.shape, to: y.shape, elementSize: MemoryLayout<Float>.stride) else { return nil }
            prefill = copy
        }
        for operand in rest {
            guard let plan = try? BroadcastPlan(y.shape, operand.shape), plan.outputShape == y.shape else { return nil }
            step(plan, nil, operand)
        }
        let count = y.count, prefillThreads = count >= Parallel.minimumElements ? context.threads : 1
        let divisor = Float(context.inputs.count)
        return PlannedKernel(detail: detail) { memory in
            let target = y.floats(memory)
            if let prefill { prefill.run(UnsafeRawPointer(first.address.pointer(memory)), UnsafeMutableRawPointer(target), threads: prefillThreads) }
            for (plan, left, right, workers) in steps {
                let (a, b) = (UnsafePointer(left?.floats(memory) ?? target), UnsafePointer(right.floats(memory)))
                Parallel.forEach(workers) { worker in
                    plan.forEachRun(in: Parallel.share(worker, of: workers, count: plan.runCount)) { o, ai, bi, length, aStep, bStep in
                        O.fill(target + o, length, a + ai, aStep, b + bi, bStep)
                    }
                }
            }
            if mean { withUnsafePointer(to: divisor) { DivideOperator.fill(target, count, target, 1, $0, 0) } }
        }
    }
}

/// `f` applied to each lane (the scalar libm functions the reference kernels call).
@inline(__always)
private func lanewise(_ v: SIMD8<Float>, _ f: (Float) -> Float) -> SIMD8<Float> {
    var result = v
    for i in 0..<8 { result[i] = f(v[i]) }
    return result
}

/// HardSwish, `x · max(0, min(1, x / 6 + 1/2))`, as the reference kernel computes it (the
/// planned HardSwish step and a FusedConv's im2col epilogue).
@inline(__always)
func hardSwish(_ v: SIMD8<Float>) -> SIMD8<Float> { v * largest(.zero, smallest(SIMD8(repeating: 1), v / 6 + 0.5)) }

/// |v| by clearing the sign bit, as Swift.abs does.
@inline(__always)
private func magnitude(_ v: SIMD8<Float>) -> SIMD8<Float> {
    unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & 0x7FFF_FFFF, to: SIMD8<Float>.self)
}

/// Swift.max(x, y) lane by lane: `y >= x ? y : x`.
@inline(__always)
private func largest(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { x.replacing(with: y, where: y .>= x) }

/// Swift.min(x, y) lane by lane: `y < x ? y : x`.
@inline(__always)
private func smallest(_ x: SIMD8<Float>, _ y: SIMD8<Float>) -> SIMD8<Float> { x.replacing(with: y, where: y .< x) }

/// Swift.max, eight lanes or one.
enum MaxOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { Swift.max(a, b) }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { largest(a, b) }
}

/// Swift.min, eight lanes or one.
enum MinOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { Swift.min(a, b) }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { smallest(a, b) }
}
