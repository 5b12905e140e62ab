import Foundation

// Pooling over the spatial axes of X `[N, C, d1, …, dk]` (any k ≥ 1), float32:
// MaxPool, AveragePool, LpPool and their Global forms.

extension OpRegistry {
    mutating func registerPooling() {
        register("GlobalAveragePool") { _ in globalPool { values in VectorMath.sum(values.baseAddress!, values.count) / Float(values.count) } }
        register("GlobalMaxPool") { _ in globalPool { values in VectorMath.max(values.baseAddress!, values.count) } }
        register("GlobalLpPool") { context in
            let p = Float(try context.int("p", default: 2))
            return globalPool { values in Foundation.pow(values.reduce(0) { $0 + Foundation.pow(Swift.abs($1), p) }, 1 / p) }
        }
        register("MaxPool") { context in try WindowPool(context, mode: .max).kernel() }
        register("AveragePool") { context in
            try WindowPool(context, mode: .average(countIncludePad: try context.int("count_include_pad", default: 0) != 0)).kernel()
        }
        register("LpPool") { context in
            try WindowPool(context, mode: .lp(p: Float(try context.int("p", default: 2)))).kernel()
        }
    }
}

/// A global pool: `reduce` turns one `[d1·…·dk]` plane into a value → Y `[N, C, 1, …, 1]`.
private func globalPool(_ reduce: @escaping (UnsafeBufferPointer<Float>) -> Float) -> Kernel {
    Kernel.single { inputs in
        let x = try required(inputs, 0, "X")
        guard x.rank >= 3 else { throw CBAMError(.shapeMismatch, "X must be [N, C, spatial…], got \(Shape.describe(x.shape))", field: "X") }
        let planes = x.shape[0] * x.shape[1]
        let planeSize = x.count / Swift.max(planes, 1)
        let values = try x.floats("X")
        guard planeSize > 0 else {
            throw CBAMError(.shapeMismatch, "X has an empty spatial extent \(Shape.describe(x.shape))", field: "X")
        }
        let result = values.withUnsafeBufferPointer { xp in
            (0..<planes).map { reduce(UnsafeBufferPointer(rebasing: xp[($0 * planeSize)..<(($0 + 1) * planeSize)])) }
        }
        return .float(Array(x.shape.prefix(2)) + Array(repeating: 1, count: x.rank - 2), result)
    }
}

/// MaxPool / AveragePool / LpPool over windows described by a ``SpatialGeometry``.
struct WindowPool {
    enum Mode { case max, average(countIncludePad: Bool), lp(p: Float) }
    let geometry: SpatialGeometry
    let mode: Mode
    /// MaxPool's Indices count spatial axes in column-major order when storage_order is 1.
    let columnMajorIndices: Bool
    /// Whether MaxPool's optional Indices output is used; without it the 2-D path
    /// takes row maxima with SIMD instead of tracking positions.
    let wantsIndices: Bool

    /// Threads for the 2-D path, which splits the (item, channel) planes.
    let threads: Int

    init(_ context: NodeContext, mode: Mode) throws {
        threads = context.threads
        wantsIndices = context.node.outputs.count > 1 && !context.node.outputs[1].isEmpty
        geometry = try SpatialGeometry(context, kernel: nil)
        self.mode = mode
        columnMajorIndices = try context.int("storage_order", default: 0) != 0
    }

    func kernel() -> Kernel {
        Kernel { inputs in try run(try required(inputs, 0, "X")) }
    }

