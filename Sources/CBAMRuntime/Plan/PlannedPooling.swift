import Foundation

// Planned float32 pools: the global pools (one value per [n, c] plane) and the 2-D
// window pools of the ResNet stems and CBAM's pooling branches (MaxPool, AveragePool,
// LpPool), computed by the reference kernel's own loop (``Pool2DLoop``) on the arena.

extension PlannedKernels {
    static func registerPooling(_ table: inout [String: Builder]) {
        table["GlobalAveragePool"] = { try globalPool($0, average: true) { VectorMath.sum($0, $1) / Float($1) } }
        table["GlobalMaxPool"] = { try globalPool($0, average: false) { VectorMath.max($0, $1) } }
        table["MaxPool"] = { try windowPool($0, mode: .max) }
        table["AveragePool"] = { context in
            try windowPool(context, mode: .average(countIncludePad: try context.node.int("count_include_pad", default: 0) != 0))
        }
        table["LpPool"] = { context in try windowPool(context, mode: .lp(p: Float(try context.node.int("p", default: 2)))) }
    }

    /// One value per `[n, c]` plane of X `[N, C, spatial…]` → Y `[N, C, 1, …]`.
    private static func globalPool(_ context: PlanContext, average: Bool,
                                   _ reduce: @escaping (UnsafePointer<Float>, Int) -> Float) throws -> PlannedKernel? {
        let x = try context.input(0, "X"), y = try context.output(0)
        guard x.type.dataType == .float, x.shape.count >= 3, y.layout == .plain else { return nil }
        if x.layout != .plain {
            guard x.shape.count == 4, y.count == x.shape[0] * x.shape[1] else { return nil }
            return carriedGlobalPool(context, x: x, y: y, average: average)
        }
        let planes = x.shape[0] * x.shape[1]
        guard planes > 0, y.count == planes else { return nil }
        let size = x.count / planes
        guard size > 0 else { return nil }
        let workers = x.count >= Parallel.minimumElements ? Swift.min(context.threads, planes) : 1
        return PlannedKernel(detail: "simd reduce") { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            Parallel.forEach(workers) { worker in
                for plane in Parallel.share(worker, of: workers, count: planes) { target[plane] = reduce(source + plane * size, size) }
            }
        }
    }

    /// A global average or max pool of a carried X `[N, C, H, W]` (C a multiple of 8): per-channel
    /// statistics down the rows of each block, into a plain Y of N · C values (`[N, C, 1, 1]` or `[N, C]`).
    static func carriedGlobalPool(_ context: PlanContext, x: Operand, y: Operand, average: Bool) -> PlannedKernel {
        let blocks = ChannelBlocks(x)
        let units = blocks.units, workers = x.count >= Parallel.minimumElements ? Swift.min(context.threads, units) : 1
        return PlannedKernel(detail: "simd reduce \(x.layout)") { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            Parallel.forEach(workers) { worker in
                CarriedLoops.channelStatistics(source, blocks, units: Parallel.share(worker, of: workers, count: units),
                                               means: average ? target : nil, maxima: average ? nil : target)
            }
        }
    }

    /// MaxPool / AveragePool / LpPool over 2-D windows: X `[N, C, H, W]` → Y `[N, C, oH, oW]`
    /// (and MaxPool's row-major Indices, int64, when that output is named). Other ranks and
    /// column-major indices (storage_order 1) stay on the reference kernel.
    private static func windowPool(_ context: PlanContext, mode: WindowPool.Mode) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        guard x.type.dataType == .float, y.type.dataType == .float, x.shape.count == 4,
              try node.int("storage_order", default: 0) == 0 else { return nil }
        let geometry = try SpatialGeometry(node, kernel: nil)
        guard geometry.rank == 2 else { return nil }
        let loop = try Pool2DLoop(geometry: geometry, mode: mode, height: x.shape[2], width: x.shape[3])
        let (n, c) = (x.shape[0], x.shape[1])
        guard y.shape == [n, c, loop.oh, loop.ow] else { return nil }
        var indices: Operand? = nil
        if case .max = mode, context.outputs.count > 1, let operand = context.outputs[1] {
            guard operand.type == ValueType(.int64, y.shape) else { return nil }
            indices = operand
        }
        let planes = n * c
        if x.layout != .plain || y.layout != .plain {
            // A carried X and Y: each window's taps are rows of `b` channels, max'd or summed by CVectorMath's loops.
            guard x.layout == y.layout, indices == nil else { return nil }
            guard let pool = CarriedPoolGeometry(loop) else { return nil }
            let (inBlocks, outBlocks) = (ChannelBlocks(x), ChannelBlocks(y))
            // Work units: (item, block, band of output rows), so that NHWC at batch 1 (one block) still splits.
            let blockUnits = n * inBlocks.blocks
            let workers = x.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, blockUnits * loop.oh)) : 1
            let bands = blockUnits >= workers ? 1 : workers
            let units = blockUnits * bands
            return PlannedKernel(detail: (pool.average ? "average 2d " : "max 2d ") + "\(x.layout) \(VectorMath.InstructionSet.best)") { memory in
                let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
                Parallel.forEach(workers) { worker in
                    for unit in Parallel.share(worker, of: workers, count: units) {
                        let (blockUnit, band) = (unit / bands, unit % bands)
                        let (item, block) = (blockUnit / inBlocks.blocks, blockUnit % inBlocks.blocks)
                        pool.run(source + inBlocks.offset(item: item, block: block), target + outBlocks.offset(item: item, block: block),
                                 block: inBlocks.block, rows: Parallel.share(band, of: bands, count: loop.oh))
                    }
                }
            }
        }
        let workers = x.count >= Parallel.minimumElements ? Swift.max(1, Swift.min(context.threads, planes)) : 1
        let detail: String
        switch mode {
        case .max: detail = indices == nil ? "max 2d" : "max 2d+indices"
        case .average: detail = "average 2d"
        case .lp: detail = "lp 2d"
        }
        return PlannedKernel(detail: detail) { memory in
            let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
            let positions = indices.map { $0.address.pointer(memory).assumingMemoryBound(to: Int64.self) }
            Parallel.forEach(workers) { worker in
                loop.run(source, target, positions, planes: Parallel.share(worker, of: workers, count: planes))
            }
        }
    }
}
