import Foundation
import Testing
@testable import CBAMRuntime

/// One export in Models/manifest.json (written by tools/export_models.py).
struct ZooEntry: Decodable, Sendable, CustomTestStringConvertible {
    struct File: Decodable, Sendable { let name: String; let file: String }
    struct AttentionMap: Decodable, Sendable { let index: Int; let kind: String; let shape: [Int]; let file: String }
    let name: String
    let file: String
    let exporter: String
    let opset: Int
    let inputs: [File]
    let outputs: [File]
    let atol: Double
    let rtol: Double
    let attention: [AttentionMap]?
    let onnxruntime_status: String?
    /// Counted in PyTorch's forward pass by tools/export_timm.py: sigmoid gates and softmaxes.
    let expected_gates: Int?
    let expected_self_attention: Int?

    var testDescription: String { name }

    static let all: [ZooEntry] = entries(inManifest: "Models/manifest.json")

    /// The runnable entries of a manifest in Models/ (file paths relative to Models/).
    static func entries(inManifest path: String) -> [ZooEntry] {
        entries(manifest: Repo.path(path), base: Repo.path("Models"))
    }

    /// The runnable entries of any manifest whose file paths are relative to `base`.
    static func entries(manifest path: String, base: String) -> [ZooEntry] {
        struct Manifest: Decodable { let entries: [ZooEntry] }
        guard let data = FileManager.default.contents(atPath: path),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        // Exports that failed in PyTorch have no file to run.
        return manifest.entries.filter { FileManager.default.fileExists(atPath: base + "/" + $0.file) }
    }
}

@Suite("Model zoo: every stored export matches PyTorch")
struct ZooConformanceTests {
    @Test func manifestIsPresent() {
        #expect(ZooEntry.all.count > 0, "Models/manifest.json lists no runnable export")
    }

    /// Two threads, so the parallel paths (Conv split by batch item, elementwise and pooling
    /// split by rows) are checked against PyTorch too; the node cases run single-threaded.
    ///
    /// Differential: the optimised plan (BatchNorm folded, Conv+Add+Relu fused, in-place ops)
    /// and the plan without passes must each match PyTorch, and match each other closely.
    @Test(arguments: ZooEntry.all)
    func matchesPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        var outputs: [[String: Tensor]] = []
        for optimize in [true, false] {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2, optimize: optimize))
            let results = try session.run(feeds)
            outputs.append(results)
            for output in entry.outputs {
                let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
                let actual = try #require(results[output.name], "no output named \(output.name)")
                let comparison = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
                if optimize { print("zoo \(entry.name) \(output.name): max abs error \(comparison.maxAbsoluteError)") }
                #expect(comparison.passed, "\(entry.name) output \(output.name) (passes \(optimize ? "on" : "off")): \(comparison)")
            }
        }
        for output in entry.outputs {
            let fused = try #require(outputs[0][output.name]), plain = try #require(outputs[1][output.name])
            let comparison = Comparison(actual: fused, expected: plain, atol: entry.atol, rtol: entry.rtol)
            #expect(comparison.passed, "\(entry.name) output \(output.name): fused vs unfused plan: \(comparison)")
        }
    }
}

/// Every Conv kernel (im2col + sgemm, oneDNN on plain NCHW, oneDNN in its own layout with
/// reorders, oneDNN's Winograd and ours, the batch-folded GEMM, the streamed kernel, our grouped kernel) against PyTorch on one export of each zoo model: the plan normally times them and
/// keeps the fastest, so each must be right on its own.
@Suite("Conv kernels: each one matches PyTorch")
struct ConvolutionKernelTests {
    static let entries = ZooEntry.all.filter { $0.file.hasSuffix("torchscript_op17.onnx") }

    @Test(arguments: entries)
    func everyKernelMatchesPyTorch(_ entry: ZooEntry) throws {
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        for kernel in [ConvolutionKernel.im2col, .oneDNN, .oneDNNBlocked, .oneDNNWinograd, .oneDNNWinogradPerImage, .folded, .streamed, .winogradF2, .grouped] {
            let session = try Session(contentsOf: Repo.path("Models/" + entry.file), options: SessionOptions(threads: 2, convolution: kernel))
            let results = try session.run(feeds)
            for output in entry.outputs {
                let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
                let comparison = Comparison(actual: try #require(results[output.name]), expected: expected, atol: entry.atol, rtol: entry.rtol)
                #expect(comparison.passed, "\(entry.name) with \(kernel): \(comparison)")
            }
        }
    }
}

@Suite("Attention maps equal PyTorch's")
struct AttentionConformanceTests {
    static let entries = ZooEntry.all.filter { $0.attention != nil }