    /// Returns Y, and for MaxPool also Indices (flat row-major offsets into X, as int64).
    func run(_ x: Tensor) throws -> [Tensor] {
        let rank = geometry.rank
        guard x.rank == rank + 2 else {
            throw CBAMError(.shapeMismatch, "X has rank \(x.rank) but a \(rank)-D pool needs rank \(rank + 2)", field: "X")
        }
        if rank == 2, !columnMajorIndices { return try pool2D(x) }
        let spatial = Array(x.shape.dropFirst(2))
        let (outSpatial, padBegin, padEnd) = try geometry.resolve(input: spatial)
        let outShape = Array(x.shape.prefix(2)) + outSpatial
        let outCount = try Shape.elementCount(outShape)
        let planes = x.shape[0] * x.shape[1]
        let inPlane = try Shape.elementCount(spatial), outPlane = try Shape.elementCount(outSpatial)
        let inStrides = Shape.strides(spatial)
        let columnStrides = Array(Shape.strides(spatial.reversed()).reversed())
        let windowCount = try Shape.elementCount(geometry.kernel)
        let values = try x.floats("X")
        var output = [Float](repeating: 0, count: outCount)
        var indices = [Int64](repeating: 0, count: { if case .max = mode { return outCount } else { return 0 } }())

        // Window offsets relative to the window origin, per axis.
        var outIndex = [Int](repeating: 0, count: rank)
        var kernelIndex = [Int](repeating: 0, count: rank)
        values.withUnsafeBufferPointer { xp in
            for position in 0..<outPlane {
                // Decompose the output position.
                var rest = position
                for axis in stride(from: rank - 1, through: 0, by: -1) {
                    outIndex[axis] = rest % outSpatial[axis]
                    rest /= outSpatial[axis]
                }
                for plane in 0..<planes {
                    let base = plane * inPlane
                    var best = -Float.infinity, bestIndex = -1, sum: Float = 0, counted = 0, insidePadded = 0
                    for k in 0..<windowCount {
                        var rest = k
                        for axis in stride(from: rank - 1, through: 0, by: -1) {
                            kernelIndex[axis] = rest % geometry.kernel[axis]
                            rest /= geometry.kernel[axis]
                        }
                        var offset = 0, columnOffset = 0, inside = true, inPadded = true
                        for axis in 0..<rank {
                            let coordinate = outIndex[axis] * geometry.strides[axis] - padBegin[axis] + kernelIndex[axis] * geometry.dilations[axis]
                            if coordinate < 0 || coordinate >= spatial[axis] { inside = false }
                            if coordinate < -padBegin[axis] || coordinate >= spatial[axis] + padEnd[axis] { inPadded = false }
                            offset += coordinate * inStrides[axis]
                            columnOffset += coordinate * columnStrides[axis]
                        }
                        if inPadded { insidePadded += 1 }
                        guard inside else { continue }
                        let value = xp[base + offset]
                        counted += 1
                        switch mode {
                        case .max:
                            if value > best || bestIndex < 0 || value.isNaN {
                                best = value
                                bestIndex = base + (columnMajorIndices ? columnOffset : offset)
                            }
                        case .average: sum += value
                        case .lp(let p): sum += Foundation.pow(Swift.abs(value), p)
                        }
                    }
                    let target = plane * outPlane + position
                    switch mode {
                    case .max:
                        output[target] = best
                        indices[target] = Int64(Swift.max(bestIndex, 0))
                    case .average(let includePad):
                        // count_include_pad counts the padding but never the part a ceil_mode window hangs past it.
                        let divisor = includePad ? insidePadded : counted
                        output[target] = divisor > 0 ? sum / Float(divisor) : 0
                    case .lp(let p):
                        output[target] = Foundation.pow(sum, 1 / p)
                    }
                }
            }
        }
        var results = [Tensor.float(outShape, output)]
        if case .max = mode { results.append(.int64(outShape, indices)) }
        return results
    }
}

