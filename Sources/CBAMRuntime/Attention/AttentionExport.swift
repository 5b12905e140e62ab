import Foundation

/// Writes captured attention maps to a folder: each map as `.npy` (as computed),
/// pictures (a heat map per batch item for spatial maps, a bar chart per item for
/// channel maps), `attention.json` (an ``AttentionReport``) and `index.html`, one
/// self-contained page showing every block's maps side by side.
public enum AttentionExport {
    /// How heat-map values become colors.
    public enum MapScale: String, Sendable, CaseIterable {
        /// [0, 1] for every map (sigmoid gates), so colors compare across maps.
        case fixed
        /// Each map's own min → max, to show structure in a map that sits between, say, 0.43 and 0.50.
        case perMap = "per-map"
    }

    /// - Parameters:
    ///   - input: the network input, used to upscale heat maps to its size and overlay
    ///     them when it is an image (`[N, 1 or 3, H, W]`).
    ///   - photo: the 8-bit picture the input was made from (after the same resize and crop),
    ///     drawn under the heat maps of batch item 0 instead of the min-max-stretched tensor.
    ///   - scale: fixed [0, 1] colors or stretched per map (heat maps only; channel bars keep
    ///     their [0, 1] axis). The range used is recorded per map (`displayRange`).
    ///   - query: a position (Y, X) in the input image's pixels (grid cells when the input is
    ///     not an image): each self-attention map on a grid whose queries are its keys also
    ///     gets the attention of the query there, averaged over heads (`…_query.npy`, `[N, 1, S, S]`).
    /// - Returns: the report that was written.
    @discardableResult
    public static func write(_ maps: [AttentionMap], input: Tensor?, modelName: String, inputName: String?,
                             to directory: String, photo: RGBImage? = nil, scale: MapScale = .fixed,
                             query: (y: Int, x: Int)? = nil) throws -> AttentionReport {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CBAMError(.io, "cannot create the folder: \(error.localizedDescription)", file: directory)
        }
        let image = input.flatMap(imageLayout)
        var records: [AttentionMapRecord] = []
        var pictures: [String: [UInt8]] = [:]
        for map in maps {
            let stem = String(format: "%02d_%@", map.index, map.kind.rawValue)
            var files = [stem + ".npy"]
            try NPY.write(map.tensor, to: path(directory, stem + ".npy"))
            let values = try map.tensor.floats("attention map")
            var range: (low: Float, high: Float) = (0, 1)
            if scale == .perMap, map.kind == .spatial {
                let finite = values.filter(\.isFinite)
                if let low = finite.min(), let high = finite.max(), low < high { range = (low, high) }
            }
            var note: String? = nil, grid: [Int]? = nil
            if map.kind == .selfAttention {
                var summary = selfAttentionSummary(map.tensor, values: values, batch: input?.shape.first)
                note = summary.note
                if let side = summary.side {
                    grid = [side, side]
                    var stems = [(stem + "_summary", summary.values)]
                    if let query {
                        let cell = image.map { (query.y * side / max($0.height, 1), query.x * side / max($0.width, 1)) } ?? (query.y, query.x)
                        if let row = try selfAttentionQuery(map.tensor, values: values, batch: summary.batch, side: side, cell: cell) {
                            stems.append((stem + "_query", row))
                            note = (note ?? "") + "; query (\(query.y), \(query.x)) → grid cell (\(cell.0), \(cell.1))"
                        } else {
                            note = (note ?? "") + "; no query map: its queries are not its keys"
                        }
                    }
                    for (summaryStem, mapValues) in stems {
                    summary.values = mapValues
                    try NPY.write(.float([summary.batch, 1, side, side], summary.values), to: path(directory, summaryStem + ".npy"))
                    files.append(summaryStem + ".npy")
                    let plane = side * side
                    for item in 0..<summary.batch {
                        let slice = Array(summary.values[(item * plane)..<((item + 1) * plane)])
                        // Attention received sums to 1 over the keys: shown relative to its largest value.
                        let top = slice.max() ?? 0
                        let overlay = image.flatMap { layout -> (channels: Int, height: Int, width: Int, values: [Float])? in
                            guard item < layout.batch else { return nil }
                            let size = layout.channels * layout.height * layout.width
                            return (layout.channels, layout.height, layout.width, Array(layout.values[(item * size)..<((item + 1) * size)]))
                        }
                        let base = image.map { ($0.height, $0.width) } ?? (side, side)
                        let factor = max(1, (192 + max(base.0, base.1) - 1) / max(base.0, base.1, 1))
                        let picture = try AttentionRendering.heatmap(slice.map { top > 0 ? $0 / top : 0 }, height: side, width: side,
                                                                     size: (base.0 * factor, base.1 * factor), overlay: overlay)
                        let name = summaryStem + (summary.batch > 1 ? "_n\(item)" : "") + ".png"
                        let bytes = try PNG.encode(picture)
                        try FileOutput.write(bytes, to: path(directory, name))
                        pictures[name] = bytes
                        files.append(name)
                    }
                    }
                }
            }
            let batch = max(map.tensor.shape.first ?? 1, 1)
            let perItem = values.count / batch
            for item in 0..<batch where perItem > 0 && map.kind != .selfAttention {
                let slice = Array(values[(item * perItem)..<((item + 1) * perItem)])
                let picture: RGBImage?
                switch map.kind {
                case .spatial:
                    let (h, w) = (map.tensor.shape[map.tensor.rank - 2], map.tensor.shape[map.tensor.rank - 1])
                    let overlay = image.flatMap { layout -> (channels: Int, height: Int, width: Int, values: [Float])? in
                        guard item < layout.batch else { return nil }
                        let size = layout.channels * layout.height * layout.width
                        return (layout.channels, layout.height, layout.width, Array(layout.values[(item * size)..<((item + 1) * size)]))
                    }
                    // Shown at the input's size, enlarged by a whole factor to at least 192 px so a
                    // 32×32 CIFAR input or a 7×7 map is still readable.
                    let itemPhoto = item == 0 ? photo : nil
                    let base = itemPhoto.map { ($0.height, $0.width) } ?? image.map { ($0.height, $0.width) } ?? (h, w)
                    let factor = max(1, (192 + max(base.0, base.1) - 1) / max(base.0, base.1, 1))
                    picture = try AttentionRendering.heatmap(slice, height: h, width: w,
                                                             size: (base.0 * factor, base.1 * factor), overlay: overlay,
                                                             photo: itemPhoto, range: range)
                case .channel, .other, .selfAttention:
                    picture = perItem <= 65536 ? try AttentionRendering.channelBars(slice) : nil
                }
                if let picture {
                    let name = stem + (batch > 1 ? "_n\(item)" : "") + ".png"
                    let bytes = try PNG.encode(picture)
                    try FileOutput.write(bytes, to: path(directory, name))
                    pictures[name] = bytes
                    files.append(name)
                }
            }
            let summary = map.tensor.doubles()
            records.append(AttentionMapRecord(
                index: map.index, block: map.block, kind: map.kind.rawValue, tensor: map.gate.tensor,
                node: map.gate.node.ref.name, opType: map.gate.node.opType, shape: map.tensor.shape,
                min: summary.min() ?? 0, max: summary.max() ?? 0,
                mean: summary.isEmpty ? 0 : summary.reduce(0, +) / Double(summary.count), files: files, grid: grid, note: note))
            if map.kind == .spatial { records[records.count - 1].displayRange = [Double(range.low), Double(range.high)] }
        }
        var report = AttentionReport(model: modelName, input: inputName, batch: input?.shape.first ?? 1, maps: records)
        report.mapScale = scale.rawValue
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileOutput.write(Array(try encoder.encode(report)), to: path(directory, "attention.json"))
        try FileOutput.write(Array(HTMLReport.render(report, images: pictures).utf8), to: path(directory, "index.html"))
        return report
    }

    /// A self-attention tensor's summary: the attention each key position receives, averaged
    /// over heads and queries, per batch item (`batch` × side² values) when the keys form a
    /// square grid and the tensor's first axis is the run's batch, or the batch times the heads
    /// of a rank-3 `[N·heads, positions, positions]` (BoTNet); otherwise only a note saying why
    /// it is not mapped (windows or blocks folded into the first axis, keys that are not a
    /// square grid). The key axis is the last one of
    /// extent > 1 (GCNet's softmax over H·W leaves `[N, 1, H·W, 1]`).
    static func selfAttentionSummary(_ tensor: Tensor, values: [Float], batch runBatch: Int?)
        -> (side: Int?, batch: Int, values: [Float], note: String?) {
        // Trailing axes of extent 1 are dropped: GCNet's context mask is [N, 1, H·W, 1].
        var shape = tensor.shape
        while shape.count > 2, shape.last == 1 { shape.removeLast() }
        guard shape.count >= 2, let keys = shape.last, keys > 0 else {
            return (nil, 0, [], "raw tensor only: it has no key axis")
        }
        var batch = tensor.shape[0]
        var folded = ""
        if let runBatch, batch != runBatch {
            // BoTNet's layout, [N·heads, positions, positions]: rank 3 with the queries the keys, so the
            // folded axis holds heads (batch-major, as timm's reshape puts them), not windows of
            // other positions. Rank 4 [N·k, heads, q, k] (MobileViT's patches, MaxViT's and
            // HaloNet's windows) cannot be told apart and stays raw.
            guard shape.count == 3, runBatch > 0, batch % runBatch == 0, shape[1] == shape[2] else {
                return (nil, 0, [], "raw tensor only: its first axis (\(batch)) is not the batch (\(runBatch)): heads, windows or blocks folded into it cannot be told apart or mapped back to the grid")
            }
            folded = "; its first axis (\(batch)) read as \(runBatch) batch item(s) × \(batch / runBatch) heads (BoTNet's [N·heads, positions, positions])"
            batch = runBatch
        }
        // A grid of keys, or a class token (ViT's key 0) followed by one: the token is left out.
        func squareSide(_ n: Int) -> Int? {
            let side = Int(Double(n).squareRoot().rounded())
            return side > 0 && side * side == n ? side : nil
        }
        let skipped = squareSide(keys) == nil && keys > 4 && squareSide(keys - 1) != nil ? 1 : 0
        guard let side = squareSide(keys - skipped) else {
            return (nil, 0, [], "raw tensor only: \(keys) key positions do not form a square grid, nor a class token and one (a non-square layout)")
        }
        let gridKeys = side * side
        let rows = batch > 0 ? values.count / (batch * keys) : 0
        var summary = [Float](repeating: 0, count: batch * gridKeys)
        for item in 0..<batch {
            var sums = [Double](repeating: 0, count: gridKeys)
            for row in 0..<rows {
                let base = (item * rows + row) * keys + skipped
                for k in 0..<gridKeys { sums[k] += Double(values[base + k]) }
            }
            for k in 0..<gridKeys { summary[item * gridKeys + k] = Float(sums[k] / Double(max(rows, 1))) }
        }
        let token = skipped == 1 ? "; key 0 (a class token) left out, so a row sums to less than 1" : ""
        return (side, batch, summary, "summary: attention received per key position on a \(side)×\(side) grid, averaged over heads and queries" + token + folded)
    }

    /// The attention of the query at grid `cell` over the keys, averaged over heads, per batch
    /// item (`batch` × side² values): nil when the queries are not the keys' grid (a tensor
    /// `[N, heads…, queries, keys]` with queries ≠ keys). A cell outside the grid is an error.
    static func selfAttentionQuery(_ tensor: Tensor, values: [Float], batch: Int, side: Int, cell: (Int, Int)) throws -> [Float]? {
        let keys = side * side
        var shape = tensor.shape
        while shape.count > 2, shape.last == 1 { shape.removeLast() }
        guard shape.count >= 3, shape.last == keys, shape[shape.count - 2] == keys, batch > 0 else { return nil }
        guard (0..<side).contains(cell.0), (0..<side).contains(cell.1) else {
            throw CBAMError(.usage, "the query (\(cell.0), \(cell.1)) is outside the \(side)×\(side) grid", field: "--query")
        }
        let heads = values.count / (batch * keys * keys), q = cell.0 * side + cell.1
        var result = [Float](repeating: 0, count: batch * keys)
        for item in 0..<batch {
            for k in 0..<keys {
                var sum: Double = 0
                for h in 0..<heads { sum += Double(values[((item * heads + h) * keys + q) * keys + k]) }
                result[item * keys + k] = Float(sum / Double(max(heads, 1)))
            }
        }
        return result
    }

    /// `[N, 1 or 3, H, W]` float inputs are images.
    static func imageLayout(_ tensor: Tensor) -> (batch: Int, channels: Int, height: Int, width: Int, values: [Float])? {
        guard tensor.rank == 4, tensor.shape[1] == 1 || tensor.shape[1] == 3, case .float(let values) = tensor.storage else { return nil }
        return (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3], values)
    }

    static func path(_ directory: String, _ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
}
