// Shape rules for elementwise ops (Elementwise.swift and Activations.swift):
// unary math, broadcasting arithmetic and comparisons, logic, Where, Cast, Clip.

extension ShapeInference {
    /// Element types the broadcasting arithmetic kernel computes (both operands alike).
    static let arithmeticTypes: Set<DataType> = [.float, .double, .int64, .int32, .float16, .int8, .uint8]
    /// Float activations (`unary` without an integer form).
    static let floatMathTypes: Set<DataType> = [.float, .double]
    /// Relu, Abs, Neg, Sign also take these integers.
    static let signedMathTypes: Set<DataType> = [.float, .double, .int64, .int32, .int8]
    /// Clip's element types.
    static let clipTypes: Set<DataType> = [.float, .double, .int64, .int32, .int8, .uint8]

    static func elementwiseRules() -> [String: Rule] {
        var rules: [String: Rule] = [:]
        for op in ["Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Reciprocal", "Floor", "Ceil", "Round",
                   "Softplus", "Softsign", "HardSwish", "Sin", "Cos"] {
            rules[op] = { [try unary($0, floatMathTypes)] }
        }
        for op in ["Relu", "Abs", "Neg", "Sign"] {
            rules[op] = { [try unary($0, signedMathTypes)] }
        }
        rules["LeakyRelu"] = { o in
            _ = try o.context.float("alpha", default: 0.01)
            return [try unary(o, floatMathTypes)]
        }
        rules["Elu"] = { o in
            _ = try o.context.float("alpha", default: 1)
            return [try unary(o, floatMathTypes)]
        }
        rules["HardSigmoid"] = { o in
            _ = try o.context.float("alpha", default: 0.2)
            _ = try o.context.float("beta", default: 0.5)
            return [try unary(o, floatMathTypes)]
        }
        rules["Clip"] = clip
        rules["Gelu"] = { o in
            _ = try geluApproximation(o.context)
            return [try unary(o, floatMathTypes)]
        }

        for op in ["Add", "Sub", "Mul", "Div"] {
            rules[op] = { o in [try arithmetic(try o.required(0, "A"), try o.required(1, "B"))] }
        }
        rules["Pow"] = power
        rules["Mod"] = { o in
            _ = try o.context.int("fmod", default: 0)
            return [try arithmetic(try o.required(0, "A"), try o.required(1, "B"))]
        }
        for op in ["Max", "Min", "Sum"] {
            rules[op] = { [try variadic($0)] }
        }
        rules["Mean"] = { o in
            let total = try variadic(o)
            guard floatMathTypes.contains(total.dataType) else {
                throw CBAMError(.typeMismatch, "Mean takes float tensors, not \(total.dataType)", field: "data_0")
            }
            return [total]
        }

        for op in ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"] {
            rules[op] = { o in
                let a = try o.required(0, "A"), b = try o.required(1, "B")
                guard a.dataType == b.dataType else {
                    throw CBAMError(.typeMismatch, "cannot compare \(a.dataType) with \(b.dataType)", field: "B")
                }
                return [ValueType(.bool, try broadcast(a.shape, b.shape, field: "B"))]
            }
        }
        for op in ["And", "Or", "Xor"] {
            rules[op] = { o in
                let a = try o.required(0, "A"), b = try o.required(1, "B")
                guard a.dataType == .bool, b.dataType == .bool else {
                    throw CBAMError(.typeMismatch, "logical ops take bool inputs, got \(a.dataType) and \(b.dataType)", field: a.dataType == .bool ? "B" : "A")
                }
                return [ValueType(.bool, try broadcast(a.shape, b.shape, field: "B"))]
            }
        }
        rules["Not"] = { o in
            let x = try o.required(0, "X")
            guard x.dataType == .bool else { throw CBAMError(.typeMismatch, "Not takes bool, not \(x.dataType)", field: "X") }
            return [x]
        }
        rules["Where"] = { o in
            let condition = try o.required(0, "condition")
            let x = try o.required(1, "X"), y = try o.required(2, "Y")
            guard condition.dataType == .bool else {
                throw CBAMError(.typeMismatch, "condition must be bool, not \(condition.dataType)", field: "condition")
            }
            let shape = try broadcast(try broadcast(condition.shape, x.shape, field: "X"), y.shape, field: "Y")
            guard x.dataType == y.dataType else {
                throw CBAMError(.typeMismatch, "X is \(x.dataType) but Y is \(y.dataType)", field: "Y")
            }
            return [ValueType(x.dataType, shape)]
        }

