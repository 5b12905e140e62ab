// Conv and ConvTranspose (any number of spatial axes), NC…, float32: im2col / col2im
// around one sgemm (oneDNN's, see BLAS.swift) per (batch item, group). A 1-D convolution
// is run as 2-D with H = 1; a 3-D or higher Conv (LambdaResNet's positional lambdas)
// directly, each output summing its window.

extension OpRegistry {
    mutating func registerConvolution() {
        register("Conv") { context in try ConvKernel(context).kernel() }
        register("ConvTranspose") { context in try ConvTransposeKernel(context).kernel() }
    }
}

/// The window of a Conv or ConvTranspose. The kernel size comes from `kernel_shape`
/// or, when that is absent, from the weight's shape: read once when the weight is an
/// initializer, at each run when it is a runtime input.
struct ConvWindow {
    let context: NodeContext
    let fixed: SpatialGeometry?

    init(_ context: NodeContext) throws {
        self.context = context
        if context.has("kernel_shape") || context.constant(1) != nil {
            let geometry = try SpatialGeometry(context, kernel: context.constant(1).map { Array($0.shape.dropFirst(2)) })
            try Self.checkRank(geometry, context)
            fixed = geometry
        } else {
            fixed = nil
        }
    }

    func geometry(weight: Tensor) throws -> SpatialGeometry {
        if let fixed { return fixed }
        guard weight.rank >= 3 else {
            throw CBAMError(.shapeMismatch, "W has rank \(weight.rank); a convolution weight has rank 3 or 4", field: "W")
        }
        let geometry = try SpatialGeometry(context, kernel: Array(weight.shape.dropFirst(2)))
        try Self.checkRank(geometry, context)
        return geometry
    }

    private static func checkRank(_ geometry: SpatialGeometry, _ context: NodeContext) throws {
        guard geometry.rank >= 1 else {
            throw context.invalid("kernel_shape", "a \(context.node.opType) needs at least one spatial axis")
        }
    }
}

/// Views 1-D spatial sizes as 2-D (H = 1) so one code path serves both.
private func as2D(_ spatial: [Int]) -> (h: Int, w: Int) { spatial.count == 1 ? (1, spatial[0]) : (spatial[0], spatial[1]) }
private func pad2D(_ values: [Int], fill: Int) -> [Int] { values.count == 1 ? [fill, values[0]] : values }

/// Conv: X `[N, C, (H,) W]`, W `[M, C/group, (kH,) kW]`, optional B `[M]` → Y `[N, M, (oH,) oW]`.
struct ConvKernel {
    let window: ConvWindow
    let group: Int

    init(_ context: NodeContext) throws {
        window = try ConvWindow(context)
        group = try context.int("group", default: 1)
        guard group >= 1 else { throw context.invalid("group", "must be at least 1, got \(group)") }
    }

    func kernel() -> Kernel {
        Kernel.single { inputs in
            try run(x: try required(inputs, 0, "X"), w: try required(inputs, 1, "W"), b: inputs.count > 2 ? inputs[2] : nil)
        }
    }

    /// Checks that X `[N, C, spatial…]` and W `[M, C/group, kernel…]` fit a `rank`-D window
    /// and `group`: the kernel's checks, shared with shape inference.
    static func checkOperands(x: [Int], w: [Int], rank: Int, group: Int) throws {
        guard x.count == rank + 2 else {
            throw CBAMError(.shapeMismatch, "X has rank \(x.count) but a \(rank)-D convolution needs rank \(rank + 2)", field: "X")
        }
        guard w.count == x.count else {
            throw CBAMError(.shapeMismatch, "W has rank \(w.count) but X has rank \(x.count)", field: "W")
        }
        let (c, m) = (x[1], w[0])
        guard c % group == 0, m % group == 0, w[1] == c / group else {
            throw CBAMError(.shapeMismatch, "W \(Shape.describe(w)) does not fit X with \(c) channels and group \(group)", field: "W")
        }
    }