    /// cbam-run must find exactly the gates the PyTorch model has (count, order, kind),
    /// and each map must equal the one PyTorch's forward hooks captured.
    @Test(arguments: entries)
    func mapsMatchPyTorch(_ entry: ZooEntry) throws {
        let session = try Session(contentsOf: Repo.path("Models/" + entry.file))
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        let (_, maps) = try session.runCapturingAttention(feeds)
        let expected = entry.attention ?? []
        #expect(maps.map(\.kind.rawValue) == expected.map(\.kind), "\(entry.name): kinds found \(maps.map(\.kind.rawValue)), PyTorch has \(expected.map(\.kind))")
        for (map, reference) in zip(maps, expected) {
            let stored = try NPY.read(contentsOf: Repo.path("Models/" + reference.file))
            // 1e-5 absolute plus 1e-4 relative: deep networks (ResNet-50 + CBAM, 16 blocks) reach
            // 1.3e-5 absolute in their last maps, float32 rounding on both sides.
            // Exporters may squeeze or unsqueeze the gate (e.g. [N,C] vs [N,C,1,1]); the values must agree element for element.
            #expect(map.tensor.count == stored.count, "\(entry.name) map \(map.index): \(Shape.describe(map.tensor.shape)) vs PyTorch \(Shape.describe(stored.shape))")
            guard map.tensor.count == stored.count else { continue }
            let comparison = Comparison(actual: try map.tensor.reshaped(stored.shape), expected: stored, atol: 1e-5, rtol: 1e-4)
            #expect(comparison.passed, "\(entry.name) map \(map.index) (\(map.kind)): \(comparison)")
        }
    }
}

/// Differential: values carried between convolutions in the convolution kernels' layout
/// (NHWC or nChw8c, by CPU) against the all-plain plan and PyTorch, on every zoo export.
/// The threshold is lowered so every value the layout pass can carry is carried, even in
/// the small models (by default only neighbours of large convolutions are), and the
/// attention maps, read through the observer's layout conversion, must match PyTorch too.
@Suite("Carried layouts match the plain plan and PyTorch")
struct CarriedLayoutTests {
    static func options(carry: Bool, layout: Layout? = nil) -> SessionOptions {
        var options = SessionOptions(threads: 2, carryLayouts: carry)
        options.carryFromMACs = 0
        options.carriedLayout = layout
        return options
    }

    @Test(arguments: ZooEntry.all)
    func carriedMatchesPlain(_ entry: ZooEntry) throws {
        try check(entry, layout: nil)
    }

    /// The layouts of the other CPU kinds (nChw8c is AVX2's; nChw16c and NHWC AVX-512's), on
    /// one export of each model: the conv kernels reorder into what they read on this CPU.
    @Test(arguments: ZooEntry.all.filter { $0.file.hasSuffix("torchscript_op17.onnx") })
    func otherCPUsLayoutsMatchPlain(_ entry: ZooEntry) throws {
        for layout in [Layout.channelBlocked(8), .channelBlocked(16), .channelsLast] where layout != LayoutPass.machineLayout {
            try check(entry, layout: layout)
        }
    }

    /// Every Conv that oneDNN can run in the layout its carried neighbours lie in takes that
    /// kernel (forced, instead of timed against the others), on one export of each model.
    @Test(arguments: ZooEntry.all.filter { $0.file.hasSuffix("torchscript_op17.onnx") })
    func carriedLayoutKernelsMatchPlain(_ entry: ZooEntry) throws {
        try check(entry, layout: nil, convolution: .oneDNNCarried)
    }

    /// ResNeXt's grouped convolutions prefer a grouped-block layout on AVX-512 (nChw4c between
    /// NHWC neighbours): forced to the carried one, they take it and the plan makes fewer
    /// reorders than with their preferred kernel. With AVX2 alone (`DNNL_MAX_CPU_ISA=AVX2`
    /// on this Xeon: nChw8c carried) oneDNN has no kernel for the zoo's grouped convolutions
    /// (4 channels per group) in the carried layout, so there is nothing to take; the outputs
    /// are still checked by ``carriedLayoutKernelsMatchPlain(_:)``.
    @Test func groupedConvolutionsTakeTheCarriedLayout() throws {
        guard LayoutPass.machineLayout != nil else { return }
        let path = Repo.path("Models/seed002_resnext50/torchscript_op17.onnx")
        let x = try NPY.read(contentsOf: Repo.path("Models/seed002_resnext50/input.npy"))
        var options = Self.options(carry: true)
        options.convolution = .oneDNNCarried
        let carried = try Session(contentsOf: path, options: options)
        options.convolution = .oneDNNBlocked
        let blocked = try Session(contentsOf: path, options: options)
        let name = try #require(carried.model.graph.inputs.first?.name)
        let steps = try carried.plan(for: [name: x]).steps.filter { $0.kernel.detail.hasPrefix("onednn-carried:") }
        if LayoutPass.machineLayout == .channelsLast {
            #expect(!steps.isEmpty, "\(OneDNN.isaName)")
            #expect(try carried.prepare([name: x]).reorders < blocked.prepare([name: x]).reorders, "\(OneDNN.isaName)")
        } else {
            #expect(steps.isEmpty, "\(OneDNN.isaName): a carried kernel appeared; make this test expect fewer reorders here too")
        }
    }

