// Planned data movement: Concat, Split, Slice, Transpose, Expand, Tile, Gather (constant
// indices) and Pad (constant mode). Each is one or a few ``StridedCopy``s worked out once from the concrete shapes:
// runs of memcpy, of one repeated element, or of strided elements. They move bytes without
// looking at them, so every element type is served.

extension PlannedKernels {
    static func registerShapeOps(_ table: inout [String: Builder]) {
        table["Concat"] = { try concat($0) }
        table["Split"] = { try split($0) }
        table["Slice"] = { try slice($0) }
        table["Transpose"] = { try transpose($0) }
        table["Expand"] = { try expand($0) }
        table["Tile"] = { try tile($0) }
        table["Gather"] = { try gather($0) }
        table["Pad"] = { try pad($0) }
    }

    /// Runs each copy in turn, each split across threads when large.
    private static func copies(_ detail: String, _ list: [(copy: StridedCopy, source: Operand, target: Operand)], threads: Int) -> PlannedKernel {
        let jobs = list.map { ($0.copy, $0.copy.count >= Parallel.minimumElements ? threads : 1, $0.source, $0.target) }
        return PlannedKernel(detail: detail) { memory in
            for (copy, workers, source, target) in jobs {
                copy.run(UnsafeRawPointer(source.address.pointer(memory)), target.address.pointer(memory), threads: workers)
            }
        }
    }

    /// Concat along `axis`: each input is a block of `[outer, part·inner]` placed at its offset in every output row.
    private static func concat(_ context: PlanContext) throws -> PlannedKernel? {
        let y = try context.output(0)
        let parts = context.inputs.compactMap { $0 }
        guard let first = parts.first, let axisAttribute = try context.node.intIfPresent("axis") else { return nil }
        let rank = y.shape.count
        let axis = try Shape.normalizeAxis(axisAttribute, rank: rank)
        guard parts.allSatisfy({ part in
            part.type.dataType == y.type.dataType && part.shape.count == rank
                && part.shape.indices.allSatisfy { $0 == axis || part.shape[$0] == y.shape[$0] }
        }), parts.reduce(0, { $0 + $1.shape[axis] }) == y.shape[axis] else { return nil }
        let outer = y.shape[..<axis].reduce(1, *), inner = y.shape[(axis + 1)...].reduce(1, *)
        let row = y.shape[axis] * inner
        var offset = 0
        var list: [(StridedCopy, Operand, Operand)] = []
        for part in parts {
            let length = part.shape[axis] * inner
            list.append((StridedCopy(extents: [outer, length], source: [length, 1], target: [row, 1], targetOffset: offset,
                                     elementSize: first.type.dataType.byteSize), part, y))
            offset += length
        }
        return copies("copy", list, threads: context.threads)
    }

