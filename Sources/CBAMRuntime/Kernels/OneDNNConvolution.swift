import CDNNL

// Conv and ConvTranspose on oneDNN primitives, built once per geometry: weights are
// reordered into the layout the primitive wants at build time, and execute only binds
// the source and destination pointers. 1-D is run as 2-D with H = 1.

/// What a convolution does to its result before storing it, in order.
public enum DNNLPostOp: String, Sendable, Equatable, CustomStringConvertible {
    /// dst = result + dst: the destination already holds the residual (Conv + Add).
    case sum
    /// max(0, ·).
    case relu
    /// Gelu, the erf form: `x/2 · (1 + erf(x/√2))` (ONNX Gelu, approximate "none").
    case geluErf
    /// Gelu, the tanh approximation (ONNX Gelu, approximate "tanh").
    case geluTanh
    /// HardSwish: `x · min(max(x + 3, 0), 6) / 6` (ONNX HardSwish; MobileNetV3, EfficientViT).
    case hardSwish
    /// SiLU (swish with β = 1): `x · sigmoid(x)` (exported as `Mul(x, Sigmoid(x))`).
    case silu

    public var description: String { rawValue }
}

/// How a convolution computes its sums.
public enum DNNLConvolutionAlgorithm: Sendable, Equatable {
    /// The products summed as they stand (oneDNN's brgconv, jit or gemm kernels).
    case direct
    /// Winograd's minimal filtering: 3×3 kernels, stride 1, no dilation, one group (what
    /// oneDNN 2.6's AVX-512 kernels take: F(2×2, 3×3) at batch 1, F(4×4, 3×3) otherwise).
    /// Fewer multiplications on transformed tiles: faster on large maps, slower on small ones,
    /// results within a few 1e-6 (relative) of the direct sums, and the transformed weights take
    /// 16/9 (F(2×2)) or 4 (F(4×4)) times the memory of the plain ones.
    case winograd

    /// True when `geometry` is one a Winograd kernel can take at all (oneDNN may still refuse it).
    public static func winogradFits(_ g: DNNLConvolution.Geometry) -> Bool {
        g.kernelHeight == 3 && g.kernelWidth == 3 && g.strideHeight == 1 && g.strideWidth == 1 && g.dilationHeight == 1
            && g.dilationWidth == 1 && g.group == 1 && g.height > 1
    }
}

/// How the source and destination are laid out.
public enum DNNLActivationLayout: Sendable, Equatable {
    /// Plain NCHW float32, as the rest of cbam-run stores tensors.
    case plain
    /// Whatever the primitive prefers (on this oneDNN: NHWC for brgconv on AVX-512, nChw8c on
    /// AVX2, nChw4c for some grouped convs); see `source` / `destination` for the chosen
    /// layouts and `DNNLReorder` to convert.
    case chosenByPrimitive
    /// Exactly these (e.g. the previous conv's destination layout, so a chain needs no reorder).
    case given(source: DNNLLayout, destination: DNNLLayout)
}

extension DNNLLayout {
    /// NHWC (channels last) for 4-D `[N, C, H, W]` dims.
    public static func channelsLast(_ dims: [Int]) throws -> DNNLLayout {
        guard dims.count == 4 else { throw CBAMError(.shapeMismatch, "channels-last needs 4-D dims, got \(dims)") }
        return DNNLLayout(try OneDNN.descriptor(dims, dnnl_nhwc))
    }

    /// NCHW with channels in blocks of 8 (nChw8c, AVX2's) or 16 (nChw16c, AVX-512's) for 4-D dims.
    public static func channelsBlocked(_ dims: [Int], block: Int) throws -> DNNLLayout {
        guard dims.count == 4 else { throw CBAMError(.shapeMismatch, "a blocked layout needs 4-D dims, got \(dims)") }
        switch block {
        case 8: return DNNLLayout(try OneDNN.descriptor(dims, dnnl_nChw8c))
        case 16: return DNNLLayout(try OneDNN.descriptor(dims, dnnl_nChw16c))
        default: throw CBAMError(.invalidAttribute, "channel blocks of 8 or 16 are supported, got \(block)")
        }
    }
}