    func run(x: Tensor, w: Tensor, b: Tensor?) throws -> Tensor {
        let geometry = try window.geometry(weight: w)
        try Self.checkOperands(x: x.shape, w: w.shape, rank: geometry.rank, group: group)
        let (n, c, m) = (x.shape[0], x.shape[1], w.shape[0])
        guard Array(w.shape.dropFirst(2)) == geometry.kernel else {
            throw CBAMError(.shapeMismatch, "W's kernel \(Shape.describe(Array(w.shape.dropFirst(2)))) differs from kernel_shape \(geometry.kernel)", field: "W")
        }
        let bias = try b.map { try $0.floats("B") }
        if let bias, bias.count != m {
            throw CBAMError(.shapeMismatch, "B has \(bias.count) values but W has \(m) output channels", field: "B")
        }
        let (outSpatial, padBegin, _) = try geometry.resolve(input: Array(x.shape.dropFirst(2)))
        if geometry.rank > 2 {
            let outShape = [n, m] + outSpatial
            _ = try Shape.elementCount(outShape)
            return .float(outShape, directConvolution(x: try x.floats("X"), xShape: x.shape, w: try w.floats("W"), wShape: w.shape,
                                                      bias: bias, group: group, geometry: geometry, outSpatial: outSpatial, padBegin: padBegin))
        }
        let (h, wIn) = as2D(Array(x.shape.dropFirst(2)))
        let (oh, ow) = as2D(outSpatial)
        let (kh, kw) = as2D(geometry.kernel)
        let (sh, sw) = as2D(geometry.strides)
        let dil = pad2D(geometry.dilations, fill: 1), pad = pad2D(padBegin, fill: 0)
        let (cg, mg) = (c / group, m / group)
        let k = cg * kh * kw, p = oh * ow
        try BLAS.checkSize(k, p, mg)
        let outShape = [n, m] + outSpatial
        let outCount = try Shape.elementCount(outShape)
        _ = try Shape.elementCount([k, p])

        let xs = try x.floats("X"), ws = try w.floats("W")
        // X itself is the column matrix only where the output is the input's size: padding at the
        // end alone (1×1, pads [0, 0, 1, 1]) grows the output past the image.
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && pad.allSatisfy { $0 == 0 } && oh == h && ow == wIn
        // Neither buffer needs zeroing: im2col writes every column entry and sgemm (beta 0)
        // every output entry, so both start uninitialised.
        var output = [Float](unsafeUninitializedCapacity: outCount) { _, initialized in initialized = outCount }
        // One work item per (batch item, group). With several threads and several items, each
        // thread takes whole items (its own im2col buffer, single-threaded sgemm); otherwise the
        // the items run in turn on one thread.
        let items = n * group
        // A thread hand-off costs more than a small convolution (CBAM's 2→1 spatial conv).
        let workers = mg * k * p >= Parallel.minimumMACs ? Swift.min(window.context.threads, items) : 1
        let columnsPerWorker = pointwise ? 0 : k * p
        var columns = [Float](unsafeUninitializedCapacity: columnsPerWorker * Swift.max(workers, 1)) { _, initialized in
            initialized = columnsPerWorker * Swift.max(workers, 1)
        }
        xs.withUnsafeBufferPointer { xp in
            ws.withUnsafeBufferPointer { wp in
                output.withUnsafeMutableBufferPointer { yp in
                    columns.withUnsafeMutableBufferPointer { colp in
                        let (x0, w0, y0, c0) = (xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, colp.baseAddress)
                        func runItem(_ item: Int, scratch: UnsafeMutablePointer<Float>?) {
                            let (batch, g) = (item / group, item % group)
                            let image = x0 + (batch * c + g * cg) * h * wIn
                            let source: UnsafePointer<Float>
                            if pointwise {
                                source = image
                            } else {
                                im2col(image, channels: cg, h: h, w: wIn, kh: kh, kw: kw, oh: oh, ow: ow,
                                       strideH: sh, strideW: sw, dilH: dil[0], dilW: dil[1], padH: pad[0], padW: pad[1],
                                       into: scratch!)
                                source = UnsafePointer(scratch!)
                            }
                            // Y_g [mg × p] = W_g [mg × k] · cols [k × p], then the bias per output row.
                            let target = y0 + (batch * m + g * mg) * p
                            BLAS.sgemm(m: mg, n: p, k: k, a: w0 + g * mg * k, lda: k, b: source, ldb: p, c: target, ldc: p)
                            if let bias {
                                for channel in 0..<mg {
                                    let row = target + channel * p, value = bias[g * mg + channel]
                                    for i in 0..<p { row[i] += value }
                                }
                            }
                        }
                        if workers > 1 {
                            Parallel.forEach(workers) { worker in
                                let scratch = c0.map { $0 + worker * columnsPerWorker }
                                for item in stride(from: worker, to: items, by: workers) { runItem(item, scratch: scratch) }
                            }
                        } else {
                            for item in 0..<items { runItem(item, scratch: c0) }
                        }
                    }
                }
            }
        }
        return .float(outShape, output)
    }
}