    /// Split along `axis` into the named outputs (sizes from the attribute before opset 13,
    /// a constant input from 13, else equal parts).
    private static func split(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "input")
        let rank = x.shape.count
        let axis = try Shape.normalizeAxis(try node.int("axis", default: 0), rank: rank)
        var sizes: [Int]? = nil
        if node.opset < 13 {
            sizes = try node.ints("split")
        } else if context.inputs.count > 1, context.inputs[1] != nil {
            guard let given = node.constant(1) else { return nil }
            sizes = try given.integers("split")
        }
        let parts = try node.intIfPresent("num_outputs") ?? node.node.outputs.count
        let lengths = try splitLengths(extent: x.shape[axis], axis: axis, sizes: sizes, parts: parts)
        let outer = x.shape[..<axis].reduce(1, *), inner = x.shape[(axis + 1)...].reduce(1, *)
        let row = x.shape[axis] * inner
        var offset = 0
        var list: [(StridedCopy, Operand, Operand)] = []
        for (index, length) in lengths.enumerated() {
            defer { offset += length * inner }
            guard index < context.outputs.count, let y = context.outputs[index] else { continue }
            var shape = x.shape
            shape[axis] = length
            guard y.type == ValueType(x.type.dataType, shape) else { return nil }
            list.append((StridedCopy(extents: [outer, length * inner], source: [row, 1], target: [length * inner, 1],
                                     sourceOffset: offset, elementSize: x.type.dataType.byteSize), x, y))
        }
        return copies("copy", list, threads: context.threads)
    }

    /// Slice with constant starts, ends, axes and steps (attributes before opset 10).
    private static func slice(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "data"), y = try context.output(0)
        let window: SliceWindow
        if node.opset < 10 {
            window = try SliceWindow(shape: x.shape, starts: try node.ints("starts") ?? [], ends: try node.ints("ends") ?? [],
                                     axes: try node.ints("axes"), steps: nil)
        } else {
            // Every given bound must be known now.
            func constant(_ index: Int, _ name: String) throws -> [Int]?? {
                guard index < context.inputs.count, context.inputs[index] != nil else { return .some(nil) }
                guard let value = node.constant(index) else { return nil }
                return .some(try value.integers(name))
            }
            guard let starts = try constant(1, "starts"), let starts, let ends = try constant(2, "ends"), let ends,
                  let axes = try constant(3, "axes"), let steps = try constant(4, "steps") else { return nil }
            window = try SliceWindow(shape: x.shape, starts: starts, ends: ends, axes: axes, steps: steps)
        }
        guard y.type == ValueType(x.type.dataType, window.size) else { return nil }
        let copy = StridedCopy(extents: window.size, source: window.strides, target: Shape.strides(window.size),
                               sourceOffset: window.offset, elementSize: x.type.dataType.byteSize)
        return copies(copy.contiguousRuns ? "copy" : "strided copy", [(copy, x, y)], threads: context.threads)
    }

    /// Transpose by `perm` (reversed axes by default).
    private static func transpose(_ context: PlanContext) throws -> PlannedKernel? {
        let x = try context.input(0, "data"), y = try context.output(0)
        let rank = x.shape.count
        let perm = try context.node.ints("perm") ?? Array((0..<rank).reversed())
        guard perm.count == rank, Set(perm) == Set(0..<rank) else { return nil }
        let shape = perm.map { x.shape[$0] }
        guard y.type == ValueType(x.type.dataType, shape) else { return nil }
        let strides = Shape.strides(x.shape)
        let copy = StridedCopy(extents: shape, source: perm.map { strides[$0] }, target: Shape.strides(shape),
                               elementSize: x.type.dataType.byteSize)
        return copies(copy.contiguousRuns ? "copy" : "strided copy", [(copy, x, y)], threads: context.threads)
    }

    /// Expand to the planned output shape: broadcast axes read with stride 0.
    private static func expand(_ context: PlanContext) throws -> PlannedKernel? {
        let x = try context.input(0, "input"), y = try context.output(0)
        guard x.type.dataType == y.type.dataType,
              let copy = StridedCopy(broadcasting: x.shape, to: y.shape, elementSize: x.type.dataType.byteSize) else { return nil }
        return copies("broadcast copy", [(copy, x, y)], threads: context.threads)
    }

    /// Tile: output axis `a` is `[repeats[a], x.shape[a]]`, the repeat read with stride 0.
    private static func tile(_ context: PlanContext) throws -> PlannedKernel? {
        let x = try context.input(0, "input"), y = try context.output(0)
        let rank = x.shape.count
        guard x.type.dataType == y.type.dataType, y.shape.count == rank, x.count > 0 else { return nil }
        // Repeats are known when the plan is made (they decide the output shape).
        let repeats = (0..<rank).map { y.shape[$0] / x.shape[$0] }
        guard (0..<rank).allSatisfy({ repeats[$0] * x.shape[$0] == y.shape[$0] }) else { return nil }
        let inStrides = Shape.strides(x.shape), outStrides = Shape.strides(y.shape)
        var extents: [Int] = [], source: [Int] = [], target: [Int] = []
        for axis in 0..<rank {
            extents += [repeats[axis], x.shape[axis]]
            source += [0, inStrides[axis]]
            target += [x.shape[axis] * outStrides[axis], outStrides[axis]]
        }
        let copy = StridedCopy(extents: extents, source: source, target: target, elementSize: x.type.dataType.byteSize)
        return copies("broadcast copy", [(copy, x, y)], threads: context.threads)
    }

    /// Gather along `axis` with constant indices: `[outer, indices, inner]`, one run of
    /// `inner` elements per (outer, index).
    private static func gather(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let data = try context.input(0, "data"), y = try context.output(0)
        guard let indices = node.constant(1) else { return nil }
        let rank = data.shape.count
        let axis = try Shape.normalizeAxis(try node.int("axis", default: 0), rank: rank)
        let extent = data.shape[axis]
        let positions = try gatherPositions(indices, extent: extent, axis: axis)
        let shape = Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...])
        guard y.type == ValueType(data.type.dataType, shape) else { return nil }
        let outer = data.shape[..<axis].reduce(1, *), inner = data.shape[(axis + 1)...].reduce(1, *)
        let bytes = inner * data.type.dataType.byteSize
        return PlannedKernel(detail: "copy") { memory in
            let (source, target) = (UnsafeRawPointer(data.address.pointer(memory)), y.address.pointer(memory))
            var written = 0
            for o in 0..<outer {
                for p in positions {
                    target.advanced(by: written).copyMemory(from: source.advanced(by: (o * extent + p) * bytes), byteCount: bytes)
                    written += bytes
                }
            }
        }
    }
}