extension OneDNN {
    /// Primitive attributes: user-owned scratchpad and the post-ops in order.
    static func attributes(_ postOps: [DNNLPostOp], outputScale: Float = 1) throws -> dnnl_primitive_attr_t {
        var attr: dnnl_primitive_attr_t?
        try check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create")
        do {
            try check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "dnnl_primitive_attr_set_scratchpad_mode")
            if outputScale != 1 {
                var scale = outputScale
                try check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale), "dnnl_primitive_attr_set_output_scales")
            }
            if !postOps.isEmpty {
                var ops: dnnl_post_ops_t?
                try check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create")
                defer { dnnl_post_ops_destroy(ops) }
                for op in postOps {
                    switch op {
                    case .sum: try check(dnnl_post_ops_append_sum(ops, 1), "dnnl_post_ops_append_sum")
                    case .relu: try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "dnnl_post_ops_append_eltwise")
                    case .geluErf: try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_gelu_erf, 0, 0), "dnnl_post_ops_append_eltwise")
                    case .geluTanh: try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_gelu_tanh, 0, 0), "dnnl_post_ops_append_eltwise")
                    case .hardSwish: try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_hardswish, 0, 0), "dnnl_post_ops_append_eltwise")
                    case .silu: try check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_swish, 1, 0), "dnnl_post_ops_append_eltwise")
                    }
                }
                try check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops")
            }
            return attr!
        } catch {
            dnnl_primitive_attr_destroy(attr)
            throw error
        }
    }

    /// Creates a primitive descriptor from an initialised op descriptor: oneDNN's first choice,
    /// or the first implementation whose name `avoiding` does not reject.
    static func primitiveDesc<Desc>(_ desc: inout Desc, attributes attr: dnnl_primitive_attr_t, engine: dnnl_engine_t,
                                    _ what: String, avoiding: ((String) -> Bool)? = nil) throws -> dnnl_primitive_desc_t {
        try withUnsafePointer(to: &desc) { pointer in
            guard let avoiding else {
                var pd: dnnl_primitive_desc_t?
                try check(dnnl_primitive_desc_create(&pd, const_dnnl_op_desc_t(pointer), attr, engine, nil), "dnnl_primitive_desc_create (\(what))")
                return pd!
            }
            var iterator: dnnl_primitive_desc_iterator_t?
            try check(dnnl_primitive_desc_iterator_create(&iterator, const_dnnl_op_desc_t(pointer), attr, engine, nil),
                      "dnnl_primitive_desc_iterator_create (\(what))")
            defer { dnnl_primitive_desc_iterator_destroy(iterator) }
            repeat {
                guard let pd = dnnl_primitive_desc_iterator_fetch(iterator) else { break }
                if !avoiding(implementation(pd)) { return pd }
                dnnl_primitive_desc_destroy(pd)
            } while dnnl_primitive_desc_iterator_next(iterator) == dnnl_success
            throw CBAMError(.unsupportedOp, "oneDNN has no usable implementation for this \(what)")
        }
    }

    static func checkSizes(_ values: [(String, Int)], minimum: Int) throws {
        for (name, value) in values where value < minimum {
            throw CBAMError(.invalidShape, "\(name) must be at least \(minimum), got \(value)")
        }
    }
}

/// Weight and bias counts against the geometry, for the array initialisers.
private func checkCounts(weights: Int, _ shape: [Int], bias: Int?, _ outputChannels: Int) throws {
    let expected = try Shape.elementCount(shape)
    guard weights == expected else {
        throw CBAMError(.shapeMismatch, "\(weights) weights for a \(Shape.describe(shape)) filter (\(expected) values)")
    }
    if let bias, bias != outputChannels {
        throw CBAMError(.shapeMismatch, "\(bias) bias values for \(outputChannels) output channels")
    }
}

// MARK: - Convolution

