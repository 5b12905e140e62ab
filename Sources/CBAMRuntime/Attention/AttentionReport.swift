/// What `--attention DIR` writes as `DIR/attention.json`: one record per attention map.
public struct AttentionReport: Codable, Sendable {
    /// The model file.
    public var model: String
    /// The input file, when the run had one.
    public var input: String?
    /// Batch size of the run (maps hold one picture per batch item).
    public var batch: Int
    /// "fixed" (heat-map colors on [0, 1]) or "per-map" (each map's min → max); nil means fixed.
    public var mapScale: String?
    public var maps: [AttentionMapRecord]

    public init(model: String, input: String?, batch: Int, maps: [AttentionMapRecord]) {
        self.model = model
        self.input = input
        self.batch = batch
        self.maps = maps
    }
}

/// One attention map in the report.
public struct AttentionMapRecord: Codable, Sendable {
    /// Position in execution order, from 0.
    public var index: Int
    /// The CBAM-style block: a channel map and the spatial map that follows it share a block.
    public var block: Int
    /// "channel", "spatial" or "other".
    public var kind: String
    /// The gate tensor's name in the graph (the Sigmoid/Softmax output).
    public var tensor: String
    /// The node that produced it.
    public var node: String
    public var opType: String
    /// Shape as computed (not resized).
    public var shape: [Int]
    public var min: Double
    public var max: Double
    public var mean: Double
    /// Files written for this map, relative to the report's folder (.npy first, then PNGs).
    public var files: [String]
    /// The values shown as the color map's ends in the heat maps ([0, 1], or the map's own
    /// min and max with `--map-scale per-map`); nil for channel bars.
    public var displayRange: [Double]?
    /// Self-attention: the grid `[H, W]` its summary map lies on, when it could be mapped.
    public var grid: [Int]?
    /// Self-attention: what was stored (the summary on a grid, or why only the raw tensor).
    public var note: String?

    public init(index: Int, block: Int, kind: String, tensor: String, node: String, opType: String, shape: [Int],
                min: Double, max: Double, mean: Double, files: [String], grid: [Int]? = nil, note: String? = nil) {
        self.grid = grid
        self.note = note
        self.index = index
        self.block = block
        self.kind = kind
        self.tensor = tensor
        self.node = node
        self.opType = opType
        self.shape = shape
        self.min = min
        self.max = max
        self.mean = mean
        self.files = files
    }
}