extension PlannedKernels {
    /// Pad in constant mode with pads known when the plan is made (EfficientViT's
    /// `F.pad(v, (0, 0, 0, 1), value=1)`, pads worked out from shapes): the output is filled
    /// with the value, then the input — cropped where a pad is negative — is copied into its
    /// window. Reflect, edge and wrap run the reference kernel.
    fileprivate static func pad(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        guard try node.string("mode", default: "constant") == "constant" else { return nil }
        let x = try context.input(0, "data"), y = try context.output(0)
        let rank = x.shape.count
        var pads: [Int]
        if node.opset < 11 {
            guard let given = try node.ints("pads") else { return nil }
            pads = given
        } else {
            guard let given = node.constant(1) else { return nil }
            pads = try given.integers("pads")
            if context.inputs.count > 3, context.inputs[3] != nil {
                guard let axes = node.constant(3) else { return nil }
                pads = try padsOnEveryAxis(pads, axes: try axes.integers("axes").map { try Shape.normalizeAxis($0, rank: rank) }, rank: rank)
            }
        }
        guard pads.count == 2 * rank else { return nil }
        let shape = (0..<rank).map { x.shape[$0] + pads[$0] + pads[$0 + rank] }
        guard y.type == ValueType(x.type.dataType, shape) else { return nil }
        let elementSize = x.type.dataType.byteSize
        // The window of the input that shows, and where it lands.
        let begin = (0..<rank).map { Swift.max(0, -pads[$0]) }, at = (0..<rank).map { Swift.max(0, pads[$0]) }
        let extents = (0..<rank).map { shape[$0] - at[$0] - Swift.max(0, pads[$0 + rank]) }
        let inStrides = Shape.strides(x.shape), outStrides = Shape.strides(shape)
        let copy = extents.allSatisfy({ $0 > 0 })
            ? StridedCopy(extents: extents, source: inStrides, target: outStrides,
                          sourceOffset: zip(begin, inStrides).reduce(0) { $0 + $1.0 * $1.1 },
                          targetOffset: zip(at, outStrides).reduce(0) { $0 + $1.0 * $1.1 }, elementSize: elementSize)
            : nil
        let filled = y.type.count - (copy?.count ?? 0)
        // The fill element's bytes: constant_value (opset 11+, the data's type) or the value
        // attribute converted as the reference kernel converts it.
        var fill = [UInt8](repeating: 0, count: elementSize)
        if filled > 0 {
            let value: Tensor
            if node.opset >= 11, context.inputs.count > 2, context.inputs[2] != nil {
                guard let given = node.constant(2), given.count >= 1, given.dataType == x.type.dataType else { return nil }
                value = given
            } else {
                value = try cast(.float([1], [try node.float("value", default: 0)]), to: x.type.dataType)
            }
            var bytes = [UInt8](repeating: 0, count: value.count * elementSize)
            bytes.withUnsafeMutableBytes { value.copyBytes(to: $0.baseAddress!) }
            fill = Array(bytes.prefix(elementSize))
        }
        let pattern = fill, count = y.type.count, threads = copy.map { $0.count >= Parallel.minimumElements ? context.threads : 1 } ?? 1
        return PlannedKernel(detail: "fill+copy") { memory in
            let target = y.address.pointer(memory)
            if filled > 0 { fillRepeating(pattern, target, count: count) }
            copy?.run(UnsafeRawPointer(x.address.pointer(memory)), target, threads: threads)
        }
    }