/// A 2-D (or 1-D, as H = 1) convolution on a oneDNN primitive.
///
/// Thread safety: `execute` may be called from several threads at once. Each concurrent
/// caller takes its own execution context (stream, memory objects, scratchpad) from a
/// pool; the first time a thread count or a level of concurrency is seen, a context (and
/// for a new thread count, a primitive) is created — that is the only allocation.
public final class DNNLConvolution: @unchecked Sendable {
    /// The full geometry in ONNX terms (dilation 1 = dense).
    public struct Geometry: Sendable, Equatable {
        public var batch: Int, channels: Int, height: Int, width: Int
        public var outputChannels: Int
        public var kernelHeight: Int, kernelWidth: Int
        public var strideHeight: Int, strideWidth: Int
        public var dilationHeight: Int, dilationWidth: Int
        public var padTop: Int, padLeft: Int, padBottom: Int, padRight: Int
        public var group: Int

        public init(batch: Int, channels: Int, height: Int, width: Int, outputChannels: Int,
                    kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1, strideWidth: Int = 1,
                    dilationHeight: Int = 1, dilationWidth: Int = 1,
                    padTop: Int = 0, padLeft: Int = 0, padBottom: Int = 0, padRight: Int = 0, group: Int = 1) {
            self.batch = batch; self.channels = channels; self.height = height; self.width = width
            self.outputChannels = outputChannels
            self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
            self.strideHeight = strideHeight; self.strideWidth = strideWidth
            self.dilationHeight = dilationHeight; self.dilationWidth = dilationWidth
            self.padTop = padTop; self.padLeft = padLeft; self.padBottom = padBottom; self.padRight = padRight
            self.group = group
        }

        /// A 1-D convolution over `width`, run as 2-D with H = 1.
        public static func oneDimensional(batch: Int, channels: Int, width: Int, outputChannels: Int, kernel: Int,
                                          stride: Int = 1, dilation: Int = 1, padBegin: Int = 0, padEnd: Int = 0,
                                          group: Int = 1) -> Geometry {
            Geometry(batch: batch, channels: channels, height: 1, width: width, outputChannels: outputChannels,
                     kernelHeight: 1, kernelWidth: kernel, strideWidth: stride, dilationWidth: dilation,
                     padLeft: padBegin, padRight: padEnd, group: group)
        }

        public var outputHeight: Int {
            (height + padTop + padBottom - (kernelHeight - 1) * dilationHeight - 1) / strideHeight + 1
        }
        public var outputWidth: Int {
            (width + padLeft + padRight - (kernelWidth - 1) * dilationWidth - 1) / strideWidth + 1
        }
        /// True when every input channel has its own filter (group == C == M).
        public var isDepthwise: Bool { group > 1 && group == channels && group == outputChannels }
        public var sourceShape: [Int] { [batch, channels, height, width] }
        public var destinationShape: [Int] { [batch, outputChannels, outputHeight, outputWidth] }
        /// ONNX weight shape `[M, C/group, kH, kW]`.
        public var weightShape: [Int] { [outputChannels, channels / Swift.max(group, 1), kernelHeight, kernelWidth] }
        /// Multiply-adds × 2.
        public var flops: Double {
            2 * Double(batch) * Double(outputChannels) * Double(outputHeight * outputWidth)
                * Double(channels / Swift.max(group, 1)) * Double(kernelHeight * kernelWidth)
        }

        /// True when a pad reaches the dilated kernel's extent, so that some output rows or
        /// columns see only padding. oneDNN 2.6.3's brgconv (f32, AVX-512) mishandles those
        /// with a sum post-op: wrong values with sum alone, a SIGSEGV inside its JIT code with
        /// sum + ReLU (tools/onednn-repro/brgconv-sum-pad-crash.c). Found by the differential
        /// sweep; such convolutions never get brgconv (they are rare, and the cost is small).
        var hasPaddingOnlyOutputs: Bool {
            let extentH = (kernelHeight - 1) * dilationHeight + 1, extentW = (kernelWidth - 1) * dilationWidth + 1
            return Swift.max(padTop, padBottom) >= extentH || Swift.max(padLeft, padRight) >= extentW
        }