/// Conv over any number of spatial axes, directly: X `[N, C, d…]`, W `[M, C/group, k…]` →
/// `[N, M, out…]` with `y[n][m][o…] = B[m] + Σ_c Σ_k… W[m][c][k…] · x[n][g·C/group + c][o·s − p + k·d…]`
/// (zero outside X). The path for 3-D and higher windows, which im2col's 2-D view does not cover.
func directConvolution(x: [Float], xShape: [Int], w: [Float], wShape: [Int], bias: [Float]?, group: Int,
                       geometry: SpatialGeometry, outSpatial: [Int], padBegin: [Int]) -> [Float] {
    let rank = geometry.rank
    let (n, c, m) = (xShape[0], xShape[1], wShape[0])
    let (cg, mg) = (c / group, m / group)
    let inSpatial = Array(xShape.dropFirst(2)), kernel = geometry.kernel
    let inStrides = Shape.strides(inSpatial)
    let inPlane = inSpatial.reduce(1, *), outPlane = outSpatial.reduce(1, *), taps = kernel.reduce(1, *)
    // Each kernel tap's offset per axis (k·dilation), and each output position's window start (o·stride − pad).
    let tapOffsets = (0..<taps).map { tap -> [Int] in
        var rest = tap
        return (0..<rank).reversed().map { axis -> Int in
            let k = rest % kernel[axis]
            rest /= kernel[axis]
            return k * geometry.dilations[axis]
        }.reversed()
    }
    var output = [Float](repeating: 0, count: n * m * outPlane)
    var position = [Int](repeating: 0, count: rank)
    for o in 0..<outPlane {
        var rest = o
        for axis in (0..<rank).reversed() {
            position[axis] = (rest % outSpatial[axis]) * geometry.strides[axis] - padBegin[axis]
            rest /= outSpatial[axis]
        }
        // The input offsets this output's window reads (−1: outside X, zero padding).
        let reads = tapOffsets.map { offsets -> Int in
            var index = 0
            for axis in 0..<rank {
                let i = position[axis] + offsets[axis]
                guard i >= 0, i < inSpatial[axis] else { return -1 }
                index += i * inStrides[axis]
            }
            return index
        }
        for batch in 0..<n {
            for channel in 0..<m {
                let g = channel / mg
                var sum = bias?[channel] ?? 0
                for cc in 0..<cg {
                    let image = (batch * c + g * cg + cc) * inPlane, weights = (channel * cg + cc) * taps
                    for tap in 0..<taps where reads[tap] >= 0 { sum += w[weights + tap] * x[image + reads[tap]] }
                }
                output[(batch * m + channel) * outPlane + o] = sum
            }
        }
    }
    return output
}

/// The indices k in 0..<count with `offset + k·stride` in 0..<limit, as (first, last):
/// the column range im2col copies and col2im scatters, computed once per kernel tap.
private func insideRange(count: Int, offset: Int, stride: Int, limit: Int) -> (first: Int, last: Int) {
    let first = Swift.min(count, offset >= 0 ? 0 : (-offset + stride - 1) / stride)
    let last = Swift.max(first, Swift.min(count, limit - offset > 0 ? (limit - offset + stride - 1) / stride : 0))
    return (first, last)
}