extension WindowPool {
    /// The common case, 2-D pooling, with the window clipped to the image once per
    /// output row and column instead of testing every tap. X `[N, C, H, W]`.
    func pool2D(_ x: Tensor) throws -> [Tensor] {
        let loop = try Pool2DLoop(geometry: geometry, mode: mode, height: x.shape[2], width: x.shape[3])
        let planes = x.shape[0] * x.shape[1]
        let outShape = [x.shape[0], x.shape[1], loop.oh, loop.ow]
        let count = try Shape.elementCount(outShape)
        var output = [Float](repeating: 0, count: count)
        var isMax = false
        if case .max = mode { isMax = true }
        var indices = [Int64](repeating: 0, count: isMax && wantsIndices ? count : 0)
        let values = try x.floats("X")
        let workers = x.count >= Parallel.minimumElements ? Swift.min(threads, planes) : 1
        values.withUnsafeBufferPointer { xp in
            output.withUnsafeMutableBufferPointer { yp in
                indices.withUnsafeMutableBufferPointer { ip in
                    let (source, target, positions) = (xp.baseAddress, yp.baseAddress, isMax && wantsIndices ? ip.baseAddress : nil)
                    guard let source, let target else { return }
                    Parallel.forEach(workers) { worker in
                        loop.run(source, target, positions, planes: Parallel.share(worker, of: workers, count: planes))
                    }
                }
            }
        }
        var results = [Tensor.float(outShape, output)]
        if isMax && wantsIndices { results.append(.int64(outShape, indices)) }
        return results
    }
}

/// 2-D MaxPool / AveragePool / LpPool prepared for one input size: for every output row
/// and column, the window's taps that fall inside the image (and, for count_include_pad,
/// inside the padding). ``run(_:_:_:planes:)`` only computes on raw pointers, so the
/// reference kernel and the planned one share it.
struct Pool2DLoop {
    let mode: WindowPool.Mode
    let h: Int, w: Int, oh: Int, ow: Int
    let sh: Int, sw: Int, dh: Int, dw: Int
    let padTop: Int, padLeft: Int
    /// Window width (taps per row).
    let kw: Int
    /// Taps of each output row / column inside the image: first tap and how many.
    let rows: [(first: Int, count: Int)], columns: [(first: Int, count: Int)]
    /// Taps inside the padded image (count_include_pad counts the padding but not a ceil_mode overhang).
    let paddedRows: [Int], paddedColumns: [Int]
    /// Window height, and whether every window lies wholly inside the image (no tap in the padding).
    let kh: Int, interior: Bool

    init(geometry: SpatialGeometry, mode: WindowPool.Mode, height h: Int, width w: Int) throws {
        let (outSpatial, padBegin, padEnd) = try geometry.resolve(input: [h, w])
        self.mode = mode
        (self.h, self.w, oh, ow) = (h, w, outSpatial[0], outSpatial[1])
        (sh, sw) = (geometry.strides[0], geometry.strides[1])
        (dh, dw) = (geometry.dilations[0], geometry.dilations[1])
        (padTop, padLeft) = (padBegin[0], padBegin[1])
        let (kh, width) = (geometry.kernel[0], geometry.kernel[1])
        kw = width
        // Taps of one axis whose position lies in [low, high): first tap and how many.
        func taps(_ o: Int, stride: Int, pad: Int, dilation: Int, kernel: Int, low: Int, high: Int) -> (first: Int, count: Int) {
            let origin = o * stride - pad
            var first = 0
            while first < kernel && origin + first * dilation < low { first += 1 }
            var last = kernel - 1
            while last >= first && origin + last * dilation >= high { last -= 1 }
            return (first, last - first + 1)
        }
        let (sh, sw, dh, dw) = (sh, sw, dh, dw)
        rows = (0..<oh).map { taps($0, stride: sh, pad: padBegin[0], dilation: dh, kernel: kh, low: 0, high: h) }
        columns = (0..<ow).map { taps($0, stride: sw, pad: padBegin[1], dilation: dw, kernel: width, low: 0, high: w) }
        paddedRows = (0..<oh).map { taps($0, stride: sh, pad: padBegin[0], dilation: dh, kernel: kh, low: -padBegin[0], high: h + padEnd[0]).count }
        paddedColumns = (0..<ow).map { taps($0, stride: sw, pad: padBegin[1], dilation: dw, kernel: width, low: -padBegin[1], high: w + padEnd[1]).count }
        self.kh = kh
        interior = rows.allSatisfy { $0 == (0, kh) } && columns.allSatisfy { $0 == (0, width) }
    }