        func validate() throws {
            try OneDNN.checkSizes([("batch", batch), ("channels", channels), ("height", height), ("width", width),
                                   ("output channels", outputChannels), ("kernel height", kernelHeight),
                                   ("kernel width", kernelWidth), ("stride", strideHeight), ("stride", strideWidth),
                                   ("dilation", dilationHeight), ("dilation", dilationWidth), ("group", group)], minimum: 1)
            try OneDNN.checkSizes([("pad", padTop), ("pad", padLeft), ("pad", padBottom), ("pad", padRight)], minimum: 0)
            guard channels % group == 0, outputChannels % group == 0 else {
                throw CBAMError(.shapeMismatch, "group \(group) does not divide \(channels) input and \(outputChannels) output channels")
            }
            for (extent, padded, axis) in [((kernelHeight - 1) * dilationHeight + 1, height + padTop + padBottom, "height"),
                                           ((kernelWidth - 1) * dilationWidth + 1, width + padLeft + padRight, "width")] {
                guard extent <= padded else {
                    throw CBAMError(.shapeMismatch, "the dilated kernel (\(extent)) is larger than the padded input \(axis) (\(padded))")
                }
            }
            for shape in [sourceShape, destinationShape, weightShape] { _ = try Shape.elementCount(shape) }
        }
    }

    public let geometry: Geometry
    public let postOps: [DNNLPostOp]
    /// The source layout `execute` reads (plain NCHW unless built with `.chosenByPrimitive`).
    public let source: DNNLLayout
    /// The destination layout `execute` writes (and, with a `.sum` post-op, reads the residual from).
    public let destination: DNNLLayout
    /// The layout the weights were reordered to for the build-time thread count.
    public let weights: DNNLLayout
    /// oneDNN's implementation for the build-time thread count, e.g. "brgconv:avx512_core".
    public let implementation: String
    /// True when oneDNN fell back to its reference kernel ("ref:any"): correct but many times
    /// slower than im2col + BLAS. Seen for plain NCHW with `[.relu, .sum]` and for CBAM's
    /// 2→1 7×7 spatial-attention conv in NCHW; a planner should not use such an instance.
    public var usesReferenceKernel: Bool { implementation.hasPrefix("ref") }
    private let executable: DNNLExecutable

    /// Builds the primitive for `threads` OpenMP threads (others are built on first use).
    /// - Parameters:
    ///   - weights: `[M, C/group, kH, kW]` floats (ONNX layout), copied.
    ///   - bias: `[M]` floats, copied; nil for none.
    ///   - postOps: applied in order (`[.sum, .relu]` is Conv + Add + Relu).
    public convenience init(geometry: Geometry, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>? = nil,
                            postOps: [DNNLPostOp] = [], layout: DNNLActivationLayout = .plain, threads: Int = 1,
                            algorithm: DNNLConvolutionAlgorithm = .direct) throws {
        try self.init(geometry, weightsPointer: weights, biasPointer: bias, postOps: postOps, layout: layout, threads: threads,
                      algorithm: algorithm)
    }

