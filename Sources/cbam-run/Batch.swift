import ArgumentParser
import CBAMRuntime
import Dispatch
import Foundation

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on every image (or .npy) in folders and files, with progress, results.jsonl and a gallery.",
        discussion: """
            Inputs are files and folders (searched recursively for .png, .jpg, .jpeg and .npy), taken in \
            sorted order (--shard I/N keeps every N-th of them, for N processes or machines). Each input is run on its own (batch 1) and recorded as one JSON line in \
            OUT/results.jsonl: file, status (ok or error), the outputs' summaries and top-5, the attention \
            maps' statistics and files, or the error. A bad file is recorded and skipped; the exit status \
            is 1 when any input failed. Re-running skips inputs recorded as ok (use --force to redo them). \
            OUT/index.html is a gallery linking each input's attention page (with --attention).
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Argument(help: "Input files and folders.")
    var inputs: [String]

    @Option(name: .customLong("output-dir"), help: ArgumentHelp("Where results.jsonl, index.html and per-input folders go.", valueName: "OUT"))
    var outputDir: String

    @Flag(help: "Write each input's attention maps and page into OUT/items/<name>/.")
    var attention = false

    @Flag(help: "Run inputs already recorded as ok again.")
    var force = false

    @Option(name: .customLong("batch-size"), help: ArgumentHelp(
        "Stack up to B inputs of one shape into one run (the model's batch dimension must be symbolic).", valueName: "B"))
    var batchSize = 1

    @Option(name: .customLong("map-scale"), help: ArgumentHelp("Heat-map colors: fixed or per-map.", valueName: "fixed|per-map"))
    var mapScale = "fixed"

    @Option(name: .customLong("labels"), help: ArgumentHelp("Class names, one a line, for the top-5.", valueName: "FILE"))
    var labelsFile: String?

    @Option(name: .customLong("shard"), help: ArgumentHelp(
        "Run only shard I of N (I from 0 to N-1): every N-th of the sorted inputs, starting at the I-th. N processes or machines with I = 0…N-1 (a Kubernetes Indexed Job's JOB_COMPLETION_INDEX, a Slurm array's SLURM_ARRAY_TASK_ID) cover every input exactly once; see docs/scale-out.md.",
        valueName: "I/N"))
    var shard: String?

    /// `--shard I/N` parsed, or nil.
    var shardIndex: (index: Int, count: Int)? {
        guard let shard else { return nil }
        let parts = shard.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]), count >= 1, count <= 1_000_000,
              index >= 0, index < count else { return nil }
        return (index, count)
    }

    @OptionGroup var session: SessionFlags

    @OptionGroup(title: "Image inputs") var image: ImageFlags

    func validate() throws {
        if batchSize < 1 || batchSize > 4096 { throw ValidationError("--batch-size must be between 1 and 4096") }
        if shard != nil && shardIndex == nil {
            throw ValidationError("--shard takes I/N with 0 ≤ I < N (e.g. 0/4), got '\(shard!)'")
        }
        if AttentionExport.MapScale(rawValue: mapScale) == nil {
            throw ValidationError("--map-scale takes fixed or per-map (got '\(mapScale)')")
        }
    }

    func run() throws {
        do {
            let failed = try runAll()
            if failed > 0 { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }

    /// Runs every input not done yet; returns how many failed.
    func runAll() throws -> Int {
        // Pictures written into an output folder inside an input folder are not inputs next time.
        let outputPrefix = URL(fileURLWithPath: outputDir).standardizedFileURL.path + "/"
        let allFiles = try Self.collect(inputs).filter { !URL(fileURLWithPath: $0).standardizedFileURL.path.hasPrefix(outputPrefix) }
        guard !allFiles.isEmpty else {
            throw CBAMError(.usage, "no .png, .jpg, .jpeg or .npy files in \(inputs.joined(separator: ", "))")
        }
        // A shard: every N-th of the sorted list, so shards are balanced and disjoint.
        let files = shardIndex.map { shard in allFiles.enumerated().filter { $0.offset % shard.count == shard.index }.map(\.element) } ?? allFiles
        if let shard = shardIndex {
            print("batch: shard \(shard.index)/\(shard.count): \(files.count) of \(allFiles.count) input(s)")
            guard !files.isEmpty else { return 0 }
        }
        let labels = try labelsFile.map { try Labels.read(contentsOf: $0) }
        let session = try Session(contentsOf: model, options: self.session.options)
        guard session.requiredInputs.count == 1, let info = session.requiredInputs.first else {
            throw CBAMError(.usage, "batch runs models with one input; this one takes \(session.requiredInputs.count)", file: model)
        }
        try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
        let resultsPath = path(outputDir, "results.jsonl")
        if force { try? FileManager.default.removeItem(atPath: resultsPath) }
        let done = BatchResults.read(resultsPath).filter(\.value.isOK)
        let todo = files.filter { done[$0] == nil }
        let names = Self.itemNames(files)
        let request = try image.request()
        let scale = AttentionExport.MapScale(rawValue: mapScale) ?? .fixed

        if !done.isEmpty, todo.count < files.count {
            print("batch: \(files.count - todo.count) of \(files.count) input(s) already done in \(resultsPath) (--force runs them again)")
        }
        if batchSize > 1, let dims = info.shape, case .fixed(let n)? = dims.first {
            throw CBAMError(.usage, "--batch-size stacks inputs along the batch dimension, but input \"\(info.name)\" \(info.shapeDescription) fixes it at \(n)", file: model)
        }
        var progress = Progress(total: todo.count)
        for start in stride(from: 0, to: todo.count, by: batchSize) {
            let chunk = Array(todo[start..<min(todo.count, start + batchSize)])
            var records: [String: BatchRecord] = [:]
            var loaded: [Loaded] = []
            let clock = DispatchTime.now().uptimeNanoseconds
            for file in chunk {
                do {
                    loaded.append(try load(file, info: info, request: request))
                } catch {
                    records[file] = Self.failure(file, error)
                }
            }
            // Inputs of one shape run together; a run that fails fails each of its inputs.
            var groups: [[Int]: [Loaded]] = [:]
            var shapes: [[Int]] = []
            for item in loaded {
                if groups[item.tensor.shape] == nil { shapes.append(item.tensor.shape) }
                groups[item.tensor.shape, default: []].append(item)
            }
            for shape in shapes {
                let group = groups[shape]!
                do {
                    let feeds = [info.name: try Tensor.stacking(group.map(\.tensor))]
                    var outputs: [String: Tensor]
                    var maps: [AttentionMap]? = nil
                    if attention {
                        (outputs, maps) = try session.runCapturingAttention(feeds)
                    } else {
                        outputs = try session.run(feeds)
                    }
                    for (k, item) in group.enumerated() {
                        do {
                            var itemOutputs: [String: Tensor] = [:]
                            for (name, tensor) in outputs { itemOutputs[name] = group.count > 1 ? try tensor.item(k) : tensor }
                            let itemMaps = try maps.map { try $0.map { group.count > 1 ? try $0.item(k) : $0 } }
                            records[item.file] = try finish(item, name: names[item.file]!, session: session, outputs: itemOutputs,
                                                            maps: itemMaps, labels: labels, scale: scale)
                        } catch {
                            records[item.file] = Self.failure(item.file, error)
                        }
                    }
                } catch {
                    for item in group { records[item.file] = Self.failure(item.file, error) }
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - clock) / 1e9 / Double(chunk.count)
            for file in chunk {
                var record = records[file] ?? Self.failure(file, CBAMError(.io, "not run"))
                record.seconds = seconds
                try BatchResults.append(record, to: resultsPath)
                progress.step(file: file, ok: record.isOK, error: record.error)
            }
        }
        progress.finish()
        try BatchResults.compact(resultsPath)
        let all = BatchResults.read(resultsPath)
        try FileOutput.write(Array(Gallery.render(model: model, files: files, records: all).utf8),
                             to: path(outputDir, "index.html"))
        let bad = all.values.filter { !$0.isOK }.count
        print("batch: \(all.count - bad) ok, \(bad) failed of \(files.count) → \(resultsPath), \(path(outputDir, "index.html"))")
        return bad
    }

    /// An input read and preprocessed, not run yet.
    struct Loaded {
        var file: String
        var tensor: Tensor
        var photo: RGBImage?
        var preprocessing: String?
    }

    static func failure(_ file: String, _ error: Error) -> BatchRecord {
        var record = BatchRecord(file: file, status: "error")
        record.error = (error as? CBAMError)?.description ?? "\(error)"
        return record
    }

    func load(_ file: String, info: ValueInfo, request: ImagePreprocessing.Request) throws -> Loaded {
        if ImageFile.isImagePath(file) {
            let input = try InputFiles.loadImage(file, for: info, request: request, maxPixels: image.maxPixels)
            return Loaded(file: file, tensor: input.tensor, photo: input.pixels.rgb, preprocessing: input.preprocessing.description)
        }
        let tensor = try InputFiles.conform(try InputFiles.load(file), to: info, file: file).0
        return Loaded(file: file, tensor: tensor, photo: nil, preprocessing: nil)
    }

    /// The record of one input from its outputs and maps (batch 1), writing its thumbnail and attention page.
    func finish(_ item: Loaded, name: String, session: Session, outputs: [String: Tensor], maps: [AttentionMap]?,
                labels: [String]?, scale: AttentionExport.MapScale) throws -> BatchRecord {
        var record = BatchRecord(file: item.file, status: "ok")
        record.preprocessing = item.preprocessing
        let folder = "items/" + name
        if let photo = item.photo {
            // The gallery's thumbnail: the picture the network saw.
            try FileManager.default.createDirectory(atPath: path(outputDir, folder), withIntermediateDirectories: true)
            try PNG.write(photo, to: path(outputDir, folder + "/input.png"))
            record.thumbnail = folder + "/input.png"
        }
        if let maps {
            let report = try AttentionExport.write(maps, input: item.tensor, modelName: model, inputName: item.file,
                                                   to: path(outputDir, folder), photo: item.photo, scale: scale)
            record.page = folder + "/index.html"
            record.maps = report.maps.map {
                BatchRecord.Map(index: $0.index, block: $0.block, kind: $0.kind, tensor: $0.tensor, shape: $0.shape,
                                min: $0.min, max: $0.max, mean: $0.mean, files: $0.files.map { folder + "/" + $0 })
            }
        }
        record.outputs = session.outputNames.compactMap { name in
            guard let t = outputs[name] else { return nil }
            let values = t.doubles()
            var output = BatchRecord.Output(name: name, shape: t.shape, min: values.min() ?? 0, max: values.max() ?? 0,
                                            mean: values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count))
            if t.rank == 2, t.shape[1] > 1, let best = Summary.topK(t).first {
                output.top = best.map { item in
                    let label = labels.flatMap { item.index < $0.count ? $0[item.index] : nil }
                    return BatchRecord.Output.Score(index: item.index, score: item.score, label: label)
                }
            }
            return output
        }
        return record
    }

    /// The files named, folders searched recursively for inputs; sorted, without repeats.
    static func collect(_ paths: [String]) throws -> [String] {
        var files = Set<String>()
        let extensions: Set<String> = ["png", "jpg", "jpeg", "npy"]
        for item in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: item, isDirectory: &isDirectory) else {
                throw CBAMError(.io, "no such file or folder", file: item)
            }
            if !isDirectory.boolValue {
                files.insert(item)
                continue
            }
            guard let walker = FileManager.default.enumerator(atPath: item) else { throw CBAMError(.io, "cannot list the folder", file: item) }
            for case let relative as String in walker where extensions.contains((relative as NSString).pathExtension.lowercased()) {
                files.insert((item as NSString).appendingPathComponent(relative))
            }
        }
        return files.sorted()
    }

    /// A folder name per input, safe on any file system and unique (a counter after repeats).
    static func itemNames(_ files: [String]) -> [String: String] {
        var used = Set<String>(), names: [String: String] = [:]
        for file in files {
            let base = FileNames.safe(file)
            var name = base, n = 2
            while used.contains(name) { name = "\(base)-\(n)"; n += 1 }
            used.insert(name)
            names[file] = name
        }
        return names
    }

    func path(_ directory: String, _ name: String) -> String { (directory as NSString).appendingPathComponent(name) }
}

/// Progress on standard error: a bar redrawn in place on a terminal, one plain line per input otherwise.
struct Progress {
    let total: Int
    var done = 0
    var failed = 0
    let start = DispatchTime.now().uptimeNanoseconds
    let terminal = isatty(STDERR_FILENO) != 0

    init(total: Int) { self.total = total }

    mutating func step(file: String, ok: Bool, error: String?) {
        done += 1
        if !ok { failed += 1 }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let figures = "\(done)/\(total)  \(String(format: "%.1f", rate)) items/s  ETA \(Self.clock(eta))"
        if terminal {
            let width = 30, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            var text = "\r[\(bar)] \(figures)" + (failed > 0 ? "  \(failed) failed" : "")
            if !ok, let error { text = "\r\u{1B}[K" + "error: \(error)\n" + text }
            FileHandle.standardError.write(Data(text.utf8))
        } else {
            // Errors about the file usually start with its path already.
            var message = error ?? ""
            if message.hasPrefix(file + ": ") { message.removeFirst(file.count + 2) }
            FileHandle.standardError.write(Data("\(figures)  \(ok ? "ok" : "error")  \(file)\(ok ? "" : ": " + message)\n".utf8))
        }
    }

    func finish() {
        if terminal && total > 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    /// Seconds as m:ss (or h:mm:ss).
    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0, seconds < 360_000 else { return "--:--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}

/// OUT/index.html: one card per input (thumbnail, status, top-1 or error) linking to its page.
enum Gallery {
    static func render(model: String, files: [String], records: [String: BatchRecord]) -> String {
        var html = """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>cbam-run batch — \(escape((model as NSString).lastPathComponent))</title>
        <style>
        body { font-family: system-ui, sans-serif; margin: 24px; background: #fafafa; color: #222; }
        .grid { display: flex; flex-wrap: wrap; gap: 12px; }
        .card { width: 200px; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; font-size: 13px; word-break: break-all; }
        .card img { width: 184px; height: auto; image-rendering: pixelated; display: block; margin-bottom: 6px; }
        .error { border-color: #d33; color: #a00; }
        </style></head><body>
        <h1>\(escape(model))</h1>
        <p>\(files.count) input(s); \(records.values.filter(\.isOK).count) ok, \(records.values.filter { !$0.isOK }.count) failed.
        Details: <code>results.jsonl</code>.</p>
        <div class="grid">

        """
        for file in files {
            guard let record = records[file] else { continue }
            if record.isOK {
                let top = record.outputs?.first?.top?.first.map { "top-1: \($0.label ?? String($0.index)) (\(Summary.format($0.score)))" } ?? ""
                var card = ""
                if let thumbnail = record.thumbnail { card += "<img src=\"\(escape(thumbnail))\" alt=\"\">" }
                card += "<div>\(escape(file))</div><div>\(escape(top))</div>"
                if let page = record.page { card = "<a href=\"\(escape(page))\">\(card)</a>" }
                html += "<div class=\"card\">\(card)</div>\n"
            } else {
                html += "<div class=\"card error\"><div>\(escape(file))</div><div>\(escape(record.error ?? "error"))</div></div>\n"
            }
        }
        html += "</div>\n</body></html>\n"
        return html
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
