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
    /// - Returns: the report that was written.
    @discardableResult
    public static func write(_ maps: [AttentionMap], input: Tensor?, modelName: String, inputName: String?,
                             to directory: String, photo: RGBImage? = nil, scale: MapScale = .fixed) throws -> AttentionReport {
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
            let batch = max(map.tensor.shape.first ?? 1, 1)
            let perItem = values.count / batch
            for item in 0..<batch where perItem > 0 {
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
                case .channel, .other:
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
                mean: summary.isEmpty ? 0 : summary.reduce(0, +) / Double(summary.count), files: files))
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

    /// `[N, 1 or 3, H, W]` float inputs are images.
    static func imageLayout(_ tensor: Tensor) -> (batch: Int, channels: Int, height: Int, width: Int, values: [Float])? {
        guard tensor.rank == 4, tensor.shape[1] == 1 || tensor.shape[1] == 3, case .float(let values) = tensor.storage else { return nil }
        return (tensor.shape[0], tensor.shape[1], tensor.shape[2], tensor.shape[3], values)
    }

    static func path(_ directory: String, _ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
}
