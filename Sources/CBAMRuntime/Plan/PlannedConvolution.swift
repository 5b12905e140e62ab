import Foundation

// Planned Conv (1-D and 2-D, float32, constant weights). The fast path is a oneDNN
// convolution primitive built once per plan, with bias, the residual Add (`sum`) and
// Relu as post-ops, reading and writing plain NCHW in the arena. Where oneDNN is
// switched off (`CBAM_CONV=im2col`) or refuses a geometry, im2col into the step's
// scratch memory and one sgemm per (batch item, group) write straight into the
// output's place, then one pass adds the bias and the residual and applies Relu. The
// reference `ConvKernel` stays beside both for the differential tests.

extension PlannedKernels {
    static func registerConvolution(_ table: inout [String: Builder]) {
        table["Conv"] = { try convolution($0) }
        table[Passes.domain + "::FusedConv"] = { try convolution($0) }
    }

    /// BatchNormalization left after folding (one that follows no Conv, such as SKUnit's
    /// after the branch sum) becomes a per-channel scale and shift, computed once.
    static func registerNormalization(_ table: inout [String: Builder]) {
        table["BatchNormalization"] = { context in
            guard try context.node.int("training_mode", default: 0) == 0,
                  let (scale, shift) = try Passes.batchNormAffine(context.node, epsilon: try context.node.float("epsilon", default: 1e-5))
            else { return nil }
            let x = try context.input(0, "X"), y = try context.output(0)
            guard x.type.dataType == .float, x.shape.count >= 2, y.type == x.type, scale.count == x.shape[1] else { return nil }
            let (n, c) = (x.shape[0], x.shape[1]), inner = x.count / Swift.max(n * c, 1)
            return PlannedKernel(detail: "scale+shift") { memory in
                let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
                for plane in 0..<(n * c) {
                    let channel = plane % c
                    affineRow(source + plane * inner, target + plane * inner, inner, scale[channel], shift[channel], relu: false)
                }
            }
        }
    }