    /// Pools the `[H, W]` planes in `planes` of `xp` into the `[oH, oW]` planes of `yp`;
    /// MaxPool also writes each maximum's flat offset into `ip` when it is given.
    func run(_ xp: UnsafePointer<Float>, _ yp: UnsafeMutablePointer<Float>, _ ip: UnsafeMutablePointer<Int64>?, planes: Range<Int>) {
        if case .average = mode, interior, dw == 1, kw <= 8, oh > 0, ow > 0 {
            interiorAverage(xp, yp, planes: planes)
            return
        }
        if dw == 1 {
            // Whole-row passes need two image rows of partial results, on the stack.
            @inline(__always) func separable<O: FloatBinaryOperator>(_ op: O.Type, start: Float, row: (UnsafePointer<Float>, Int) -> Float,
                                                    finish: (Float, Int, Int) -> Float) {
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * Swift.max(w, 1)) { space in
                    let line = space.baseAddress!
                    windowsByRows(op, start: start, row: row, finish: finish, xp, yp, planes: planes, line: line, wide: line + Swift.max(w, 1))
                }
            }
            switch mode {
            case .max where ip == nil:
                separable(KeepMaxOperator.self, start: -.infinity, row: { VectorMath.max($0, $1) }) { value, _, _ in value }
                return
            case .average(let includePad):
                separable(AddOperator.self, start: 0, row: { VectorMath.sum($0, $1) }) { sum, oy, ox in
                    // count_include_pad counts the padding but never the part a ceil_mode window hangs past it.
                    let divisor = includePad ? paddedRows[oy] * paddedColumns[ox] : rows[oy].count * columns[ox].count
                    return divisor > 0 ? sum / Float(divisor) : 0
                }
                return
            default:
                break
            }
        }
        for plane in planes {
            let base = plane * h * w
            for oy in 0..<oh {
                let (fy, ny) = rows[oy]
                let y0 = oy * sh - padTop
                for ox in 0..<ow {
                    let (fx, nx) = columns[ox]
                    let x0 = ox * sw - padLeft
                    let target = (plane * oh + oy) * ow + ox
                    switch mode {
                    case .max:
                        var best = -Float.infinity, bestIndex = -1
                        for i in fy..<(fy + ny) {
                            let row = base + (y0 + i * dh) * w + x0
                            for j in fx..<(fx + nx) {
                                let value = xp[row + j * dw]
                                if value > best || bestIndex < 0 || value.isNaN { best = value; bestIndex = row + j * dw }
                            }
                        }
                        yp[target] = best
                        ip?[target] = Int64(Swift.max(bestIndex, 0))
                    case .average(let includePad):
                        var sum: Float = 0
                        for i in fy..<(fy + ny) {
                            let row = base + (y0 + i * dh) * w + x0
                            if dw == 1 {
                                sum += VectorMath.sum(xp + row + fx, nx)
                            } else {
                                for j in fx..<(fx + nx) { sum += xp[row + j * dw] }
                            }
                        }
                        let divisor = includePad ? paddedRows[oy] * paddedColumns[ox] : ny * nx
                        yp[target] = divisor > 0 ? sum / Float(divisor) : 0
                    case .lp(let p):
                        var sum: Float = 0
                        for i in fy..<(fy + ny) {
                            let row = base + (y0 + i * dh) * w + x0
                            for j in fx..<(fx + nx) {
                                let value = Swift.abs(xp[row + j * dw])
                                sum += p == 2 ? value * value : Foundation.pow(value, p)
                            }
                        }
                        yp[target] = p == 2 ? sum.squareRoot() : Foundation.pow(sum, 1 / p)
                    }
                }
            }
        }
    }

    /// An average pool whose windows all lie inside the image (CoAtNet's and the ResNet-D
    /// shortcuts' 2×2 stride-2 pools; any stride, row dilation, up to 8 taps a row): one divisor,
    /// the window's rows summed into a line, then each output the sum of its taps on that line
    /// over kH·kW. The same sums in the same order as ``windowsByRows`` takes them, without its
    /// per-output lookups of the clipped counts (2×2 stride 2 on 16×16 maps took 9 ns an output).
    private func interiorAverage(_ xp: UnsafePointer<Float>, _ yp: UnsafeMutablePointer<Float>, planes: Range<Int>) {
        let divisor = Float(kh * kw)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: Swift.max(w, 1)) { space in
            let line = space.baseAddress!
            for plane in planes {
                let image = xp + plane * h * w
                for oy in 0..<oh {
                    let top = image + (oy * sh - padTop) * w
                    var combined = top
                    if kh > 1 {
                        line.update(from: top, count: w)
                        for i in 1..<kh { AddOperator.fill(line, w, line, 1, top + i * dh * w, 1) }
                        combined = UnsafePointer(line)
                    }
                    let target = yp + (plane * oh + oy) * ow
                    for ox in 0..<ow {
                        let first = combined + (ox * sw - padLeft)
                        var sum = first[0]
                        for j in 1..<kw { sum += first[j] }
                        target[ox] = sum / divisor
                    }
                }
            }
        }
    }

    /// A max or sum pool with unit column dilation, in passes over whole rows with SIMD: per
    /// output row, the window's image rows combined into `line` (column maxima or sums);
    /// for small windows, `wide[x]` combines `line[x..<x+kW]`, so each output is one pick
    /// (windows the padding clips are combined tap by tap, large ones with `row`). Then
    /// `finish(value, oy, ox)`. A NaN anywhere in a max window gives NaN, as tap by tap.
    @inline(__always)
    private func windowsByRows<O: FloatBinaryOperator>(_: O.Type, start: Float, row: (UnsafePointer<Float>, Int) -> Float,
                                                      finish: (Float, Int, Int) -> Float,
                                                      _ xp: UnsafePointer<Float>, _ yp: UnsafeMutablePointer<Float>, planes: Range<Int>,
                                                      line: UnsafeMutablePointer<Float>, wide: UnsafeMutablePointer<Float>) {
        let windows = w - kw + 1
        let picks = kw <= 8 && windows > 0
        for plane in planes {
            let image = xp + plane * h * w
            for oy in 0..<oh {
                let (fy, ny) = rows[oy]
                let target = yp + (plane * oh + oy) * ow
                guard ny > 0 else {
                    for ox in 0..<ow { target[ox] = finish(start, oy, ox) }
                    continue
                }
                let y0 = oy * sh - padTop
                var combined = image + (y0 + fy * dh) * w
                if ny > 1 {
                    line.update(from: combined, count: w)
                    for i in 1..<ny { O.fill(line, w, line, 1, image + (y0 + (fy + i) * dh) * w, 1) }
                    combined = UnsafePointer(line)
                }
                if picks {
                    wide.update(from: combined, count: windows)
                    for j in 1..<kw { O.fill(wide, windows, wide, 1, combined + j, 1) }
                }
                for ox in 0..<ow {
                    let (fx, nx) = columns[ox]
                    let first = ox * sw - padLeft + fx
                    let value: Float
                    if picks && nx == kw {
                        value = wide[first]
                    } else if nx >= 8 {
                        value = row(combined + first, nx)
                    } else {
                        var partial = start
                        for j in 0..<nx { partial = O.apply(partial, combined[first + j]) }
                        value = partial
                    }
                    target[ox] = finish(value, oy, ox)
                }
            }
        }
    }
}
