import Foundation
import Testing
@testable import CBAMRuntime

/// The trained demo model (tools/train_demo.py): its outputs and its three spatial maps on the
/// stored samples equal PyTorch's, and the sample PNGs run through the image path.
@Suite("Trained demo model matches PyTorch")
struct DemoModelTests {
    static let folder = "Models/demo_shapes_cbam/"

    @Test(arguments: ["torchscript_op17.onnx", "dynamo_op20.onnx"])
    func outputsAndSpatialMapsMatchPyTorch(_ file: String) throws {
        let path = Repo.path(Self.folder + file)
        guard FileManager.default.fileExists(atPath: path) else {
            #expect(file != "torchscript_op17.onnx", "the demo model is missing: run tools/train_demo.py")
            return
        }
        let session = try Session(contentsOf: path, options: SessionOptions(threads: 2))
        let input = try NPY.read(contentsOf: Repo.path(Self.folder + "input.npy"))
        let (outputs, maps) = try session.runCapturingAttention([session.requiredInputs[0].name: input])
        let expected = try NPY.read(contentsOf: Repo.path(Self.folder + "output.npy"))
        let logits = try #require(outputs[session.model.graph.outputs[0].name])
        let comparison = Comparison(actual: logits, expected: expected, atol: 1e-4, rtol: 1e-4)
        #expect(comparison.passed, "\(file): \(comparison)")
        let spatial = maps.filter { $0.kind == .spatial }
        #expect(spatial.count == 3 && maps.filter { $0.kind == .channel }.count == 3, "\(file): \(maps.map(\.kind))")
        for (stage, map) in spatial.enumerated() {
            let reference = try NPY.read(contentsOf: Repo.path(Self.folder + "spatial_map_\(stage).npy"))
            let c = Comparison(actual: try map.tensor.reshaped(reference.shape), expected: reference, atol: 1e-5, rtol: 1e-4)
            #expect(c.passed, "\(file) spatial map \(stage): \(c)")
        }
    }

    @Test func samplePhotosRunFromTheCommandLine() throws {
        let samples = Repo.path(Self.folder + "samples")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: samples).filter({ $0.hasSuffix(".png") }).sorted(),
              let first = names.first else {
            Issue.record("no sample PNGs in \(samples)")
            return
        }
        let dir = try CLI.temporaryDirectory()
        let result = try CLI.run([Self.folder + "torchscript_op17.onnx", Self.folder + "samples/" + first, "--resize", "64", "--attention", dir,
                                  "--labels", Self.folder + "labels.txt"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: dir + "/index.html"))
        // The file's name starts with its class; the model was trained to tell the classes apart.
        let label = String(first.split(separator: ".")[0])
        let top = result.stdout.split(separator: "\n").first { $0.contains("top-") } ?? ""
        // The first name after "top-4" is the predicted class: the sample's own.
        let predicted = top.split(separator: "(").dropFirst().first?.split(separator: ")").first.map(String.init)
        #expect(predicted == label, "\(first): \(top)")
    }
}
