/// The window attributes shared by Conv, ConvTranspose and the pooling ops:
/// kernel size, strides, dilations, pads and auto_pad, for `rank` spatial axes.
///
/// Pads are stored ONNX-style: `[x1_begin, x2_begin, …, x1_end, x2_end, …]`.
struct SpatialGeometry {
    enum AutoPad: String { case notSet = "NOTSET", sameUpper = "SAME_UPPER", sameLower = "SAME_LOWER", valid = "VALID" }

    var kernel: [Int]
    var strides: [Int]
    var dilations: [Int]
    var pads: [Int]
    var autoPad: AutoPad
    var ceilMode: Bool

    var rank: Int { kernel.count }

    /// Reads the attributes; `kernel` is the kernel size when it comes from a weight
    /// tensor (Conv) rather than from `kernel_shape` (pooling).
    init(_ context: NodeContext, kernel fromWeight: [Int]?) throws {
        if let shape = try context.ints("kernel_shape") {
            kernel = shape
        } else if let fromWeight {
            kernel = fromWeight
        } else {
            throw context.invalid("kernel_shape", "is required")
        }
        let rank = kernel.count
        strides = try context.ints("strides") ?? Array(repeating: 1, count: rank)
        dilations = try context.ints("dilations") ?? Array(repeating: 1, count: rank)
        pads = try context.ints("pads") ?? Array(repeating: 0, count: 2 * rank)
        let autoPadName = try context.string("auto_pad", default: "NOTSET")
        guard let autoPad = AutoPad(rawValue: autoPadName) else {
            throw context.invalid("auto_pad", "\"\(autoPadName)\" is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
        }
        self.autoPad = autoPad
        ceilMode = try context.int("ceil_mode", default: 0) != 0
        guard kernel.allSatisfy({ $0 > 0 }) else { throw context.invalid("kernel_shape", "must be positive, got \(kernel)") }
        guard strides.count == rank, strides.allSatisfy({ $0 > 0 }) else { throw context.invalid("strides", "must be \(rank) positive values, got \(strides)") }
        guard dilations.count == rank, dilations.allSatisfy({ $0 > 0 }) else { throw context.invalid("dilations", "must be \(rank) positive values, got \(dilations)") }
        guard pads.count == 2 * rank, pads.allSatisfy({ $0 >= 0 }) else { throw context.invalid("pads", "must be \(2 * rank) non-negative values, got \(pads)") }
        // Every later product (window extent, padded size) stays far from overflow.
        let limit = 1 << 24
        guard (kernel + strides + dilations + pads).allSatisfy({ $0 < limit }) else {
            throw context.invalid("kernel_shape", "window attributes past 2^24 are not supported")
        }
    }

    /// Output spatial size for `input` spatial size, and the begin/end pads actually
    /// applied (auto_pad resolved). Throws when the window does not fit.
    func resolve(input: [Int]) throws -> (output: [Int], padBegin: [Int], padEnd: [Int]) {
        guard input.count == rank else {
            throw CBAMError(.shapeMismatch, "the input has \(input.count) spatial axes but the window has \(rank)")
        }
        var output = [Int](), begin = [Int](), end = [Int]()
        for axis in 0..<rank {
            let extent = dilations[axis] * (kernel[axis] - 1) + 1
            var b = pads[axis], e = pads[axis + rank]
            var size: Int
            switch autoPad {
            case .notSet:
                let span = input[axis] + b + e - extent
                guard span >= 0 else {
                    throw CBAMError(.shapeMismatch, "the window (extent \(extent)) is larger than the padded input (\(input[axis] + b + e)) on spatial axis \(axis)")
                }
                size = (ceilMode ? (span + strides[axis] - 1) / strides[axis] : span / strides[axis]) + 1
                // With ceil_mode, a last window starting in the end padding is dropped (as PyTorch and ONNX do).
                if ceilMode, (size - 1) * strides[axis] >= input[axis] + b { size -= 1 }
            case .valid:
                b = 0; e = 0
                guard input[axis] >= extent else {
                    throw CBAMError(.shapeMismatch, "the window (extent \(extent)) is larger than the input (\(input[axis])) on spatial axis \(axis)")
                }
                size = (input[axis] - extent) / strides[axis] + 1
            case .sameUpper, .sameLower:
                size = (input[axis] + strides[axis] - 1) / strides[axis]
                let total = Swift.max(0, (size - 1) * strides[axis] + extent - input[axis])
                b = autoPad == .sameUpper ? total / 2 : total - total / 2
                e = total - b
            }
            output.append(size); begin.append(b); end.append(e)
        }
        return (output, begin, end)
    }
}
