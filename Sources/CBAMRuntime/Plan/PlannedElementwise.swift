// Planned float32 kernels for the elementwise ops that fill a CBAM network between its
// convolutions: they read and write the arena directly and may run in place (the
// planner lets an output take over an input that dies with it).

extension PlannedKernels {
    static func registerElementwise(_ table: inout [String: Builder]) {
        table["Add"] = { try binary($0, FloatOperator.add) }
        table[Passes.domain + "::AddRelu"] = { try binary($0, FloatOperator.add, relu: true) }
        table["Sub"] = { try binary($0, FloatOperator.subtract) }
        table["Mul"] = { try binary($0, FloatOperator.multiply) }
        table["Div"] = { try binary($0, FloatOperator.divide) }
        table["Relu"] = { try unary($0, detail: "relu", ReluLanes.self) }
        table["Sigmoid"] = { try unary($0, detail: "sigmoid \(VectorMath.InstructionSet.best)") { VectorMath.sigmoid($0, $1, $2) } }
    }

    /// `C = A ∘ B` with numpy broadcasting, float32: SIMD8 runs along the innermost
    /// merged axis, runs split across threads when the output is large. With `relu`
    /// (cbam::AddRelu), each run is clamped at 0 right after it is written, while it is in L1.
    private static func binary(_ context: PlanContext, _ op: FloatOperator, relu: Bool = false) throws -> PlannedKernel? {
        let a = try context.input(0, "A"), b = try context.input(1, "B"), c = try context.output(0)
        guard a.type.dataType == .float, b.type.dataType == .float, c.type.dataType == .float else { return nil }
        // In a carried layout only same-shape operands in one layout: the op then runs on the bytes as they lie.
        if a.layout != .plain || b.layout != .plain || c.layout != .plain {
            guard a.layout == c.layout, b.layout == c.layout, a.shape == c.shape, b.shape == c.shape else { return nil }
        }
        let plan = try BroadcastPlan(a.shape, b.shape)
        guard plan.outputShape == c.shape else { return nil }
        let workers = plan.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, plan.runCount)) : 1
        return PlannedKernel(detail: relu ? "simd broadcast+relu" : "simd broadcast") { memory in
            let (x, y, z) = (UnsafePointer(a.floats(memory)), UnsafePointer(b.floats(memory)), c.floats(memory))
            Parallel.forEach(workers) { worker in
                plan.forEachRun(in: Parallel.share(worker, of: workers, count: plan.runCount)) { o, ai, bi, length, aStep, bStep in
                    op.fill(z + o, length, x + ai, aStep, y + bi, bStep)
                    if relu { VectorMath.map(UnsafePointer(z + o), z + o, length, ReluLanes.apply) }
                }
            }
        }
    }

    /// `Y = F(X)` elementwise, float32, eight lanes at a time, with `F` a type so that the
    /// loop is specialised for it (a closure stays an indirect call per eight lanes: Exp over
    /// 16,384 values took 45 µs that way).
    static func unary<F: LaneFunction>(_ context: PlanContext, detail: String, _: F.Type) throws -> PlannedKernel? {
        try unaryStep(context, detail: detail) { VectorMath.map($0, $1, $2, F.apply) }
    }

    /// `Y = f(X)` elementwise, float32, eight lanes at a time (for the rarer functions).
    static func unary(_ context: PlanContext, detail: String,
                      _ lanes: @escaping (SIMD8<Float>) -> SIMD8<Float>) throws -> PlannedKernel? {
        try unaryStep(context, detail: detail) { VectorMath.map($0, $1, $2, lanes) }
    }

    /// `Y = f(X)` elementwise, float32, with `map(source, target, count)` a whole-array loop
    /// (the CPU-dispatched C loops of CVectorMath).
    static func unary(_ context: PlanContext, detail: String,
                      map: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) throws -> PlannedKernel? {
        try unaryStep(context, detail: detail, map)
    }

    /// A float32 step that applies `map(source, target, count)` to X's elements, each worker
    /// on its own contiguous share (the last share's tail is handled inside `map`).
    private static func unaryStep(_ context: PlanContext, detail: String,
                                  _ map: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) throws -> PlannedKernel? {
        let x = try context.input(0, "X"), y = try context.output(0)
        guard x.type.dataType == .float, y.type == x.type, x.layout == y.layout else { return nil }
        let count = x.count
        let workers = count >= Parallel.minimumElements ? context.threads : 1
        return PlannedKernel(detail: detail) { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            Parallel.forEach(workers) { worker in
                let share = Parallel.share(worker, of: workers, count: count)
                map(source + share.lowerBound, target + share.lowerBound, share.count)
            }
        }
    }
}

extension FloatOperator {
    /// `c[k] = a[k·aStep] ∘ b[k·bStep]` for one run (steps 0 or 1), SIMD8.
    @inline(__always)
    func fill(_ c: UnsafeMutablePointer<Float>, _ length: Int,
              _ a: UnsafePointer<Float>, _ aStep: Int, _ b: UnsafePointer<Float>, _ bStep: Int) {
        switch self {
        case .add: AddOperator.fill(c, length, a, aStep, b, bStep)
        case .subtract: SubtractOperator.fill(c, length, a, aStep, b, bStep)
        case .multiply: MultiplyOperator.fill(c, length, a, aStep, b, bStep)
        case .divide: DivideOperator.fill(c, length, a, aStep, b, bStep)
        }
    }
}

enum AddOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { a + b }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a + b }
}
enum SubtractOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { a - b }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a - b }
}
enum MultiplyOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { a * b }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a * b }
}
enum DivideOperator: FloatBinaryOperator {
    static func apply(_ a: Float, _ b: Float) -> Float { a / b }
    static func apply(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a / b }
}

/// An elementwise float function over eight lanes, as a type the planned loops specialise on.
protocol LaneFunction {
    static func apply(_ x: SIMD8<Float>) -> SIMD8<Float>
}

enum ReluLanes: LaneFunction {
    @inline(__always) static func apply(_ x: SIMD8<Float>) -> SIMD8<Float> { x.replacing(with: SIMD8<Float>.zero, where: x .< SIMD8<Float>.zero) }
}

