import Foundation

/// One line of `results.jsonl` (`cbam-run batch`): what happened to one input file.
public struct BatchRecord: Codable, Sendable, Equatable {
    public struct Output: Codable, Sendable, Equatable {
        public struct Score: Codable, Sendable, Equatable {
            public var index: Int
            public var score: Double
            public var label: String?
            public init(index: Int, score: Double, label: String?) {
                self.index = index
                self.score = score
                self.label = label
            }
        }
        public var name: String
        public var shape: [Int]
        public var min: Double
        public var max: Double
        public var mean: Double
        /// Top-5 of batch item 0 for `[N, classes]` outputs.
        public var top: [Score]?
        public init(name: String, shape: [Int], min: Double, max: Double, mean: Double, top: [Score]? = nil) {
            self.name = name
            self.shape = shape
            self.min = min
            self.max = max
            self.mean = mean
            self.top = top
        }
    }

    public struct Map: Codable, Sendable, Equatable {
        public var index: Int
        public var block: Int
        public var kind: String
        public var tensor: String
        public var shape: [Int]
        public var min: Double
        public var max: Double
        public var mean: Double
        /// Files written for the map, relative to the output folder.
        public var files: [String]
        public init(index: Int, block: Int, kind: String, tensor: String, shape: [Int], min: Double, max: Double,
                    mean: Double, files: [String]) {
            self.index = index
            self.block = block
            self.kind = kind
            self.tensor = tensor
            self.shape = shape
            self.min = min
            self.max = max
            self.mean = mean
            self.files = files
        }
    }

    /// The input's path as given (a folder's files as `folder/name`).
    public var file: String
    /// "ok" or "error".
    public var status: String
    public var error: String?
    /// The preprocessing line for an image input.
    public var preprocessing: String?
    public var outputs: [Output]?
    public var maps: [Map]?
    /// The input's attention page, relative to the output folder.
    public var page: String?
    /// The picture the network saw (image inputs), relative to the output folder.
    public var thumbnail: String?
    public var seconds: Double?

    public init(file: String, status: String) {
        self.file = file
        self.status = status
    }

    public var isOK: Bool { status == "ok" }
}

/// `results.jsonl`: one ``BatchRecord`` a line, appended as inputs finish, so an interrupted
/// run keeps what it did; ``compact(_:)`` rewrites it sorted by file with one line per file.
public enum BatchResults {
    /// The records in `path`, the last line for a file winning. A missing file is empty; a
    /// line that does not parse (a run killed mid-write) is skipped.
    public static func read(_ path: String) -> [String: BatchRecord] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        var records: [String: BatchRecord] = [:]
        let decoder = JSONDecoder()
        for line in data.split(separator: UInt8(ascii: "\n")) {
            if let record = try? decoder.decode(BatchRecord.self, from: Data(line)) { records[record.file] = record }
        }
        return records
    }

    /// One JSON line (sorted keys, no newline inside).
    public static func line(_ record: BatchRecord) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(record)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Appends one record. A file that does not end in a newline (cut off mid-line) gets one first.
    public static func append(_ record: BatchRecord, to path: String) throws {
        try withErrorContext(file: path) {
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CBAMError(.io, "cannot create the file") }
            }
            guard let handle = FileHandle(forUpdatingAtPath: path) else { throw CBAMError(.io, "cannot open the file for writing") }
            defer { try? handle.close() }
            let end = try handle.seekToEnd()
            var bytes = Data()
            if end > 0 {
                try handle.seek(toOffset: end - 1)
                if handle.readData(ofLength: 1) != Data([UInt8(ascii: "\n")]) { bytes.append(UInt8(ascii: "\n")) }
                try handle.seekToEnd()
            }
            bytes.append(try line(record))
            try handle.write(contentsOf: bytes)
        }
    }

    /// Rewrites `path` (atomically) with one line per file, sorted by file.
    public static func compact(_ path: String) throws {
        let records = read(path)
        var data = Data()
        for file in records.keys.sorted() { data.append(try line(records[file]!)) }
        try FileOutput.write(Array(data), to: path)
    }
}