    private init(_ geometry: Geometry, weightsPointer weights: UnsafePointer<Float>, biasPointer bias: UnsafePointer<Float>?,
                 postOps: [DNNLPostOp], layout: DNNLActivationLayout, threads: Int, algorithm: DNNLConvolutionAlgorithm = .direct) throws {
        try geometry.validate()
        if algorithm == .winograd, !DNNLConvolutionAlgorithm.winogradFits(geometry) {
            throw CBAMError(.unsupportedOp, "Winograd takes 3×3 convolutions with stride 1, no dilation and one group")
        }
        self.geometry = geometry
        self.postOps = postOps
        let engine = try OneDNN.engine()
        let g = geometry
        let grouped = g.group > 1
        let userWeights = grouped
            ? try OneDNN.descriptor([g.group, g.outputChannels / g.group, g.channels / g.group, g.kernelHeight, g.kernelWidth], dnnl_goihw)
            : try OneDNN.descriptor(g.weightShape, dnnl_oihw)
        let anyWeights = grouped
            ? try OneDNN.descriptor([g.group, g.outputChannels / g.group, g.channels / g.group, g.kernelHeight, g.kernelWidth], dnnl_format_tag_any)
            : try OneDNN.descriptor(g.weightShape, dnnl_format_tag_any)
        let biasDesc = try OneDNN.descriptor([g.outputChannels], dnnl_x)
        let hasBias = bias != nil

        func build(source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t {
            var (s, w, b, d) = (source, anyWeights, hasBias ? biasDesc : dnnl_memory_desc_t(), destination)  // a zero desc: no bias
            var desc = dnnl_convolution_desc_t()
            let strides: [dnnl_dim_t] = [dnnl_dim_t(g.strideHeight), dnnl_dim_t(g.strideWidth)]
            let dilations: [dnnl_dim_t] = [dnnl_dim_t(g.dilationHeight - 1), dnnl_dim_t(g.dilationWidth - 1)]
            let padL: [dnnl_dim_t] = [dnnl_dim_t(g.padTop), dnnl_dim_t(g.padLeft)]
            let padR: [dnnl_dim_t] = [dnnl_dim_t(g.padBottom), dnnl_dim_t(g.padRight)]
            try OneDNN.check(dnnl_dilated_convolution_forward_desc_init(
                &desc, dnnl_forward_inference, algorithm == .winograd ? dnnl_convolution_winograd : dnnl_convolution_direct, &s, &w, &b, &d,
                strides, dilations, padL, padR), "dnnl_dilated_convolution_forward_desc_init")
            let attr = try OneDNN.attributes(postOps)
            defer { dnnl_primitive_attr_destroy(attr) }
            return try OneDNN.primitiveDesc(&desc, attributes: attr, engine: engine, "convolution",
                                            avoiding: g.hasPaddingOnlyOutputs ? { $0.hasPrefix("brgconv") } : nil)
        }

        (source, destination, executable) = try settledExecutable(
            layout, source: g.sourceShape, destination: g.destinationShape, threads: threads, what: "convolution",
            weights: weights, weightLayout: DNNLLayout(userWeights), bias: bias, biasLayout: DNNLLayout(biasDesc), build: build)
        let variant = try executable.variant(threads: Swift.max(1, threads))
        implementation = variant.implementation
        self.weights = variant.bound.first { $0.arg == DNNLArgument.weights }
            .flatMap { arg -> DNNLLayout? in
                var md: UnsafePointer<dnnl_memory_desc_t>?
                guard dnnl_memory_get_memory_desc(arg.memory, &md) == dnnl_success, let md else { return nil }
                return DNNLLayout(md.pointee)
            } ?? DNNLLayout(userWeights)
    }

    /// The same from arrays, whose counts are checked against the geometry.
    public convenience init(geometry: Geometry, weights: [Float], bias: [Float]? = nil,
                            postOps: [DNNLPostOp] = [], layout: DNNLActivationLayout = .plain, threads: Int = 1,
                            algorithm: DNNLConvolutionAlgorithm = .direct) throws {
        try geometry.validate()
        try checkCounts(weights: weights.count, geometry.weightShape, bias: bias?.count, geometry.outputChannels)
        if let bias {
            try self.init(geometry, weightsPointer: weights, biasPointer: bias, postOps: postOps, layout: layout, threads: threads,
                          algorithm: algorithm)
        } else {
            try self.init(geometry, weightsPointer: weights, biasPointer: nil, postOps: postOps, layout: layout, threads: threads,
                          algorithm: algorithm)
        }
    }

    /// The implementation oneDNN picks for `threads` threads (builds that primitive if needed).
    public func implementation(threads: Int) throws -> String {
        try executable.variant(threads: Swift.max(1, threads)).implementation
    }

    /// Bytes of scratch memory a call on `threads` threads needs (``execute(source:destination:threads:scratchpad:)``).
    public func scratchpadBytes(threads: Int) throws -> Int {
        try executable.scratchpadBytes(threads: threads)
    }

    /// Runs the convolution on `threads` OpenMP threads. `source` holds `source.elementCount`
    /// floats in the `source` layout, `destination` `destination.elementCount` in its layout
    /// (holding the residual when a `.sum` post-op was asked for). They must not overlap.
    /// `scratchpad`: ``scratchpadBytes(threads:)`` bytes (64-byte aligned) for this call, or nil
    /// for memory the primitive keeps.
    public func execute(source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, threads: Int = 1,
                        scratchpad: UnsafeMutableRawPointer? = nil) throws {
        try executable.execute(threads: threads, UnsafeMutableRawPointer(mutating: source), UnsafeMutableRawPointer(destination),
                               scratchpad: scratchpad)
    }
}

// MARK: - Deconvolution

/// A 2-D (or 1-D, as H = 1) transposed convolution (ONNX ConvTranspose) on a oneDNN primitive.
/// Same thread-safety as `DNNLConvolution`.
public final class DNNLDeconvolution: @unchecked Sendable {
    /// The geometry in ONNX terms. The output size is the caller's (it carries
    /// `output_padding` / `output_shape`); the end pads follow from it.
    public struct Geometry: Sendable, Equatable {
        public var batch: Int, channels: Int, height: Int, width: Int
        public var outputChannels: Int
        public var kernelHeight: Int, kernelWidth: Int
        public var strideHeight: Int, strideWidth: Int
        public var dilationHeight: Int, dilationWidth: Int
        public var padTop: Int, padLeft: Int
        public var outputHeight: Int, outputWidth: Int
        public var group: Int