/// Unfolds one image's windows: `columns[(c*kh + i)*kw + j][oy*ow + ox] = x[c][oy*sh - ph + i*dh][ox*sw - pw + j*dw]`,
/// zero outside the image. x: `[channels, h, w]`, columns: `[channels*kh*kw, oh*ow]`.
func im2col(_ x: UnsafePointer<Float>, channels: Int, h: Int, w: Int, kh: Int, kw: Int, oh: Int, ow: Int,
                    strideH: Int, strideW: Int, dilH: Int, dilW: Int, padH: Int, padW: Int,
                    into columns: UnsafeMutablePointer<Float>) {
    var row = columns
    for channel in 0..<channels {
        let plane = x + channel * h * w
        for i in 0..<kh {
            for j in 0..<kw {
                let x0 = j * dilW - padW
                // Output columns whose input column is inside the image.
                let (first, last) = insideRange(count: ow, offset: x0, stride: strideW, limit: w)
                for oy in 0..<oh {
                    let iy = oy * strideH - padH + i * dilH
                    let out = row + oy * ow
                    // Plain loops rather than memcpy/memset calls: rows are short (often 7–56
                    // floats), where the call costs more than the copy.
                    guard iy >= 0 && iy < h else {
                        for ox in 0..<ow { out[ox] = 0 }
                        continue
                    }
                    let line = plane + iy * w + x0
                    for ox in 0..<first { out[ox] = 0 }
                    if strideW == 1 {
                        for ox in first..<last { out[ox] = line[ox] }
                    } else {
                        for ox in first..<last { out[ox] = line[ox * strideW] }
                    }
                    for ox in last..<ow { out[ox] = 0 }
                }
                row += oh * ow
            }
        }
    }
}

/// ConvTranspose: X `[N, C, (H,) W]`, W `[C, M/group, (kH,) kW]`, optional B `[M]` → Y `[N, M, (oH,) oW]`.
/// Each input pixel scatters a weighted kernel into the output: cols = W_gᵀ · X_g, then col2im.
struct ConvTransposeKernel {
    let window: ConvWindow
    let group: Int
    let outputPadding: [Int]?
    let outputShape: [Int]?

    init(_ context: NodeContext) throws {
        window = try ConvWindow(context)
        group = try context.int("group", default: 1)
        outputPadding = try context.ints("output_padding")
        outputShape = try context.ints("output_shape")
        guard group >= 1 else { throw context.invalid("group", "must be at least 1, got \(group)") }
        // The same 2^24 bound SpatialGeometry puts on the other window attributes.
        if let outputPadding, outputPadding.contains(where: { $0 < 0 || $0 >= 1 << 24 }) {
            throw context.invalid("output_padding", "must be non-negative and below 2^24, got \(outputPadding)")
        }
        if let outputShape, outputShape.contains(where: { $0 < 0 || $0 >= 1 << 24 }) {
            throw context.invalid("output_shape", "must be non-negative and below 2^24, got \(outputShape)")
        }
    }

    func kernel() -> Kernel {
        Kernel.single { inputs in
            try run(x: try required(inputs, 0, "X"), w: try required(inputs, 1, "W"), b: inputs.count > 2 ? inputs[2] : nil)
        }
    }