    /// Writes `count` copies of the element `pattern` from `target`: zero bytes as one memset,
    /// others by copying the already written part onto the next, doubling each time.
    private static func fillRepeating(_ pattern: [UInt8], _ target: UnsafeMutableRawPointer, count: Int) {
        let total = count * pattern.count
        guard total > 0 else { return }
        if pattern.allSatisfy({ $0 == 0 }) {
            target.initializeMemory(as: UInt8.self, repeating: 0, count: total)
            return
        }
        pattern.withUnsafeBytes { target.copyMemory(from: $0.baseAddress!, byteCount: pattern.count) }
        var written = pattern.count
        while written < total {
            let step = Swift.min(written, total - written)
            target.advanced(by: written).copyMemory(from: UnsafeRawPointer(target), byteCount: step)
            written += step
        }
    }
}

/// A copy between two buffers along `extents` (outermost first) with source and target
/// strides in elements (a source stride may be 0 or negative), from `sourceOffset` and
/// `targetOffset`. Axes of extent 1 are dropped and neighbours that are contiguous in
/// both buffers merged, so what is left is runs along the innermost axis: each a memcpy,
/// a fill with one element (a broadcast), or a strided element loop.
struct StridedCopy {
    let elementSize: Int
    /// Elements copied.
    let count: Int
    /// The outer axes (every merged axis but the innermost) and their strides.
    private let outer: [Int], outerSource: [Int], outerTarget: [Int]
    /// The innermost run: its length and steps.
    private let length: Int, sourceStep: Int, targetStep: Int
    private let sourceOffset: Int, targetOffset: Int

    init(extents: [Int], source: [Int], target: [Int], sourceOffset: Int = 0, targetOffset: Int = 0, elementSize: Int) {
        var axes: [(extent: Int, source: Int, target: Int)] = []
        for axis in extents.indices where extents[axis] != 1 {
            if let last = axes.last, last.source == source[axis] * extents[axis], last.target == target[axis] * extents[axis] {
                axes[axes.count - 1] = (last.extent * extents[axis], source[axis], target[axis])
            } else {
                axes.append((extents[axis], source[axis], target[axis]))
            }
        }
        let inner = axes.popLast() ?? (1, 1, 1)
        self.elementSize = elementSize
        count = extents.reduce(1, *)
        outer = axes.map(\.extent)
        outerSource = axes.map(\.source)
        outerTarget = axes.map(\.target)
        (length, sourceStep, targetStep) = count == 0 ? (0, 1, 1) : inner
        (self.sourceOffset, self.targetOffset) = (sourceOffset, targetOffset)
    }

    /// `shape` broadcast (numpy rules) to `target`: broadcast axes read with stride 0.
    /// Nil when `shape` does not broadcast to exactly `target`.
    init?(broadcasting shape: [Int], to target: [Int], elementSize: Int) {
        let rank = target.count
        guard shape.count <= rank else { return nil }
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        guard zip(padded, target).allSatisfy({ $0 == $1 || $0 == 1 }) else { return nil }
        let strides = Shape.strides(padded)
        self.init(extents: target, source: (0..<rank).map { padded[$0] == 1 ? 0 : strides[$0] }, target: Shape.strides(target),
                  elementSize: elementSize)
    }

