import Foundation

// Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9), float32 data of
// any rank: X `[d0, …, d(r-1)]` → Y `[o0, …, o(r-1)]`, where each `oi` comes from
// `scales` (`floor(di · scale)`) or `sizes`, and axes whose size and scale are 1
// are copied through.
//
// The interpolation is separable, as in the ONNX reference implementation: along
// each resized axis, every output index gets a short list of (input index, weight)
// taps; the axes are then resized one after another, in float64, and the result
// is rounded to float32 once.

extension OpRegistry {
    mutating func registerResize() {
        register("Resize") { context in try ResizeKernel(resize: context).kernel() }
        register("Upsample") { context in try ResizeKernel(upsample: context).kernel() }
    }
}

/// A parsed Resize / Upsample node.
///
/// Inputs by opset: Upsample-7 `X` (scales is an attribute); Upsample-9 and
/// Resize-10 `X, scales`; Resize-11+ `X, roi, scales, sizes` where `roi` and one of
/// `scales` / `sizes` may be omitted or empty. `roi` is `[start1, …, startN, end1,
/// …, endN]` (N = rank, or the length of `axes`) and is only read by
/// `tf_crop_and_resize`.
struct ResizeKernel {
    enum Mode { case nearest, linear, cubic }

    /// How `nearest` turns a source coordinate into an input index. `legacy` is
    /// Resize-10 / Upsample: floor when upsampling, ceil when downsampling (as
    /// ONNX Runtime does for those opsets).
    enum NearestRounding: String {
        case roundPreferFloor = "round_prefer_floor", roundPreferCeil = "round_prefer_ceil"
        case floor, ceil
        case legacy
    }

    enum CoordinateMode: String {
        case halfPixel = "half_pixel", halfPixelSymmetric = "half_pixel_symmetric"
        case pytorchHalfPixel = "pytorch_half_pixel", alignCorners = "align_corners"
        case asymmetric, tfCropAndResize = "tf_crop_and_resize"
        case tfHalfPixelForNN = "tf_half_pixel_for_nn"  // Resize-11 only
    }

    enum AspectPolicy: String { case stretch, notLarger = "not_larger", notSmaller = "not_smaller" }

    var mode: Mode = .nearest
    var nearest: NearestRounding = .roundPreferFloor
    var coordinates: CoordinateMode = .halfPixel
    var cubicA: Double = -0.75
    var excludeOutside = false
    var extrapolation: Double = 0
    var antialias = false
    /// The `axes` attribute as written (normalized against the rank at run time).
    var axes: [Int]?
    var policy: AspectPolicy = .stretch
    /// Input positions; nil when the opset has no such input.
    var roiInput: Int?
    var scalesInput: Int?
    var sizesInput: Int?
    /// Upsample-7's `scales` attribute.
    var attributeScales: [Float]?

    init(resize context: NodeContext) throws {
        let modeName = try context.string("mode", default: "nearest")
        switch modeName {
        case "nearest": mode = .nearest
        case "linear", "bilinear": mode = .linear
        case "cubic" where context.opset >= 11: mode = .cubic
        default: throw context.invalid("mode", "unknown mode \"\(modeName)\"")
        }
        guard context.opset >= 11 else {
            // Resize-10: X, scales; asymmetric coordinates, legacy nearest rounding.
            coordinates = .asymmetric
            nearest = .legacy
            scalesInput = 1
            return
        }
        roiInput = 1
        scalesInput = 2
        sizesInput = 3
        let nearestName = try context.string("nearest_mode", default: "round_prefer_floor")
        guard let rounding = NearestRounding(rawValue: nearestName), rounding != .legacy else {
            throw context.invalid("nearest_mode", "unknown nearest mode \"\(nearestName)\"")
        }
        nearest = rounding
        let coordinateName = try context.string("coordinate_transformation_mode", default: "half_pixel")
        guard let coordinateMode = CoordinateMode(rawValue: coordinateName) else {
            throw context.invalid("coordinate_transformation_mode", "unknown mode \"\(coordinateName)\"")
        }
        coordinates = coordinateMode
        let a = try context.float("cubic_coeff_a", default: -0.75)
        guard a.isFinite else { throw context.invalid("cubic_coeff_a", "must be finite, got \(a)") }
        cubicA = Double(a)
        excludeOutside = try context.int("exclude_outside", default: 0) != 0
        extrapolation = Double(try context.float("extrapolation_value", default: 0))
        // Antialiasing only changes linear and cubic filters; nearest ignores it.
        antialias = try context.int("antialias", default: 0) != 0 && mode != .nearest
        axes = try context.ints("axes")
        let policyName = try context.string("keep_aspect_ratio_policy", default: "stretch")
        guard let aspect = AspectPolicy(rawValue: policyName) else {
            throw context.invalid("keep_aspect_ratio_policy", "unknown policy \"\(policyName)\"")
        }
        policy = aspect
    }

