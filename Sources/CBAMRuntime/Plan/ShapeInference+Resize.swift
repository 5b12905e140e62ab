// Shape rules for Resize (opsets 10–19) and Upsample (7, 9) (Resize.swift): float32 X
// of any rank; each resized axis becomes ⌊size · scale⌋ or the given size (adjusted by
// keep_aspect_ratio_policy); the other axes are copied.

extension ShapeInference {
    static func resizeRules() -> [String: Rule] {
        ["Resize": resize, "Upsample": upsample]
    }

    /// The attributes and input positions of a Resize / Upsample node.
    private struct ResizeForm {
        /// Filter reach in input pixels: 0 nearest, 1 linear, 2 cubic.
        var reach = 0
        var cropAndResize = false
        var antialias = false
        var axes: [Int]?
        var policy = "stretch"
        var roiInput: Int?
        var scalesInput: Int?
        var sizesInput: Int?
        var attributeScales: [Float]?
    }

    static func resize(_ o: Operands) throws -> [ValueType] {
        let context = o.context
        var form = ResizeForm()
        let mode = try context.string("mode", default: "nearest")
        switch mode {
        case "nearest": break
        case "linear", "bilinear": form.reach = 1
        case "cubic" where context.opset >= 11: form.reach = 2
        default: throw context.invalid("mode", "unknown mode \"\(mode)\"")
        }
        if context.opset < 11 {
            // Resize-10: X, scales.
            form.scalesInput = 1
        } else {
            (form.roiInput, form.scalesInput, form.sizesInput) = (1, 2, 3)
            let nearest = try context.string("nearest_mode", default: "round_prefer_floor")
            guard ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"].contains(nearest) else {
                throw context.invalid("nearest_mode", "unknown nearest mode \"\(nearest)\"")
            }
            let coordinates = try context.string("coordinate_transformation_mode", default: "half_pixel")
            guard ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                   "tf_crop_and_resize", "tf_half_pixel_for_nn"].contains(coordinates) else {
                throw context.invalid("coordinate_transformation_mode", "unknown mode \"\(coordinates)\"")
            }
            form.cropAndResize = coordinates == "tf_crop_and_resize"
            let a = try context.float("cubic_coeff_a", default: -0.75)
            guard a.isFinite else { throw context.invalid("cubic_coeff_a", "must be finite, got \(a)") }
            _ = try context.int("exclude_outside", default: 0)
            _ = try context.float("extrapolation_value", default: 0)
            // Antialiasing widens only the linear and cubic filters.
            form.antialias = try context.int("antialias", default: 0) != 0 && form.reach > 0
            form.axes = try context.ints("axes")
            form.policy = try context.string("keep_aspect_ratio_policy", default: "stretch")
            guard ["stretch", "not_larger", "not_smaller"].contains(form.policy) else {
                throw context.invalid("keep_aspect_ratio_policy", "unknown policy \"\(form.policy)\"")
            }
        }
        return [try resized(o, form)]
    }

    static func upsample(_ o: Operands) throws -> [ValueType] {
        let context = o.context
        var form = ResizeForm()
        let mode = try context.string("mode", default: "nearest")
        switch mode {
        case "nearest": break
        case "linear", "bilinear": form.reach = 1
        default: throw context.invalid("mode", "unknown mode \"\(mode)\"")
        }
        if context.opset < 9 {
            guard let scales = try context.floats("scales") else {
                throw context.invalid("scales", "Upsample-\(context.opset) needs a scales attribute")
            }
            form.attributeScales = scales
        } else {
            form.scalesInput = 1
        }
        return [try resized(o, form)]
    }

    /// Input `index` when present and not empty (an omitted roi or scales may be written as
    /// an empty tensor, whose value is then not needed).
    private static func given(_ o: Operands, _ index: Int?) -> ValueType? {
        guard let index, let type = o.optional(index), type.count > 0 else { return nil }
        return type
    }

    /// The float values of a scales or roi input (float32 or float64).
    private static func reals(_ o: Operands, _ index: Int, _ name: String) throws -> [Double] {
        let type = try o.required(index, name)
        guard type.dataType == .float || type.dataType == .double else {
            throw CBAMError(.typeMismatch, "\(name) must be floating point but is \(type.dataType)", field: name)
        }
        let tensor = try o.value(index, name)!
        return tensor.doubles()
    }

    private static func resized(_ o: Operands, _ form: ResizeForm) throws -> ValueType {
        let x = try o.required(0, "X")
        try requireFloat(x, "X")
        let shape = x.shape, rank = x.rank
        let axes: [Int]
        if let given = form.axes {
            axes = try given.map { try axis($0, rank: rank, field: attribute("axes"), what: "axes entry") }
            guard Set(axes).count == axes.count else {
                throw CBAMError(.invalidAttribute, "axes \(given) repeats an axis", field: attribute("axes"))
            }
        } else {
            axes = Array(0..<rank)
        }
        let scalesInput = given(o, form.scalesInput), sizesInput = given(o, form.sizesInput)
        var scales: [Double]? = form.attributeScales.map { $0.map(Double.init) }
        if scales == nil, scalesInput != nil { scales = try reals(o, form.scalesInput!, "scales") }
        var sizes: [Int]? = nil
        if sizesInput != nil { sizes = try o.integers(form.sizesInput!, "sizes") }
        if scales != nil && sizes != nil {
            throw CBAMError(.invalidShape, "only one of scales and sizes may be given", field: "sizes")
        }
        if scales == nil && sizes == nil && !axes.isEmpty {
            throw CBAMError(.missingInput, "one of scales and sizes must be given", field: "scales")
        }

        var output = shape
        var axisScales = [Double](repeating: 1, count: rank)
        if let scales {
            guard scales.count == axes.count else {
                throw CBAMError(.shapeMismatch, "scales has \(scales.count) elements but \(axes.count) axes are resized", field: "scales")
            }
            for (i, axis) in axes.enumerated() {
                let scale = scales[i]
                guard scale.isFinite, scale > 0 else {
                    throw CBAMError(.invalidShape, "scale \(scale) for axis \(axis) must be finite and positive", field: "scales")
                }
                let size = (scale * Double(shape[axis])).rounded(.down)
                guard size < Double(Shape.maxElementCount) else {
                    throw CBAMError(.invalidShape, "scale \(scale) makes axis \(axis) longer than 2^30", field: "scales")
                }
                axisScales[axis] = scale
                output[axis] = Int(size)
            }
        } else if let sizes {
            guard sizes.count == axes.count else {
                throw CBAMError(.shapeMismatch, "sizes has \(sizes.count) elements but \(axes.count) axes are resized", field: "sizes")
            }
            for (i, axis) in axes.enumerated() {
                guard sizes[i] >= 0 else {
                    throw CBAMError(.invalidShape, "size \(sizes[i]) for axis \(axis) is negative", field: "sizes")
                }
                guard shape[axis] > 0 || sizes[i] == 0 else {
                    throw CBAMError(.shapeMismatch, "axis \(axis) of X is empty but size \(sizes[i]) is asked for", field: "sizes")
                }
                output[axis] = sizes[i]
                axisScales[axis] = shape[axis] > 0 ? Double(sizes[i]) / Double(shape[axis]) : 1
            }
            if form.policy != "stretch" {
                // One scale for every resized axis: the smallest (not_larger) or the largest
                // (not_smaller), each size rounded half up.
                let candidates = axes.filter { shape[$0] > 0 }.map { axisScales[$0] }
                if let scale = form.policy == "not_larger" ? candidates.min() : candidates.max() {
                    for axis in axes {
                        let size = (scale * Double(shape[axis]) + 0.5).rounded(.down)
                        guard size < Double(Shape.maxElementCount) else {
                            throw CBAMError(.invalidShape, "sizes make axis \(axis) longer than 2^30", field: "sizes")
                        }
                        axisScales[axis] = scale
                        output[axis] = Int(size)
                    }
                }
            }
        }
        try count(output, field: sizes != nil ? "sizes" : "scales")

        var roi: [(start: Double, end: Double)]? = nil
        if form.cropAndResize {
            var full = [(start: Double, end: Double)](repeating: (0, 1), count: rank)
            if given(o, form.roiInput) != nil {
                let values = try reals(o, form.roiInput!, "roi")
                guard values.count == 2 * axes.count else {
                    throw CBAMError(.shapeMismatch, "roi has \(values.count) elements but needs \(2 * axes.count) (start and end per resized axis)", field: "roi")
                }
                for (i, axis) in axes.enumerated() {
                    let (start, end) = (values[i], values[axes.count + i])
                    guard start.isFinite, end.isFinite else {
                        throw CBAMError(.invalidShape, "roi for axis \(axis) is not finite", field: "roi")
                    }
                    full[axis] = (start, end)
                }
            }
            roi = full
        }

        // The kernel builds a table of filter taps for each axis it resizes (an axis
        // with scale 1, the same size and a trivial roi is copied): taps · outputs ≤ 2^30.
        if try count(output, field: "scales") > 0 {
            for axis in axes {
                let scale = axisScales[axis]
                let trivialRoi = roi.map { abs($0[axis].start) <= 1e-9 && abs($0[axis].end - 1) <= 1e-9 } ?? true
                if abs(scale - 1) <= 1e-9 * max(1, abs(scale)), output[axis] == shape[axis], trivialRoi { continue }
                var taps = 1
                if form.reach > 0 {
                    if form.antialias && scale < 1 {
                        let span = Double(form.reach) / scale
                        guard span.isFinite, span < Double(Shape.maxElementCount) else {
                            throw CBAMError(.invalidShape, "scale \(scale) is too small to antialias", field: "scales")
                        }
                        taps = 2 - 2 * (Int((-span).rounded(.down)) + 1)
                    } else {
                        taps = 2 * form.reach
                    }
                }
                let (total, overflow) = taps.multipliedReportingOverflow(by: output[axis])
                guard !overflow, total <= Shape.maxElementCount else {
                    throw CBAMError(.invalidShape, "resizing to \(output[axis]) with scale \(scale) needs too many filter taps", field: "scales")
                }
            }
        }
        return ValueType(.float, output)
    }
}