        rules["Cast"] = { o in
            let code = try o.context.intIfPresent("to") ?? 0
            guard let target = DataType(rawValue: Int32(truncatingIfNeeded: code)) else {
                throw o.context.invalid("to", "casting to \(DataType.onnxName(of: Int32(truncatingIfNeeded: code))) is not supported")
            }
            return [ValueType(target, try o.required(0, "input").shape)]
        }
        rules["CastLike"] = { o in
            let x = try o.required(0, "input"), target = try o.required(1, "target_type")
            return [ValueType(target.dataType, x.shape)]
        }
        return rules
    }

    /// A one-input elementwise op computing the types in `accepted`: same type and shape.
    static func unary(_ o: Operands, _ accepted: Set<DataType>) throws -> ValueType {
        let x = try o.required(0, "X")
        guard accepted.contains(x.dataType) else {
            throw CBAMError(.typeMismatch, "\(o.node.opType) takes \(describe(accepted)), not \(x.dataType)", field: "X")
        }
        return x
    }

    /// A broadcasting arithmetic op: both operands of one numeric type (checked first, as
    /// the kernel switches on the types before it broadcasts).
    static func arithmetic(_ a: ValueType, _ b: ValueType, field: String = "B") throws -> ValueType {
        guard a.dataType == b.dataType, arithmeticTypes.contains(a.dataType) else {
            throw CBAMError(.typeMismatch, "inputs must have the same numeric type (\(describe(arithmeticTypes))), got \(a.dataType) and \(b.dataType)", field: field)
        }
        return ValueType(a.dataType, try broadcast(a.shape, b.shape, field: field))
    }

    /// Max, Min, Sum (and Mean before its type check): the present inputs folded left to
    /// right; a single input passes through whatever its type.
    static func variadic(_ o: Operands) throws -> ValueType {
        let present = (0..<max(o.types.count, o.node.inputs.count)).compactMap { o.optional($0) }
        guard var result = present.first else {
            throw CBAMError(.missingInput, "the op needs at least one input", field: "data_0")
        }
        for (offset, next) in present.enumerated().dropFirst() {
            result = try arithmetic(result, next, field: "data_\(offset)")
        }
        return result
    }

    /// Pow: float32, float64, int64 and int32 bases, any numeric exponent; the base's type.
    static func power(_ o: Operands) throws -> [ValueType] {
        let x = try o.required(0, "X"), y = try o.required(1, "Y")
        guard [.float, .double, .int64, .int32].contains(x.dataType) else {
            throw CBAMError(.typeMismatch, "Pow does not take \(x.dataType) bases", field: "X")
        }
        return [ValueType(x.dataType, try broadcast(x.shape, y.shape, field: "Y"))]
    }

    /// Clip: bounds are attributes before opset 11 and optional one-element inputs from 11.
    static func clip(_ o: Operands) throws -> [ValueType] {
        _ = try o.context.float("min", default: -.infinity)
        _ = try o.context.float("max", default: .infinity)
        let x = try o.required(0, "input")
        if o.opset >= 11 {
            for (index, name) in [(1, "min"), (2, "max")] {
                if let bound = o.optional(index), bound.count != 1 {
                    throw CBAMError(.shapeMismatch, "Clip bound must be a scalar, got shape \(Shape.describe(bound.shape))", field: name)
                }
            }
        }
        guard clipTypes.contains(x.dataType) else {
            throw CBAMError(.typeMismatch, "Clip does not take \(x.dataType)", field: "input")
        }
        return [x]
    }

    /// "float32, float64 or int64" style, in DataType order.
    static func describe(_ types: Set<DataType>) -> String {
        let names = DataType.allCases.filter(types.contains).map(\.description)
        guard names.count > 1 else { return names.first ?? "nothing" }
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }
}