    init(upsample context: NodeContext) throws {
        let modeName = try context.string("mode", default: "nearest")
        switch modeName {
        case "nearest": mode = .nearest
        case "linear", "bilinear": mode = .linear
        default: throw context.invalid("mode", "unknown mode \"\(modeName)\"")
        }
        coordinates = .asymmetric
        nearest = .legacy
        if context.opset < 9 {
            guard let scales = try context.floats("scales") else {
                throw context.invalid("scales", "Upsample-\(context.opset) needs a scales attribute")
            }
            attributeScales = scales
        } else {
            scalesInput = 1
        }
    }

    func kernel() -> Kernel {
        Kernel.single { inputs in try run(inputs) }
    }

    // MARK: Output shape and per-axis scales

    /// Input `index` when present and non-empty (Resize-11/13 write an omitted
    /// `roi` or `scales` as an empty tensor).
    private func optionalInput(_ inputs: [Tensor?], _ index: Int?) -> Tensor? {
        guard let index, index < inputs.count, let tensor = inputs[index], tensor.count > 0 else { return nil }
        return tensor
    }

    /// A float input (scales, roi) as float64 values.
    private func realValues(_ tensor: Tensor, _ what: String) throws -> [Double] {
        switch tensor.storage {
        case .float(let v): return v.map { Double($0) }
        case .double(let v): return v
        default: throw CBAMError(.typeMismatch, "\(what) must be floating point but is \(tensor.dataType)", field: what)
        }
    }

    /// The plan for one run: output shape, the scale used for coordinates, and the
    /// roi per axis (`nil` when not cropping).
    struct Plan {
        var outputShape: [Int]
        var scales: [Double]
        var roi: [(start: Double, end: Double)]?
        /// Whether roi arithmetic rounds to float32 (a float32 roi, as in the reference).
        var roiIsFloat32: Bool
        /// Axes to resize, in the order they are processed.
        var axes: [Int]
    }