    /// Output sizes and begin pads, following the ONNX ConvTranspose definition.
    func resolve(input: [Int], geometry: SpatialGeometry) throws -> (output: [Int], padBegin: [Int]) {
        let rank = geometry.rank
        if let outputPadding, outputPadding.count != rank {
            throw CBAMError(.invalidAttribute, "must have \(rank) values, got \(outputPadding.count)", field: "attribute \"output_padding\"")
        }
        var output = [Int](), begin = [Int]()
        for axis in 0..<rank {
            let extent = geometry.dilations[axis] * (geometry.kernel[axis] - 1) + 1
            let extra = outputPadding?[axis] ?? 0
            let full = try Shape.sum([try Shape.multiply(geometry.strides[axis], input[axis] - 1), extra, extent])
            var target: Int? = nil
            if let outputShape {
                let spatial = outputShape.count == rank ? outputShape : Array(outputShape.suffix(rank))
                guard spatial.count == rank else { throw CBAMError(.invalidAttribute, "output_shape has \(outputShape.count) values", field: "attribute \"output_shape\"") }
                target = spatial[axis]
            } else if geometry.autoPad == .sameUpper || geometry.autoPad == .sameLower {
                target = input[axis] * geometry.strides[axis]
            }
            if let target {
                // A negative total (output_shape past what the strides reach) extends the end, as
                // output_padding would; halves are floor divisions, as in ONNX's reference.
                let total = full - target
                guard target > 0, target <= full + geometry.strides[axis] else {
                    throw CBAMError(.shapeMismatch, "output size \(target) cannot be produced by ConvTranspose (at most \(full + geometry.strides[axis] - 1))")
                }
                let half = total >= 0 ? total / 2 : -((-total + 1) / 2)
                // ONNX: SAME_UPPER puts the smaller half first; otherwise the larger half goes first.
                begin.append(geometry.autoPad == .sameUpper ? half : total - half)
                output.append(target)
            } else {
                let (b, e) = geometry.autoPad == .valid ? (0, 0) : (geometry.pads[axis], geometry.pads[axis + rank])
                let size = full - b - e
                guard size > 0 else { throw CBAMError(.shapeMismatch, "pads leave no output on spatial axis \(axis)") }
                begin.append(b)
                output.append(size)
            }
        }
        return (output, begin)
    }

