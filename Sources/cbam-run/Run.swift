import ArgumentParser
import CBAMRuntime
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on inputs from .npy (or ONNX TensorProto .pb) files and write its outputs.",
        discussion: """
            Inputs are given in graph order as positional files, or by name with --input NAME=PATH.
            float64 and integer arrays are converted to the model's input type (with a note).
            The result summary (shape, min/max/mean, top-5 for [N, classes]) goes to standard output.
            Nothing is written when the run fails.
            """)

    @Argument(help: "The .onnx model file.")
    var model: String

    @Argument(help: "Input files (.npy or .pb), in the order of the model's inputs.")
    var inputs: [String] = []

    @Option(name: .customLong("input"), help: ArgumentHelp("An input by name.", valueName: "NAME=PATH"))
    var namedInputs: [String] = []

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("Write the output here (.npy; models with one output).", valueName: "PATH"))
    var output: String?

    @Option(name: .customLong("output-dir"), help: ArgumentHelp("Write every output as DIR/<output name>.npy.", valueName: "DIR"))
    var outputDir: String?

    @OptionGroup var session: SessionFlags

    func validate() throws {
        if output != nil && outputDir != nil { throw ValidationError("give either -o/--output or --output-dir, not both") }
        for item in namedInputs where !item.contains("=") {
            throw ValidationError("--input takes NAME=PATH, got '\(item)'")
        }
    }

    func run() throws {
        do {
            let session = try Session(contentsOf: model, options: self.session.options)
            let feeds = try collectInputs(for: session)
            let results = try session.run(feeds)
            try writeOutputs(results, session: session)
            printSummary(results, session: session)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }

    /// Binds positional and named input files to the model's inputs, converting dtypes as documented.
    func collectInputs(for session: Session) throws -> [String: Tensor] {
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
        for (info, path) in files {
            let (tensor, message) = try InputFiles.conform(try InputFiles.load(path), to: info, file: path)
            if let message { note(message) }
            feeds[info.name] = tensor
        }
        let missing = required.filter { feeds[$0.name] == nil }
        if !missing.isEmpty {
            throw CBAMError(.missingInput, "no file given for input(s) \(missing.map { "\"\($0.name)\" \($0.shapeDescription)" }.joined(separator: ", ")); pass them in order or with --input NAME=PATH", file: model)
        }
        return feeds
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

    func printSummary(_ results: [String: Tensor], session: Session) {
        for name in session.outputNames {
            guard let tensor = results[name] else { continue }
            print("\(name)  \(tensor.dataType) \(Shape.describe(tensor.shape))  \(Summary.line(tensor))")
            if tensor.rank == 2, tensor.shape[1] > 1 {
                for (row, best) in Summary.topK(tensor).enumerated() {
                    let items = best.map { "\($0.index): \(Summary.format($0.score))" }.joined(separator: ", ")
                    print("  [\(row)] top-\(best.count)  \(items)")
                }
            }
        }
    }
}