    func plan(_ inputs: [Tensor?], inputShape shape: [Int]) throws -> Plan {
        let rank = shape.count
        let resized: [Int]
        if let axes {
            resized = try axes.map { try Shape.normalizeAxis($0, rank: rank, what: "axes entry") }
            guard Set(resized).count == resized.count else {
                throw CBAMError(.invalidAttribute, "axes \(axes) repeats an axis", field: "attribute \"axes\"")
            }
        } else {
            resized = Array(0..<rank)
        }

        let scalesTensor = optionalInput(inputs, scalesInput)
        let sizesTensor = optionalInput(inputs, sizesInput)
        let givenScales = try attributeScales.map { $0.map(Double.init) } ?? scalesTensor.map { try realValues($0, "scales") }
        let givenSizes = try sizesTensor.map { try $0.integers("sizes") }
        if givenScales != nil && givenSizes != nil {
            throw CBAMError(.invalidShape, "only one of scales and sizes may be given")
        }
        if givenScales == nil && givenSizes == nil && !resized.isEmpty {
            throw CBAMError(.missingInput, "one of scales and sizes must be given")
        }

        var outputShape = shape
        var scales = [Double](repeating: 1, count: rank)
        if let values = givenScales {
            guard values.count == resized.count else {
                throw CBAMError(.shapeMismatch, "scales has \(values.count) elements but \(resized.count) axes are resized", field: "scales")
            }
            for (i, axis) in resized.enumerated() {
                let scale = values[i]
                guard scale.isFinite, scale > 0 else {
                    throw CBAMError(.invalidShape, "scale \(scale) for axis \(axis) must be finite and positive", field: "scales")
                }
                let size = (scale * Double(shape[axis])).rounded(.down)
                guard size < Double(Shape.maxElementCount) else {
                    throw CBAMError(.invalidShape, "scale \(scale) makes axis \(axis) longer than 2^30", field: "scales")
                }
                scales[axis] = scale
                outputShape[axis] = Int(size)
            }
        } else if let sizes = givenSizes {
            guard sizes.count == resized.count else {
                throw CBAMError(.shapeMismatch, "sizes has \(sizes.count) elements but \(resized.count) axes are resized", field: "sizes")
            }
            for (i, axis) in resized.enumerated() {
                guard sizes[i] >= 0 else {
                    throw CBAMError(.invalidShape, "size \(sizes[i]) for axis \(axis) is negative", field: "sizes")
                }
                guard shape[axis] > 0 || sizes[i] == 0 else {
                    throw CBAMError(.shapeMismatch, "axis \(axis) of X is empty but size \(sizes[i]) is asked for", field: "sizes")
                }
                outputShape[axis] = sizes[i]
                scales[axis] = shape[axis] > 0 ? Double(sizes[i]) / Double(shape[axis]) : 1
            }
            if policy != .stretch {
                let candidates = resized.filter { shape[$0] > 0 }.map { scales[$0] }
                if let scale = policy == .notLarger ? candidates.min() : candidates.max() {
                    for axis in resized {
                        // round_int: halfway cases up.
                        let size = (scale * Double(shape[axis]) + 0.5).rounded(.down)
                        guard size < Double(Shape.maxElementCount) else {
                            throw CBAMError(.invalidShape, "sizes make axis \(axis) longer than 2^30", field: "sizes")
                        }
                        scales[axis] = scale
                        outputShape[axis] = Int(size)
                    }
                }
            }
        }
        _ = try Shape.elementCount(outputShape)

        var roi: [(start: Double, end: Double)]?
        var roiIsFloat32 = false
        if coordinates == .tfCropAndResize {
            var full = [(start: Double, end: Double)](repeating: (0, 1), count: rank)
            if let tensor = optionalInput(inputs, roiInput) {
                if case .float = tensor.storage { roiIsFloat32 = true }
                let values = try realValues(tensor, "roi")
                guard values.count == 2 * resized.count else {
                    throw CBAMError(.shapeMismatch, "roi has \(values.count) elements but needs \(2 * resized.count) (start and end per resized axis)", field: "roi")
                }
                for (i, axis) in resized.enumerated() {
                    let (start, end) = (values[i], values[resized.count + i])
                    guard start.isFinite, end.isFinite else {
                        throw CBAMError(.invalidShape, "roi for axis \(axis) is not finite", field: "roi")
                    }
                    full[axis] = (start, end)
                }
            }
            roi = full
        }
        // Shrinking axes first keeps the intermediate tensors (and the work) small;
        // the order only changes float64 rounding.
        let order = resized.sorted { a, b in
            let (ra, rb) = (Double(outputShape[a]) / Double(Swift.max(shape[a], 1)),
                            Double(outputShape[b]) / Double(Swift.max(shape[b], 1)))
            return ra != rb ? ra < rb : a < b
        }
        return Plan(outputShape: outputShape, scales: scales, roi: roi, roiIsFloat32: roiIsFloat32, axes: order)
    }

    // MARK: Taps

    /// The taps of one axis: output index `o` reads `indices[o*taps + k]` with
    /// weight `weights[o*taps + k]`; `extrapolated[o]` outputs are the
    /// extrapolation value instead.
    struct AxisTaps {
        var taps: Int
        var indices: [Int]
        var weights: [Double]
        var extrapolated: [Bool]
    }

    /// The source coordinate of output index `o` (ONNX reference formulas; the
    /// fractional `outputWidth = scale · inputWidth` is used where the reference uses it).
    private func sourceCoordinate(_ o: Int, scale: Double, input: Int, outputInt: Int,
                                  roi: (start: Double, end: Double)?, roiIsFloat32: Bool) -> Double {
        let y = Double(o)
        let inputWidth = Double(input)
        let outputWidth = scale * inputWidth
        switch coordinates {
        case .alignCorners:
            return outputWidth == 1 ? 0 : y * (inputWidth - 1) / (outputWidth - 1)
        case .asymmetric:
            return y / scale
        case .tfCropAndResize:
            let (start, end) = roi ?? (0, 1)
            // The reference computes roi terms in the roi's precision (float32 for a float roi).
            if roiIsFloat32 {
                let span = Float(end) - Float(start), last = Float(input - 1)
                let x = outputWidth == 1 ? Double(span * last / 2) : y * Double(span) * (inputWidth - 1) / (outputWidth - 1)
                return x + Double(Float(start) * last)
            }
            let x = outputWidth == 1 ? (end - start) * (inputWidth - 1) / 2 : y * (end - start) * (inputWidth - 1) / (outputWidth - 1)
            return x + start * (inputWidth - 1)
        case .pytorchHalfPixel:
            // The spec text says 0 for a single output; the reference (which the
            // conformance data comes from) uses -0.5. They differ only for cubic.
            return outputWidth == 1 ? -0.5 : (y + 0.5) / scale - 0.5
        case .halfPixel:
            return (y + 0.5) / scale - 0.5
        case .halfPixelSymmetric:
            let adjustment = Double(outputInt) / outputWidth
            let offset = inputWidth / 2 * (1 - adjustment)
            return offset + (y + 0.5) / scale - 0.5
        case .tfHalfPixelForNN:
            return (y + 0.5) / scale
        }
    }