    /// Conv or FusedConv: X `[N, C, (H,) W]`, W `[M, C/group, (kH,) kW]` (a constant),
    /// optional B `[M]`, optional residual R `[N, M, (oH,) oW]` → Y `[N, M, (oH,) oW]`.
    private static func convolution(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        guard let weight = node.constant(1), x.type.dataType == .float, weight.dataType == .float,
              x.shape.count == 3 || x.shape.count == 4 else { return nil }
        let bias = try node.constant(2).map { try $0.floats("B") }
        if context.inputs.count > 2, context.inputs[2] != nil, bias == nil { return nil }  // a runtime bias: reference path
        let residual = context.inputs.count > 3 ? context.inputs[3] : nil
        let relu = try node.string("activation", default: "") == "Relu"

        let geometry = try ConvWindow(node).geometry(weight: weight)
        let group = try node.int("group", default: 1)
        let (n, c, m) = (x.shape[0], x.shape[1], weight.shape[0])
        guard group >= 1, c % group == 0, m % group == 0, weight.shape[1] == c / group, weight.rank == x.shape.count else { return nil }
        let (outSpatial, padBegin, _) = try geometry.resolve(input: Array(x.shape.dropFirst(2)))
        guard y.shape == [n, m] + outSpatial, residual.map({ $0.type == y.type }) ?? true else { return nil }

        let spatial2D = { (v: [Int]) -> (Int, Int) in v.count == 1 ? (1, v[0]) : (v[0], v[1]) }
        let (h, w) = spatial2D(Array(x.shape.dropFirst(2)))
        let (oh, ow) = spatial2D(outSpatial)
        let (kh, kw) = spatial2D(geometry.kernel)
        let (sh, sw) = spatial2D(geometry.strides)
        let (dh, dw) = spatial2D(geometry.dilations)
        let (padH, padW) = padBegin.count == 1 ? (0, padBegin[0]) : (padBegin[0], padBegin[1])
        let (cg, mg) = (c / group, m / group)
        let k = cg * kh * kw, p = oh * ow
        try BLAS.checkSize(k, p, mg)
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && padH == 0 && padW == 0

        // Work split: whole (item, group) units per worker when there are enough of them,
        // otherwise one unit at a time with its columns and sgemm split across workers.
        let items = n * group
        let macsPerItem = mg * k * p
        let threads = macsPerItem >= Parallel.minimumMACs ? context.threads : 1
        let perItem = threads > 1 && items >= threads
        let columnsBytes = pointwise ? 0 : k * p * MemoryLayout<Float>.stride
        let scratch = context.scratch(bytes: columnsBytes * (perItem ? threads : 1))
        let weights = UncheckedSendable(try weight.floats("W"))
        if useOneDNN, let dnnl = try? oneDNNConvolution(x: x, weights: weights.value, bias: bias, residual: residual != nil, relu: relu,
                                                       group: group, m: m, kernel: (kh, kw), strides: (sh, sw), dilations: (dh, dw),
                                                       padBegin: padBegin, output: (oh, ow), threads: context.threads) {
            let threads = context.threads
            let copyResidual = residual.map { r in (r, r.count) }
            return PlannedKernel(detail: "onednn:" + dnnl.implementation) { memory in
                let target = y.floats(memory)
                // The sum post-op adds into what the destination holds: the residual.
                if let (r, count) = copyResidual { target.update(from: r.floats(memory), count: count) }
                try dnnl.execute(source: x.floats(memory), destination: target, threads: threads)
            }
        }

        let epilogue = EpilogueParameters(bias: bias, relu: relu, rows: mg, columns: p)
        return PlannedKernel(detail: pointwise ? "sgemm" : "im2col+sgemm") { memory in
            let source = UnsafePointer(x.floats(memory)), target = y.floats(memory)
            let added = residual.map { UnsafePointer($0.floats(memory)) }
            let columns = scratch.pointer(memory).assumingMemoryBound(to: Float.self)
            weights.value.withUnsafeBufferPointer { wp in
                let w0 = wp.baseAddress!
                @inline(__always) func unfold(_ image: UnsafePointer<Float>, into buffer: UnsafeMutablePointer<Float>, channels: Range<Int>) {
                    im2col(image + channels.lowerBound * h * w, channels: channels.count, h: h, w: w, kh: kh, kw: kw, oh: oh, ow: ow,
                           strideH: sh, strideW: sw, dilH: dh, dilW: dw, padH: padH, padW: padW,
                           into: buffer + channels.lowerBound * kh * kw * p)
                }
                if perItem {
                    Parallel.forEach(threads) { worker in
                        let own = columns + worker * (columnsBytes / MemoryLayout<Float>.stride)
                        for item in stride(from: worker, to: items, by: threads) {
                            let (batch, g) = (item / group, item % group)
                            let image = source + (batch * c + g * cg) * h * w
                            if !pointwise { unfold(image, into: own, channels: 0..<cg) }
                            let offset = (batch * m + g * mg) * p
                            BLAS.sgemm(m: mg, n: p, k: k, a: w0 + g * mg * k, lda: k, b: pointwise ? image : UnsafePointer(own), ldb: p,
                                       c: target + offset, ldc: p)
                            epilogue.apply(target + offset, added.map { $0 + offset }, firstChannel: g * mg, columns: 0..<p)
                        }
                    }
                } else {
                    for item in 0..<items {
                        let (batch, g) = (item / group, item % group)
                        let image = source + (batch * c + g * cg) * h * w
                        if !pointwise {
                            Parallel.forEach(threads) { worker in unfold(image, into: columns, channels: Parallel.share(worker, of: threads, count: cg)) }
                        }
                        let offset = (batch * m + g * mg) * p
                        let b = pointwise ? image : UnsafePointer(columns)
                        // Column blocks of Y_g = W_g · cols, one per worker, each with its epilogue.
                        Parallel.forEach(threads) { worker in
                            let share = Parallel.share(worker, of: threads, count: p)
                            guard !share.isEmpty else { return }
                            BLAS.sgemm(m: mg, n: share.count, k: k, a: w0 + g * mg * k, lda: k, b: b + share.lowerBound, ldb: p,
                                       c: target + offset + share.lowerBound, ldc: p)
                            epilogue.apply(target + offset, added.map { $0 + offset }, firstChannel: g * mg, columns: share)
                        }
                    }
                }
            }
        }
    }
}