        public init(batch: Int, channels: Int, height: Int, width: Int, outputChannels: Int,
                    kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1, strideWidth: Int = 1,
                    dilationHeight: Int = 1, dilationWidth: Int = 1, padTop: Int = 0, padLeft: Int = 0,
                    outputHeight: Int, outputWidth: Int, group: Int = 1) {
            self.batch = batch; self.channels = channels; self.height = height; self.width = width
            self.outputChannels = outputChannels
            self.kernelHeight = kernelHeight; self.kernelWidth = kernelWidth
            self.strideHeight = strideHeight; self.strideWidth = strideWidth
            self.dilationHeight = dilationHeight; self.dilationWidth = dilationWidth
            self.padTop = padTop; self.padLeft = padLeft
            self.outputHeight = outputHeight; self.outputWidth = outputWidth
            self.group = group
        }

        /// End pads implied by the output size (negative when output_padding adds rows past the last tap).
        public var padBottom: Int { (height - 1) * strideHeight + (kernelHeight - 1) * dilationHeight + 1 - padTop - outputHeight }
        public var padRight: Int { (width - 1) * strideWidth + (kernelWidth - 1) * dilationWidth + 1 - padLeft - outputWidth }
        public var sourceShape: [Int] { [batch, channels, height, width] }
        public var destinationShape: [Int] { [batch, outputChannels, outputHeight, outputWidth] }
        /// ONNX weight shape `[C, M/group, kH, kW]`.
        public var weightShape: [Int] { [channels, outputChannels / Swift.max(group, 1), kernelHeight, kernelWidth] }

        func validate() throws {
            try OneDNN.checkSizes([("batch", batch), ("channels", channels), ("height", height), ("width", width),
                                   ("output channels", outputChannels), ("kernel height", kernelHeight),
                                   ("kernel width", kernelWidth), ("stride", strideHeight), ("stride", strideWidth),
                                   ("dilation", dilationHeight), ("dilation", dilationWidth), ("group", group),
                                   ("output height", outputHeight), ("output width", outputWidth)], minimum: 1)
            try OneDNN.checkSizes([("pad", padTop), ("pad", padLeft)], minimum: 0)
            guard channels % group == 0, outputChannels % group == 0 else {
                throw CBAMError(.shapeMismatch, "group \(group) does not divide \(channels) input and \(outputChannels) output channels")
            }
            for shape in [sourceShape, destinationShape, weightShape] { _ = try Shape.elementCount(shape) }
        }
    }

    public let geometry: Geometry
    public let implementation: String
    /// True when oneDNN fell back to its reference kernel ("ref:any"), which is slow.
    public var usesReferenceKernel: Bool { implementation.hasPrefix("ref") }
    private let executable: DNNLExecutable