    /// Filter weights for a source coordinate at `ratio` ∈ (0, 1] past tap base
    /// `b` (taps sit at `b + first + k`); returns `first` and the weights.
    private func filter(ratio: Double, scale: Double, downsampling: Bool) -> (first: Int, weights: [Double]) {
        switch mode {
        case .nearest:
            let pickUpper: Bool
            if ratio == 1 {
                pickUpper = true  // the coordinate is an integer: b + 1 is it
            } else {
                switch nearest {
                case .roundPreferFloor: pickUpper = ratio > 0.5
                case .roundPreferCeil: pickUpper = ratio >= 0.5
                case .floor: pickUpper = false
                case .ceil: pickUpper = true
                case .legacy: pickUpper = downsampling
                }
            }
            return (pickUpper ? 1 : 0, [1])
        case .linear:
            guard antialias else { return (0, [1 - ratio, ratio]) }
            let s = Swift.min(scale, 1)
            let start = Int((-1 / s).rounded(.down)) + 1
            let footprint = 2 - 2 * start
            var weights = (0..<footprint).map { k in
                Swift.min(Swift.max(1 - Swift.abs((Double(start + k) - ratio) * s), 0), 1)
            }
            normalize(&weights)
            return (start, weights)
        case .cubic:
            let a = cubicA
            guard antialias else {
                let r1 = ratio + 1, q = 1 - ratio, q1 = q + 1
                return (-1, [
                    ((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a,
                    ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
                    ((a + 2) * q - (a + 3)) * q * q + 1,
                    ((a * q1 - 5 * a) * q1 + 8 * a) * q1 - 4 * a,
                ])
            }
            let s = Swift.min(scale, 1)
            let start = Int((-2 / s).rounded(.down)) + 1
            let count = 2 - 2 * start
            var weights = (0..<count).map { k -> Double in
                let x = Swift.abs(s * (Double(start + k) - ratio))
                let x2 = x * x, x3 = x * x2
                if x <= 1 { return (a + 2) * x3 - (a + 3) * x2 + 1 }
                if x < 2 { return a * x3 - 5 * a * x2 + 8 * a * x - 4 * a }
                return 0
            }
            normalize(&weights)
            return (start, weights)
        }
    }

    private func normalize(_ weights: inout [Double]) {
        let sum = weights.reduce(0, +)
        guard sum != 0, sum.isFinite else { return }
        for k in weights.indices { weights[k] /= sum }
    }

    /// The number of taps per output index for `scale` (antialiased filters widen
    /// with 1/scale); checked so that the tap table stays within bounds.
    private func tapCount(scale: Double, outputs: Int) throws -> Int {
        let count: Int
        switch mode {
        case .nearest: count = 1
        case .linear, .cubic:
            if antialias && scale < 1 {
                let reach = (mode == .linear ? 1 : 2) / scale
                guard reach.isFinite, reach < Double(Shape.maxElementCount) else {
                    throw CBAMError(.invalidShape, "scale \(scale) is too small to antialias", field: "scales")
                }
                count = 2 - 2 * (Int((-reach).rounded(.down)) + 1)
            } else {
                count = mode == .linear ? 2 : 4
            }
        }
        let (total, overflow) = count.multipliedReportingOverflow(by: outputs)
        guard !overflow, total <= Shape.maxElementCount else {
            throw CBAMError(.invalidShape, "resizing to \(outputs) with scale \(scale) needs too many filter taps", field: "scales")
        }
        return count
    }

    func axisTaps(input: Int, output: Int, scale: Double, roi: (start: Double, end: Double)?,
                  roiIsFloat32: Bool = false) throws -> AxisTaps {
        let taps = try tapCount(scale: scale, outputs: output)
        var result = AxisTaps(taps: taps, indices: [Int](repeating: 0, count: output * taps),
                              weights: [Double](repeating: 0, count: output * taps),
                              extrapolated: [Bool](repeating: false, count: output))
        guard input > 0 else {
            guard output == 0 else { throw CBAMError(.shapeMismatch, "cannot resize an empty axis to \(output)") }
            return result
        }
        // Coordinates this far out only ever read the edge; the bound keeps Int conversions safe.
        let bound = Double(input) + Double(taps) + 4
        for o in 0..<output {
            let x = sourceCoordinate(o, scale: scale, input: input, outputInt: output, roi: roi, roiIsFloat32: roiIsFloat32)
            if coordinates == .tfCropAndResize, !(x >= 0 && x <= Double(input - 1)) {
                result.extrapolated[o] = true
                continue
            }
            guard x.isFinite else {
                throw CBAMError(.invalidShape, "source coordinate of output \(o) is not finite (scale \(scale))")
            }
            // Tap base b with ratio = x - b in (0, 1]: b = floor(x), or x - 1 when x is an integer.
            let clamped = Swift.min(Swift.max(x, -bound), bound)
            let floorX = clamped.rounded(.down)
            let base = floorX == clamped ? Int(floorX) - 1 : Int(floorX)
            let ratio = clamped - Double(base)
            let (first, weights) = filter(ratio: ratio, scale: scale, downsampling: scale < 1)
            var row = weights
            if excludeOutside {
                for k in row.indices where !(0..<input).contains(base + first + k) { row[k] = 0 }
                normalize(&row)
            }
            for k in 0..<Swift.min(row.count, taps) {
                let index = base + first + k
                result.indices[o * taps + k] = Swift.min(Swift.max(index, 0), input - 1)
                result.weights[o * taps + k] = row[k]
            }
        }
        return result
    }

    // MARK: Run

    func run(_ inputs: [Tensor?]) throws -> Tensor {
        let x = try required(inputs, 0, "X")
        let values = try x.floats("X")
        let plan = try plan(inputs, inputShape: x.shape)
        let outputCount = try Shape.elementCount(plan.outputShape)
        if outputCount == 0 { return .float(plan.outputShape, []) }

        var shape = x.shape
        var data = values.map { Double($0) }
        for axis in plan.axes {
            let input = shape[axis], output = plan.outputShape[axis]
            let scale = plan.scales[axis]
            let roi = plan.roi?[axis]
            let trivialRoi = roi.map { Swift.abs($0.start) <= 1e-9 && Swift.abs($0.end - 1) <= 1e-9 } ?? true
            if Swift.abs(scale - 1) <= 1e-9 * Swift.max(1, Swift.abs(scale)), output == input, trivialRoi { continue }
            let taps = try axisTaps(input: input, output: output, scale: scale, roi: roi, roiIsFloat32: plan.roiIsFloat32)
            var next = shape
            next[axis] = output
            _ = try Shape.elementCount(next)
            data = apply(taps, to: data, shape: shape, axis: axis, output: output)
            shape = next
        }
        return .float(shape, data.map { Float($0) })
    }

    /// Resizes `data` (`shape`, row-major) along `axis` to `output` entries.
    private func apply(_ taps: AxisTaps, to data: [Double], shape: [Int], axis: Int, output: Int) -> [Double] {
        let outer = shape[..<axis].reduce(1, *)
        let inner = shape[(axis + 1)...].reduce(1, *)
        let input = shape[axis]
        var result = [Double](repeating: 0, count: outer * output * inner)
        let n = taps.taps
        data.withUnsafeBufferPointer { src in
            result.withUnsafeMutableBufferPointer { dst in
                for block in 0..<outer {
                    let srcBase = block * input * inner
                    let dstBase = block * output * inner
                    for o in 0..<output {
                        let target = dstBase + o * inner
                        if taps.extrapolated[o] {
                            for i in 0..<inner { dst[target + i] = extrapolation }
                            continue
                        }
                        for k in 0..<n {
                            let weight = taps.weights[o * n + k]
                            let source = srcBase + taps.indices[o * n + k] * inner
                            if n == 1 {
                                for i in 0..<inner { dst[target + i] = src[source + i] }
                            } else {
                                for i in 0..<inner { dst[target + i] += weight * src[source + i] }
                            }
                        }
                    }
                }
            }
        }
        return result
    }
}