    func check(_ entry: ZooEntry, layout: Layout?, convolution: ConvolutionKernel = .fastest) throws {
        guard LayoutPass.machineLayout != nil else { return }
        var feeds: [String: Tensor] = [:]
        for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
        var options = Self.options(carry: true, layout: layout)
        options.convolution = convolution
        let carried = try Session(contentsOf: Repo.path("Models/" + entry.file), options: options)
        let plain = try Session(contentsOf: Repo.path("Models/" + entry.file), options: Self.options(carry: false))
        #expect(try plain.prepare(feeds).carriedValues == 0)
        let (a, b) = (try carried.run(feeds), try plain.run(feeds))
        for output in entry.outputs {
            let expected = try NPY.read(contentsOf: Repo.path("Models/" + output.file))
            let actual = try #require(a[output.name])
            let versusPyTorch = Comparison(actual: actual, expected: expected, atol: entry.atol, rtol: entry.rtol)
            #expect(versusPyTorch.passed, "\(entry.name) \(output.name), carried \(layout.map { "\($0)" } ?? "machine layout") vs PyTorch: \(versusPyTorch)")
            let versusPlain = Comparison(actual: actual, expected: try #require(b[output.name]), atol: entry.atol, rtol: entry.rtol)
            #expect(versusPlain.passed, "\(entry.name) \(output.name), carried vs plain plan: \(versusPlain)")
        }
        // The maps come out of carried values through the observer: they must be PyTorch's.
        guard let references = entry.attention else { return }
        let (_, maps) = try carried.runCapturingAttention(feeds)
        #expect(maps.count == references.count)
        for (map, reference) in zip(maps, references) {
            let stored = try NPY.read(contentsOf: Repo.path("Models/" + reference.file))
            guard map.tensor.count == stored.count else {
                Issue.record("\(entry.name) map \(map.index): \(map.tensor.count) values, PyTorch \(stored.count)")
                continue
            }
            let comparison = Comparison(actual: try map.tensor.reshaped(stored.shape), expected: stored, atol: 1e-5, rtol: 1e-4)
            #expect(comparison.passed, "\(entry.name) map \(map.index) from a carried plan: \(comparison)")
        }
    }

    /// The dynamo exporter ends a ResNet with ReduceMean over H and W where TorchScript writes
    /// GlobalAveragePool; both read the carried layout, so neither export turns its last stage's
    /// residual stream back to NCHW (that stream is one group of values, and a plain-only reader
    /// anywhere in it kept it all plain): the two exports of each ResNet reorder equally often.
    @Test func dynamoExportsCarryAsFarAsTorchScripts() throws {
        guard LayoutPass.machineLayout != nil else { return }
        for model in ["seed002_resnext50", "seed004_resnet50_cbam", "seed002_se_resnet34"] {
            var reorders: [Int] = [], heads: [String] = []
            for file in ["torchscript_op17.onnx", "dynamo_op20.onnx"] {
                let x = try NPY.read(contentsOf: Repo.path("Models/\(model)/input.npy"))
                var options = Self.options(carry: true)
                options.convolution = .oneDNNBlocked
                let session = try Session(contentsOf: Repo.path("Models/\(model)/\(file)"), options: options)
                let name = try #require(session.model.graph.inputs.first?.name)
                reorders.append(try session.prepare([name: x]).reorders)
                let plan = try session.plan(for: [name: x])
                heads += plan.steps.filter { ["ReduceMean", "GlobalAveragePool"].contains($0.entry.node.opType) }.map(\.kernel.detail)
            }
            #expect(reorders[0] == reorders[1], "\(model): TorchScript \(reorders[0]) reorders, dynamo \(reorders[1])")
            #expect(!heads.isEmpty && heads.allSatisfy { $0.hasPrefix("simd reduce ") && $0 != "simd reduce" }, "\(model) heads: \(heads)")
        }
    }

    /// The differential test above compares something: the CBAM ResNets carry most of their values.
    @Test func theResNetsCarryTheirFeatureMaps() throws {
        guard LayoutPass.machineLayout != nil else { return }
        let resnets = ZooEntry.all.filter { $0.name.contains("resnet") && $0.file.hasSuffix("torchscript_op17.onnx") }
        #expect(!resnets.isEmpty)
        for entry in resnets {
            var feeds: [String: Tensor] = [:]
            for input in entry.inputs { feeds[input.name] = try NPY.read(contentsOf: Repo.path("Models/" + input.file)) }
            let summary = try Session(contentsOf: Repo.path("Models/" + entry.file), options: Self.options(carry: true)).prepare(feeds)
            #expect(summary.carriedValues >= 10, "\(entry.name) carries \(summary.carriedValues) values")
            #expect(summary.carriedLayout == LayoutPass.machineLayout?.description)
        }
    }
}