    /// - Parameters:
    ///   - weights: `[C, M/group, kH, kW]` floats (ONNX layout), copied.
    ///   - bias: `[M]` floats, copied; nil for none.
    public convenience init(geometry: Geometry, weights: UnsafePointer<Float>, bias: UnsafePointer<Float>? = nil,
                            postOps: [DNNLPostOp] = [], layout: DNNLActivationLayout = .plain, threads: Int = 1) throws {
        try self.init(geometry, weightsPointer: weights, biasPointer: bias, postOps: postOps, layout: layout, threads: threads)
    }

    /// The source and destination layouts `execute` reads and writes (plain NCHW unless built
    /// with `.chosenByPrimitive`).
    public let source: DNNLLayout
    public let destination: DNNLLayout

    private init(_ geometry: Geometry, weightsPointer weights: UnsafePointer<Float>, biasPointer bias: UnsafePointer<Float>?,
                 postOps: [DNNLPostOp], layout: DNNLActivationLayout, threads: Int) throws {
        try geometry.validate()
        self.geometry = geometry
        let engine = try OneDNN.engine()
        let g = geometry
        // oneDNN's deconvolution weights are (G,) OC, IC, kH, kW; ONNX stores (G,) IC, OC: iohw / giohw.
        let userWeights: dnnl_memory_desc_t, anyWeights: dnnl_memory_desc_t
        if g.group > 1 {
            let dims = [g.group, g.outputChannels / g.group, g.channels / g.group, g.kernelHeight, g.kernelWidth]
            userWeights = try OneDNN.descriptor(dims, dnnl_giohw)
            anyWeights = try OneDNN.descriptor(dims, dnnl_format_tag_any)
        } else {
            let dims = [g.outputChannels, g.channels, g.kernelHeight, g.kernelWidth]
            userWeights = try OneDNN.descriptor(dims, dnnl_iohw)
            anyWeights = try OneDNN.descriptor(dims, dnnl_format_tag_any)
        }
        let biasDesc = try OneDNN.descriptor([g.outputChannels], dnnl_x)
        let hasBias = bias != nil
        func build(source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t {
            var (s, w, b, d) = (source, anyWeights, hasBias ? biasDesc : dnnl_memory_desc_t(), destination)
            var desc = dnnl_deconvolution_desc_t()
            let strides: [dnnl_dim_t] = [dnnl_dim_t(g.strideHeight), dnnl_dim_t(g.strideWidth)]
            let dilations: [dnnl_dim_t] = [dnnl_dim_t(g.dilationHeight - 1), dnnl_dim_t(g.dilationWidth - 1)]
            let padL: [dnnl_dim_t] = [dnnl_dim_t(g.padTop), dnnl_dim_t(g.padLeft)]
            let padR: [dnnl_dim_t] = [dnnl_dim_t(g.padBottom), dnnl_dim_t(g.padRight)]
            try OneDNN.check(dnnl_dilated_deconvolution_forward_desc_init(
                &desc, dnnl_forward_inference, dnnl_deconvolution_direct, &s, &w, &b, &d,
                strides, dilations, padL, padR), "dnnl_dilated_deconvolution_forward_desc_init")
            let attr = try OneDNN.attributes(postOps)
            defer { dnnl_primitive_attr_destroy(attr) }
            return try OneDNN.primitiveDesc(&desc, attributes: attr, engine: engine, "deconvolution")
        }
        (source, destination, executable) = try settledExecutable(
            layout, source: g.sourceShape, destination: g.destinationShape, threads: threads, what: "deconvolution",
            weights: weights, weightLayout: DNNLLayout(userWeights), bias: bias, biasLayout: DNNLLayout(biasDesc), build: build)
        implementation = try executable.variant(threads: Swift.max(1, threads)).implementation
    }

    /// The same from arrays, whose counts are checked against the geometry.
    public convenience init(geometry: Geometry, weights: [Float], bias: [Float]? = nil,
                            postOps: [DNNLPostOp] = [], layout: DNNLActivationLayout = .plain, threads: Int = 1) throws {
        try geometry.validate()
        try checkCounts(weights: weights.count, geometry.weightShape, bias: bias?.count, geometry.outputChannels)
        if let bias {
            try self.init(geometry, weightsPointer: weights, biasPointer: bias, postOps: postOps, layout: layout, threads: threads)
        } else {
            try self.init(geometry, weightsPointer: weights, biasPointer: nil, postOps: postOps, layout: layout, threads: threads)
        }
    }

    /// Runs on `threads` OpenMP threads; source and destination in `source` / `destination` layout.
    public func execute(source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, threads: Int = 1) throws {
        try executable.execute(threads: threads, UnsafeMutableRawPointer(mutating: source), UnsafeMutableRawPointer(destination))
    }
}

/// What a convolution and a deconvolution primitive both set up: the activation layouts,
/// settled once for the build-time thread count (primitives for other counts are then asked
/// for exactly these, and refuse if they cannot); and the executable that builds the primitive
/// on those layouts for each thread count, holding oneDNN's copies of the weights and bias.
private func settledExecutable(_ layout: DNNLActivationLayout, source: [Int], destination: [Int], threads: Int, what: String,
                               weights: UnsafePointer<Float>, weightLayout: DNNLLayout, bias: UnsafePointer<Float>?, biasLayout: DNNLLayout,
                               build: @escaping (_ source: dnnl_memory_desc_t, _ destination: dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t)
    throws -> (DNNLLayout, DNNLLayout, DNNLExecutable) {
    let (sourceLayout, destinationLayout) = try settleLayouts(layout, source: source, destination: destination, threads: threads, what: what, build: build)
    let constants = [(DNNLArgument.weights, weightLayout, UnsafeRawPointer(weights))] + (bias.map { [(DNNLArgument.bias, biasLayout, UnsafeRawPointer($0))] } ?? [])
    let executable = try DNNLExecutable(
        callLayouts: [(DNNLArgument.source, sourceLayout), (DNNLArgument.destination, destinationLayout)], constants: constants, threads: Swift.max(1, threads)
    ) { _ in try build(sourceLayout.desc, destinationLayout.desc) }
    return (sourceLayout, destinationLayout, executable)
}

/// The source and destination layouts a convolution or deconvolution primitive runs on: plain
/// NCHW, exactly the given ones, or (`.chosenByPrimitive`) what `build` picks from `any` for
/// `threads` threads.
private func settleLayouts(_ layout: DNNLActivationLayout, source: [Int], destination: [Int], threads: Int, what: String,
                           build: (dnnl_memory_desc_t, dnnl_memory_desc_t) throws -> dnnl_primitive_desc_t) throws -> (DNNLLayout, DNNLLayout) {
    let requested: (source: dnnl_memory_desc_t, destination: dnnl_memory_desc_t)
    switch layout {
    case .plain:
        return (DNNLLayout(try OneDNN.descriptor(source, dnnl_nchw)), DNNLLayout(try OneDNN.descriptor(destination, dnnl_nchw)))
    case .given(let given, let givenDestination):
        guard given.dims == source, givenDestination.dims == destination else {
            throw CBAMError(.shapeMismatch, "layouts for \(given.dims) → \(givenDestination.dims) given for a \(source) → \(destination) \(what)")
        }
        requested = (given.desc, givenDestination.desc)
    case .chosenByPrimitive:
        requested = (try OneDNN.descriptor(source, dnnl_format_tag_any), try OneDNN.descriptor(destination, dnnl_format_tag_any))
    }
    return try OneDNN.withThreads(threads) {
        let pd = try build(requested.source, requested.destination)
        defer { dnnl_primitive_desc_destroy(pd) }
        guard let s = OneDNN.query(pd, argument: DNNLArgument.source), let d = OneDNN.query(pd, argument: DNNLArgument.destination) else {
            throw CBAMError(.unsupportedOp, "oneDNN's \(what) reports no source or destination layout")
        }
        return (DNNLLayout(s), DNNLLayout(d))
    }
}