    /// Whether every run is one memcpy.
    var contiguousRuns: Bool { sourceStep == 1 && targetStep == 1 }

    /// Runs along the innermost axis.
    var runCount: Int { length == 0 ? 0 : count / length }

    /// The whole copy on up to `threads` threads: whole runs each, or column blocks of
    /// every run when there are fewer runs than threads.
    func run(_ source: UnsafeRawPointer, _ target: UnsafeMutableRawPointer, threads: Int) {
        let runs = runCount
        guard runs > 0 else { return }
        let byRuns = runs >= threads
        let workers = Swift.max(1, Swift.min(threads, byRuns ? runs : length))
        Parallel.forEach(workers) { worker in
            if byRuns {
                run(source, target, runs: Parallel.share(worker, of: workers, count: runs), columns: 0..<length)
            } else {
                run(source, target, runs: 0..<runs, columns: Parallel.share(worker, of: workers, count: length))
            }
        }
    }

    /// Copies `columns` of the runs in `runs`.
    func run(_ source: UnsafeRawPointer, _ target: UnsafeMutableRawPointer, runs: Range<Int>, columns: Range<Int>) {
        guard !runs.isEmpty, !columns.isEmpty else { return }
        // The odometer lives on the stack: a run allocates nothing.
        withUnsafeTemporaryAllocation(of: Int.self, capacity: Swift.max(outer.count, 1)) { index in
            copy(source, target, runs: runs, columns: columns, index: index.baseAddress!)
        }
    }

    private func copy(_ source: UnsafeRawPointer, _ target: UnsafeMutableRawPointer, runs: Range<Int>, columns: Range<Int>,
                      index: UnsafeMutablePointer<Int>) {
        let last = outer.count
        var s = sourceOffset + columns.lowerBound * sourceStep, t = targetOffset + columns.lowerBound * targetStep
        var rest = runs.lowerBound
        for axis in stride(from: last - 1, through: 0, by: -1) {
            index[axis] = rest % outer[axis]
            rest /= outer[axis]
            s += index[axis] * outerSource[axis]
            t += index[axis] * outerTarget[axis]
        }
        let size = elementSize, n = columns.count
        for _ in runs {
            let from = source + s * size, to = target + t * size
            if sourceStep == 1 && targetStep == 1 {
                to.copyMemory(from: from, byteCount: n * size)
            } else {
                switch size {
                case 1: Self.copyElements(UInt8.self, from, to, n, sourceStep, targetStep)
                case 2: Self.copyElements(UInt16.self, from, to, n, sourceStep, targetStep)
                case 4: Self.copyElements(UInt32.self, from, to, n, sourceStep, targetStep)
                default: Self.copyElements(UInt64.self, from, to, n, sourceStep, targetStep)
                }
            }
            var axis = last - 1
            while axis >= 0 {
                index[axis] += 1
                s += outerSource[axis]
                t += outerTarget[axis]
                if index[axis] < outer[axis] { break }
                s -= outerSource[axis] * outer[axis]
                t -= outerTarget[axis] * outer[axis]
                index[axis] = 0
                axis -= 1
            }
        }
    }

    /// `n` elements `sourceStep` and `targetStep` apart (a zero source step fills).
    @inline(__always)
    private static func copyElements<T>(_: T.Type, _ from: UnsafeRawPointer, _ to: UnsafeMutableRawPointer, _ n: Int,
                                        _ sourceStep: Int, _ targetStep: Int) {
        let source = from.assumingMemoryBound(to: T.self), target = to.assumingMemoryBound(to: T.self)
        if sourceStep == 0 && targetStep == 1 {
            target.update(repeating: source[0], count: n)
        } else {
            for i in 0..<n { target[i * targetStep] = source[i * sourceStep] }
        }
    }
}
