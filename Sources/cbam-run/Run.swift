import ArgumentParser
import CBAMRuntime
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on images (.png, .jpg) or arrays (.npy, ONNX TensorProto .pb) and write its outputs.",
        discussion: """
            Inputs are given in graph order as positional files, or by name with --input NAME=PATH. \
            float64 and integer arrays are converted to the model's input type (with a note). \
            Images are decoded (libpng, libjpeg-turbo) and preprocessed as torchvision does. \
            For an [N, 3, H, W] float input with fixed H and W, by default the shorter side is resized to \
            H·256/224, the center H×W cropped, values scaled to [0, 1] and normalised with ImageNet's \
            mean/std; --resize, --crop, --mean, --std and --channels change each step. \
            One line says what was done. \
            The result summary (shape, min/max/mean, top-5 for [N, classes]) goes to standard output. \
            Nothing is written when the run fails, and no file is ever half-written: each goes to a \
            temporary name in its folder and is renamed when complete (also on SIGINT/SIGTERM). An \
            output path that is an input, a folder or a dangling symlink is refused before anything runs.
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Argument(help: "Input files (.png, .jpg, .npy or .pb), in the order of the model's inputs.")
    var inputs: [String] = []

    @Option(name: .customLong("input"), help: ArgumentHelp("An input by name.", valueName: "NAME=PATH"))
    var namedInputs: [String] = []

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Write the output here (.npy; models with one output).", valueName: "PATH"))
    var output: String?

    @Option(name: .customLong("output-dir"), help: ArgumentHelp("Write every output as DIR/<output name>.npy.", valueName: "DIR"))
    var outputDir: String?

    @OptionGroup var session: SessionFlags

    @OptionGroup(title: "Image inputs") var image: ImageFlags

    @Option(name: .customLong("attention"), help: ArgumentHelp(
        "Write every attention map (.npy, PNG), attention.json and index.html into DIR.", valueName: "DIR"))
    var attentionDir: String?

    @Option(name: .customLong("map-scale"), help: ArgumentHelp(
        "Heat-map colors: 'fixed' [0, 1] for every map (to compare maps) or 'per-map' (each map's min to max, to see faint structure).",
        valueName: "fixed|per-map"))
    var mapScale = "fixed"

    @Option(name: .customLong("labels"), help: ArgumentHelp("Class names, one a line (line k names class k), for the top-5 lines.", valueName: "FILE"))
    var labelsFile: String?

    @Option(name: .customLong("query"), help: ArgumentHelp(
        "With --attention: also write, for each self-attention map on a grid, the attention of the query at pixel Y,X of the input (grid cell Y,X when the input is not an image).",
        valueName: "Y,X"))
    var query: String?

    @Option(name: .customLong("dump"), help: ArgumentHelp("Write this intermediate tensor (repeatable; * and ? wildcards).", valueName: "NAME"))
    var dumpPatterns: [String] = []

    @Flag(name: .customLong("dump-all"), help: "Write every intermediate tensor.")
    var dumpAll = false

    @Option(name: .customLong("dump-dir"), help: ArgumentHelp("Where --dump and --dump-all write (default: cbam-dump).", valueName: "DIR"))
    var dumpDir = "cbam-dump"

    @Option(name: .customLong("check-against"), help: ArgumentHelp(
        "Compare every tensor with DIR/<name>.npy (tools/dump_reference.py makes them) and name the first node that diverges.", valueName: "DIR"))
    var referenceDir: String?

    @Option(name: .customLong("tolerance"), help: "Absolute and relative tolerance for --check-against.")
    var tolerance = 1e-4

    @Flag(help: "Print per-op-type and per-node times after the run.")
    var profile = false

    @Option(name: .customLong("warmup"), help: "Unobserved runs before the one that is profiled, dumped or checked (a first run pays for page faults and BLAS set-up).")
    var warmupRuns = 0

    @Option(name: .customLong("profile-json"), help: ArgumentHelp("Write a Chrome trace (chrome://tracing, Perfetto) of the run.", valueName: "FILE"))
    var profileJSON: String?

    func validate() throws {
        if output != nil && outputDir != nil { throw ValidationError("give either -o/--output or --output-dir, not both") }
        if !(tolerance >= 0) { throw ValidationError("--tolerance must be a non-negative number") }
        if warmupRuns < 0 || warmupRuns > 10_000 { throw ValidationError("--warmup must be between 0 and 10000") }
        if AttentionExport.MapScale(rawValue: mapScale) == nil {
            throw ValidationError("--map-scale takes fixed or per-map (got '\(mapScale)')")
        }
        if query != nil {
            if attentionDir == nil { throw ValidationError("--query needs --attention DIR") }
            if queryPosition == nil { throw ValidationError("--query takes Y,X (two non-negative integers), got '\(query!)'") }
        }
        for item in namedInputs where !item.contains("=") {
            throw ValidationError("--input takes NAME=PATH, got '\(item)'")
        }
    }

    /// `--query Y,X` as two non-negative integers.
    var queryPosition: (y: Int, x: Int)? {
        guard let parts = query?.split(separator: ",", omittingEmptySubsequences: false), parts.count == 2,
              let y = Int(parts[0].trimmingCharacters(in: .whitespaces)), let x = Int(parts[1].trimmingCharacters(in: .whitespaces)),
              y >= 0, x >= 0 else { return nil }
        return (y, x)
    }

    func run() throws {
        do {
            try checkOutputPaths()
            let session = try Session(contentsOf: model, options: self.session.options)
            let labels = try labelsFile.map { try Labels.read(contentsOf: $0) }
            let (feeds, images) = try collectInputs(for: session)
            try checkOutputFiles(session: session)

            // Every extra (dump, check, profile, attention) is an observer of the one run.
            var observers: [RunObserver] = []
            let dump = dumpAll || !dumpPatterns.isEmpty ? try TensorDump(directory: dumpDir, patterns: dumpPatterns, everything: dumpAll) : nil
            let check = try referenceDir.map { try ReferenceCheck(directory: $0, atol: tolerance, rtol: tolerance) }
            let profiler = profile || profileJSON != nil ? Profiler() : nil
            if let dump { observers.append(dump) }
            if let check { observers.append(check) }
            if let profiler { observers.append(profiler) }
            let observer: RunObserver? = observers.isEmpty ? nil : observers.count == 1 ? observers[0] : ObserverGroup(observers)

            for _ in 0..<warmupRuns { _ = try session.run(feeds) }
            let results: [String: Tensor]
            if let attentionDir {
                let (outputs, maps) = try session.runCapturingAttention(feeds, observer: observer)
                results = outputs
                let firstInput = session.requiredInputs.first.flatMap { feeds[$0.name] }
                // Heat maps go over the photo as the network saw it (after the same resize and crop).
                let photo = session.requiredInputs.first.flatMap { images[$0.name] }?.pixels.rgb
                let report = try AttentionExport.write(maps, input: firstInput, modelName: model, inputName: inputs.first, to: attentionDir,
                                                       photo: photo, scale: AttentionExport.MapScale(rawValue: mapScale) ?? .fixed,
                                                       query: queryPosition)
                let blocks = Set(report.maps.map(\.block)).count
                print("attention: \(report.maps.count) map(s) in \(blocks) block(s) → \(attentionDir)/index.html")
                for map in report.maps {
                    print("  block \(map.block)  \(map.kind.padding(toLength: max(7, map.kind.count), withPad: " ", startingAt: 0))  \(Shape.describe(map.shape))  \(map.tensor)  min \(Summary.format(map.min))  max \(Summary.format(map.max))  mean \(Summary.format(map.mean))")
                }
            } else {
                results = try session.run(feeds, observer: observer)
            }
            try writeOutputs(results, session: session)
            printSummary(results, session: session, labels: labels)
            if let dump {
                try dump.writeIndex()
                print("dump: \(dump.entries.count) tensor(s) → \(dumpDir) (index.json maps files to tensor names)")
            }
            if let check { print(check.report()) }
            if let profiler {
                if profile { print(profiler.table()) }
                if let profileJSON {
                    try FileOutput.write(Array(try profiler.chromeTrace()), to: profileJSON)
                    print("profile: Chrome trace → \(profileJSON)")
                }
            }
            if let check, check.firstDivergence != nil { throw ExitCode(2) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }

    /// Every file the run reads: the model, the inputs, the references of --check-against.
    var inputPaths: [String] {
        [model] + inputs + namedInputs.map { String($0.split(separator: "=", maxSplits: 1).last ?? "") }
    }

    /// The checks that need no model: outputs that are inputs, folders or dangling symlinks,
    /// folders that are files, a missing parent folder. Run before anything is loaded.
    func checkOutputPaths() throws {
        FileOutput.protect(inputPaths)
        var files: [String] = []
        if let output { files.append(output) }
        if let profileJSON { files.append(profileJSON) }
        for path in files {
            try FileOutput.checkDestination(path)
            let parent = (path as NSString).deletingLastPathComponent
            var isFolder: ObjCBool = false
            if !parent.isEmpty, !(FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder) && isFolder.boolValue) {
                throw CBAMError(.usage, "the folder \(parent) does not exist", file: path)
            }
        }
        if files.count == 2, Self.sameFile(files[0], files[1]) {
            throw CBAMError(.usage, "-o and --profile-json name the same file", file: files[0])
        }
        var folders: [(flag: String, path: String)] = []
        if let outputDir { folders.append(("--output-dir", outputDir)) }
        if let attentionDir { folders.append(("--attention", attentionDir)) }
        if dumpAll || !dumpPatterns.isEmpty { folders.append(("--dump-dir", dumpDir)) }
        for folder in folders { try FileOutput.checkFolder(folder.path) }
        if let referenceDir, let dump = folders.first(where: { $0.flag == "--dump-dir" }), Self.sameFile(dump.path, referenceDir) {
            throw CBAMError(.usage, "--dump-dir is the --check-against folder; the dump would overwrite the references", file: referenceDir)
        }
    }

    /// --output-dir's files, known once the model's output names are: each checked, no two the same.
    func checkOutputFiles(session: Session) throws {
        guard let outputDir else { return }
        var seen: [String: String] = [:]
        for name in session.outputNames {
            let file = FileNames.safe(name) + ".npy"
            if let other = seen[file] {
                throw CBAMError(.usage, "outputs \"\(other)\" and \"\(name)\" would both be written as \(file)", file: outputDir)
            }
            seen[file] = name
            try FileOutput.checkDestination((outputDir as NSString).appendingPathComponent(file))
        }
    }

    /// Whether two paths name one file or folder (after symlinks and `..`); false when either is missing.
    static func sameFile(_ a: String, _ b: String) -> Bool {
        var x = stat(), y = stat()
        guard stat(a, &x) == 0, stat(b, &y) == 0 else { return (a as NSString).standardizingPath == (b as NSString).standardizingPath }
        return x.st_dev == y.st_dev && x.st_ino == y.st_ino
    }

    /// Binds positional and named input files to the model's inputs, converting dtypes as documented
    /// and preprocessing images; returns the feeds and the images by input name.
    func collectInputs(for session: Session) throws -> ([String: Tensor], [String: ImageInput]) {
        let required = session.requiredInputs
        var files: [(ValueInfo, String)] = []
        if inputs.count > required.count {
            throw CBAMError(.usage, "the model takes \(required.count) input(s) (\(required.map(\.name).joined(separator: ", "))) but \(inputs.count) files were given", file: model)
        }
        for (info, path) in zip(required, inputs) { files.append((info, path)) }
        for item in namedInputs {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard let info = session.model.graph.inputs.first(where: { $0.name == parts[0] }) else {
                throw CBAMError(.missingInput, "the model has no input named \"\(parts[0])\" (its inputs: \(required.map(\.name).joined(separator: ", ")))", file: model)
            }
            files.removeAll { $0.0.name == info.name }
            files.append((info, parts.count > 1 ? parts[1] : ""))
        }
        var feeds: [String: Tensor] = [:]
        var images: [String: ImageInput] = [:]
        let request = try image.request()
        for (info, path) in files {
            if ImageFile.isImagePath(path) {
                let input = try InputFiles.loadImage(path, for: info, request: request, maxPixels: image.maxPixels)
                print(input.summary(path: path))
                feeds[info.name] = input.tensor
                images[info.name] = input
                continue
            }
            let (tensor, message) = try InputFiles.conform(try InputFiles.load(path), to: info, file: path)
            if let message { note(message) }
            feeds[info.name] = tensor
        }
        if images.isEmpty && image.anyGiven {
            note("note: --resize, --crop, --mean, --std and --channels apply to .png/.jpg inputs only; no image was given")
        }
        let missing = required.filter { feeds[$0.name] == nil }
        if !missing.isEmpty {
            throw CBAMError(.missingInput, "no file given for input(s) \(missing.map { "\"\($0.name)\" \($0.shapeDescription)" }.joined(separator: ", ")); pass them in order or with --input NAME=PATH", file: model)
        }
        return (feeds, images)
    }

    func writeOutputs(_ results: [String: Tensor], session: Session) throws {
        if let output {
            guard session.outputNames.count == 1, let tensor = results[session.outputNames[0]] else {
                throw CBAMError(.usage, "the model has \(session.outputNames.count) outputs; use --output-dir DIR to write them all", file: model)
            }
            try NPY.write(tensor, to: output)
        } else if let outputDir {
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
            for name in session.outputNames {
                try NPY.write(results[name]!, to: (outputDir as NSString).appendingPathComponent(FileNames.safe(name) + ".npy"))
            }
        }
    }

    func printSummary(_ results: [String: Tensor], session: Session, labels: [String]?) {
        for name in session.outputNames {
            guard let tensor = results[name] else { continue }
            print("\(name)  \(tensor.dataType) \(Shape.describe(tensor.shape))  \(Summary.line(tensor))")
            if tensor.rank == 2, tensor.shape[1] > 1 {
                if let labels, labels.count != tensor.shape[1] {
                    note("note: \(labelsFile ?? ""): \(labels.count) labels for \(tensor.shape[1]) classes of \"\(name)\"; classes without a line are shown by number")
                }
                for (row, best) in Summary.topK(tensor).enumerated() {
                    let items = best.map { item -> String in
                        let label = labels.flatMap { item.index < $0.count ? " (\($0[item.index]))" : nil } ?? ""
                        return "\(item.index)\(label): \(Summary.format(item.score))"
                    }.joined(separator: ", ")
                    print("  [\(row)] top-\(best.count)  \(items)")
                }
            }
        }
    }
}