    func run(x: Tensor, w: Tensor, b: Tensor?) throws -> Tensor {
        let geometry = try window.geometry(weight: w)
        let rank = geometry.rank
        guard x.rank == rank + 2, w.rank == x.rank else {
            throw CBAMError(.shapeMismatch, "X has rank \(x.rank) and W rank \(w.rank); a \(rank)-D ConvTranspose needs both of rank \(rank + 2)")
        }
        let (n, c) = (x.shape[0], x.shape[1])
        guard w.shape[0] == c, c % group == 0 else {
            throw CBAMError(.shapeMismatch, "W \(Shape.describe(w.shape)) does not fit X with \(c) channels and group \(group)", field: "W")
        }
        guard Array(w.shape.dropFirst(2)) == geometry.kernel else {
            throw CBAMError(.shapeMismatch, "W's kernel \(Shape.describe(Array(w.shape.dropFirst(2)))) differs from kernel_shape \(geometry.kernel)", field: "W")
        }
        let mg = w.shape[1], m = mg * group, cg = c / group
        let bias = try b.map { try $0.floats("B") }
        if let bias, bias.count != m { throw CBAMError(.shapeMismatch, "B has \(bias.count) values but the op has \(m) output channels", field: "B") }
        let inSpatial = Array(x.shape.dropFirst(2))
        let (outSpatial, padBegin) = try resolve(input: inSpatial, geometry: geometry)
        let taps = try Shape.elementCount(geometry.kernel)
        let p = try Shape.elementCount(inSpatial), q = try Shape.elementCount(outSpatial)
        let kRows = mg * taps
        try BLAS.checkSize(kRows, p, cg)
        let outShape = [n, m] + outSpatial
        var output = [Float](repeating: 0, count: try Shape.elementCount(outShape))
        var columns = [Float](repeating: 0, count: try Shape.elementCount([kRows, p]))
        // 1-D and 2-D scatter row by row (col2im); more axes go through a table.
        // scatter[t][j]: where tap t of input position j lands in the output plane, or -1
        // when it falls in the cropped padding. Shared by every channel, batch item and group.
        let planar = rank <= 2
        let scatter = planar ? [] : Self.scatterTable(input: inSpatial, output: outSpatial, kernel: geometry.kernel,
                                                      strides: geometry.strides, dilations: geometry.dilations, padBegin: padBegin)
        let (h, wIn) = as2D(inSpatial), (oh, ow) = as2D(outSpatial), (_, kw) = as2D(geometry.kernel)
        let stride = pad2D(geometry.strides, fill: 1), dil = pad2D(geometry.dilations, fill: 1), pad = pad2D(padBegin, fill: 0)
        let xs = try x.floats("X"), ws = try w.floats("W")
        xs.withUnsafeBufferPointer { xp in
            ws.withUnsafeBufferPointer { wp in
                output.withUnsafeMutableBufferPointer { yp in
                    columns.withUnsafeMutableBufferPointer { colp in
                        for batch in 0..<n {
                            for g in 0..<group {
                                // cols [kRows × p] = W_gᵀ (W_g is [cg × kRows]) · X_g [cg × p]
                                BLAS.sgemm(transA: true, m: kRows, n: p, k: cg, a: wp.baseAddress! + g * cg * kRows, lda: kRows,
                                           b: xp.baseAddress! + (batch * c + g * cg) * p, ldb: p, c: colp.baseAddress!, ldc: p)
                                for channel in 0..<mg {
                                    let plane = yp.baseAddress! + (batch * m + g * mg + channel) * q
                                    for t in 0..<taps {
                                        let row = colp.baseAddress! + (channel * taps + t) * p
                                        if planar {
                                            Self.scatterPlane(row, into: plane, tap: (t / kw, t % kw), h: h, w: wIn, oh: oh, ow: ow,
                                                              stride: (stride[0], stride[1]), dilation: (dil[0], dil[1]), pad: (pad[0], pad[1]))
                                        } else {
                                            scatter[t].withUnsafeBufferPointer { targets in
                                                for j in 0..<p where targets[j] >= 0 { plane[targets[j]] += row[j] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        if let bias {
                            for batch in 0..<n {
                                for channel in 0..<m {
                                    let plane = yp.baseAddress! + (batch * m + channel) * q
                                    for i in 0..<q { plane[i] += bias[channel] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return .float(outShape, output)
    }

    /// Adds one kernel tap's contribution `row` (`[h, w]`, input positions) into the output
    /// plane `[oh, ow]`: input (iy, ix) lands on (iy·sh − ph + i·dh, ix·sw − pw + j·dw).
    static func scatterPlane(_ row: UnsafePointer<Float>, into plane: UnsafeMutablePointer<Float>, tap: (Int, Int),
                             h: Int, w: Int, oh: Int, ow: Int, stride: (Int, Int), dilation: (Int, Int), pad: (Int, Int)) {
        let x0 = tap.1 * dilation.1 - pad.1
        // Input columns whose output column is inside the plane.
        let (first, last) = insideRange(count: w, offset: x0, stride: stride.1, limit: ow)
        for iy in 0..<h {
            let oy = iy * stride.0 - pad.0 + tap.0 * dilation.0
            guard oy >= 0 && oy < oh else { continue }
            let source = row + iy * w, target = plane + oy * ow + x0
            for ix in first..<last { target[ix * stride.1] += source[ix] }
        }
    }

    /// For each kernel tap and input position (both row-major over the spatial axes), the
    /// output offset `Σ (in·stride − pad + tap·dilation) · outStride`, or -1 if outside.
    static func scatterTable(input: [Int], output: [Int], kernel: [Int], strides: [Int], dilations: [Int], padBegin: [Int]) -> [[Int]] {
        let rank = input.count
        let inStrides = Shape.strides(input), outStrides = Shape.strides(output), kernelStrides = Shape.strides(kernel)
        let taps = kernel.reduce(1, *), positions = input.reduce(1, *)
        return (0..<taps).map { t in
            (0..<positions).map { j in
                var offset = 0
                for axis in 0..<rank {
                    let tap = (t / kernelStrides[axis]) % kernel[axis]
                    let position = (j / inStrides[axis]) % input[axis]
                    let o = position * strides[axis] - padBegin[axis] + tap * dilations[axis]
                    if o < 0 || o >= output[axis] { return -1 }
                    offset += o * outStrides[axis]
                }
                return offset
            }
        }
    }
}