/// oneDNN for Conv unless `CBAM_CONV=im2col` asks for the im2col + sgemm path.
private let useOneDNN = ProcessInfo.processInfo.environment["CBAM_CONV"] != "im2col"

/// A oneDNN convolution for a planned Conv with plain NCHW source and destination, or nil
/// when oneDNN would only run its reference kernel (the im2col path is faster then).
private func oneDNNConvolution(x: Operand, weights: [Float], bias: [Float]?, residual: Bool, relu: Bool, group: Int, m: Int,
                               kernel: (Int, Int), strides: (Int, Int), dilations: (Int, Int), padBegin: [Int],
                               output: (Int, Int), threads: Int) throws -> DNNLConvolution? {
    let spatial = Array(x.shape.dropFirst(2))
    let (h, w) = spatial.count == 1 ? (1, spatial[0]) : (spatial[0], spatial[1])
    let (padTop, padLeft) = padBegin.count == 1 ? (0, padBegin[0]) : (padBegin[0], padBegin[1])
    // End pads that give exactly the planned output size.
    let padBottom = (output.0 - 1) * strides.0 + (kernel.0 - 1) * dilations.0 + 1 - h - padTop
    let padRight = (output.1 - 1) * strides.1 + (kernel.1 - 1) * dilations.1 + 1 - w - padLeft
    let geometry = DNNLConvolution.Geometry(
        batch: x.shape[0], channels: x.shape[1], height: h, width: w, outputChannels: m,
        kernelHeight: kernel.0, kernelWidth: kernel.1, strideHeight: strides.0, strideWidth: strides.1,
        dilationHeight: dilations.0, dilationWidth: dilations.1,
        padTop: padTop, padLeft: padLeft, padBottom: padBottom, padRight: padRight, group: group)
    let postOps: [DNNLPostOp] = (residual ? [.sum] : []) + (relu ? [.relu] : [])
    let convolution = try weights.withUnsafeBufferPointer { wp in
        try bias.map { b in
            try b.withUnsafeBufferPointer { bp in
                try DNNLConvolution(geometry: geometry, weights: wp.baseAddress!, bias: bp.baseAddress, postOps: postOps, threads: threads)
            }
        } ?? DNNLConvolution(geometry: geometry, weights: wp.baseAddress!, postOps: postOps, threads: threads)
    }
    return convolution.implementation.hasPrefix("ref") ? nil : convolution
}

/// What follows a convolution's sgemm on each output row: + bias, + residual, Relu.
struct EpilogueParameters {
    let bias: [Float]?
    let relu: Bool
    let rows: Int
    let columns: Int

    /// Applies the epilogue to `columns` of each of the rows of one (item, group) block
    /// `y` (`rows × self.columns`), whose first channel is `firstChannel`.
    @inline(__always)
    func apply(_ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?, firstChannel: Int, columns range: Range<Int>) {
        guard bias != nil || residual != nil || relu else { return }
        for row in 0..<rows {
            let line = y + row * columns + range.lowerBound
            let shift = bias?[firstChannel + row] ?? 0
            if let residual {
                let other = residual + row * columns + range.lowerBound
                for i in 0..<range.count {
                    let v = line[i] + shift + other[i]
                    line[i] = relu ? Swift.max(v, 0) : v
                }
            } else {
                affineRow(UnsafePointer(line), line, range.count, 1, shift, relu: relu)
            }
        }
    }
}

/// `target[i] = source[i] · scale + shift` (then max(·, 0) when `relu`), SIMD8.
@inline(__always)
func affineRow(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int,
               _ scale: Float, _ shift: Float, relu: Bool) {
    let a = SIMD8<Float>(repeating: scale), b = SIMD8<Float>(repeating: shift)
    if relu {
        VectorMath.map(source, target, count) { v in
            let r = v * a + b
            return r.replacing(with: SIMD8<Float>.zero, where: r .< SIMD8<Float>.zero)
        }
    } else {
        VectorMath.map(source, target, count) { $0 * a + b }
    }
}
