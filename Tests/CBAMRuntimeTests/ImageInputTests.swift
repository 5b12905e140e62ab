import Foundation
import Testing
@testable import CBAMRuntime

// Image inputs: decoding with libpng/libjpeg-turbo and preprocessing, compared with
// torchvision's transforms on the same files (Fixtures/images, made by
// tools/make_image_fixtures.py), and one test per refused image.

enum ImageFixtures {
    static let directory = Repo.path("Tests/CBAMRuntimeTests/Fixtures/images")
    static func path(_ name: String) -> String { directory + "/" + name }

    struct Case: Decodable, CustomStringConvertible {
        var name: String
        var file: String
        var resize: Int?
        var crop: [Int]?
        var mean: Values?
        var std: Values?
        var channels: String
        var expected: String
        var description: String { name }
    }

    /// `"imagenet"` or a list of numbers.
    enum Values: Decodable {
        case imagenet
        case list([Float])
        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self), text == "imagenet" {
                self = .imagenet
            } else {
                self = .list(try container.decode([Float].self))
            }
        }
    }

    struct Manifest: Decodable { var cases: [Case] }

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: path("manifest.json")),
              let manifest = try? JSONDecoder().decode(Manifest.self, from: data) else { return [] }
        return manifest.cases
    }()

    /// The preprocessing a case asks for, through the same request type the command line fills.
    static func preprocessing(_ c: Case) throws -> ImagePreprocessing {
        var request = ImagePreprocessing.Request()
        request.resize = c.resize
        if let crop = c.crop { request.crop = ImagePreprocessing.Size(height: crop[0], width: crop[1]) }
        switch c.mean {
        case .imagenet: request.meanIsImagenet = true
        case .list(let v): request.mean = v
        case nil: break
        }
        switch c.std {
        case .imagenet: request.stdIsImagenet = true
        case .list(let v): request.std = v
        case nil: break
        }
        request.channels = ImagePreprocessing.Channels(rawValue: c.channels)
        // A symbolic-size input: only the steps asked for are done.
        let info = ValueInfo(name: "x", elementType: .float, shape: [.symbolic("n"), .symbolic("c"), .symbolic("h"), .symbolic("w")])
        return try ImagePreprocessing.resolve(request, for: info).0
    }
}

@Suite("Image inputs")
struct ImageInputTests {
    @Test func theFixturesAreThere() {
        #expect(ImageFixtures.cases.count >= 8, "Fixtures/images/manifest.json is missing or short; run tools/make_image_fixtures.py")
    }

    /// The tolerance is 1/255 on the [0, 1] scale (one 8-bit level), before normalisation: the
    /// normalised difference is multiplied back by the channel's std.
    @Test(arguments: ImageFixtures.cases)
    func matchesTorchvision(_ c: ImageFixtures.Case) throws {
        let steps = try ImageFixtures.preprocessing(c)
        let decoded = try ImageFile.read(contentsOf: ImageFixtures.path(c.file))
        let actual = try steps.tensor(decoded.image)
        let expected = try NPY.read(contentsOf: ImageFixtures.path(c.expected))
        #expect(actual.shape == expected.shape)
        guard actual.shape == expected.shape else { return }
        let a = try actual.floats(), e = try expected.floats()
        let channels = actual.shape[1], plane = a.count / channels
        let stds = try ImagePreprocessing.perChannel(steps.std, count: channels, fill: 1, what: "std")
        var largest: Float = 0
        for i in 0..<a.count {
            largest = max(largest, abs(a[i] - e[i]) * stds[i / plane])
        }
        print("\(c.name): largest difference from torchvision \(largest * 255)/255 before normalisation")
        #expect(largest <= 1.0 / 255 + 1e-6, "\(c.name): \(largest * 255)/255")
    }

    @Test func decodesEveryKindToTheSameSize() throws {
        let sizes: [(String, Int, Int, String)] = [
            ("hopper_97x61.png", 97, 61, "RGB, 8-bit"),
            ("hopper_75x50.jpg", 75, 50, "color"),
            ("hopper_gray_31x45.jpg", 31, 45, "gray"),
            ("hopper_palette_interlaced_53x71.png", 53, 71, "palette, 8-bit, interlaced"),
            ("hopper_rgba16_40x33.png", 40, 33, "RGBA, 16-bit"),
            ("hopper_gray_29x37.png", 29, 37, "gray, 8-bit"),
        ]
        for (file, width, height, details) in sizes {
            let decoded = try ImageFile.read(contentsOf: ImageFixtures.path(file))
            #expect(decoded.image.width == width && decoded.image.height == height, "\(file)")
            #expect(decoded.details == details, "\(file): \(decoded.details)")
        }
    }

    @Test func grayFilesRepeatTheirValueInEveryChannel() throws {
        let decoded = try ImageFile.read(contentsOf: ImageFixtures.path("hopper_gray_29x37.png")).image
        var distinct = Set<UInt8>()
        for i in 0..<(decoded.width * decoded.height) {
            #expect(decoded.pixels[3 * i] == decoded.pixels[3 * i + 1] && decoded.pixels[3 * i] == decoded.pixels[3 * i + 2])
            distinct.insert(decoded.pixels[3 * i])
        }
        #expect(distinct.count > 20)  // a photo, not a flat plane
    }

    // MARK: - Refusals

    /// Reads `file` expecting a `.badImage` error that names the file and says `phrase`.
    func refuses(_ file: String, saying phrase: String, maxPixels: Int = ImageFile.defaultMaxPixels) {
        let path = ImageFixtures.path(file)
        do {
            _ = try ImageFile.read(contentsOf: path, maxPixels: maxPixels)
            Issue.record("\(file) was decoded")
        } catch let error as CBAMError {
            #expect(error.kind == .badImage, "\(file): \(error)")
            #expect(error.file == path)
            #expect(error.message.contains(phrase), "\(file): \(error.message)")
        } catch {
            Issue.record("\(file): \(error)")
        }
    }

    @Test func aTruncatedPNGIsRefused() { refuses("bad_truncated.png", saying: "truncated") }
    @Test func aTruncatedJPEGIsRefused() { refuses("bad_truncated.jpg", saying: "truncated") }
    @Test func hugeDimensionsAreRefusedBeforeDecoding() {
        refuses("bad_huge.png", saying: "100000×100000")
        refuses("bad_huge.jpg", saying: "60000×60000")
    }
    @Test func thePixelLimitIsAdjustable() {
        refuses("hopper_97x61.png", saying: "5917 pixels, over the limit of 5000", maxPixels: 5000)
        refuses("hopper_75x50.jpg", saying: "over the limit of 3000", maxPixels: 3000)
    }
    @Test func aCMYKJPEGIsRefused() { refuses("bad_cmyk.jpg", saying: "CMYK") }
    @Test func aFileThatIsNeitherIsRefused() { refuses("bad_not_an_image.png", saying: "neither a PNG nor a JPEG") }

    @Test func damagedBytesAreRefusedNotCrashed() throws {
        // Every prefix of a PNG and a JPEG, and the files with a byte flipped every 97 bytes:
        // whatever libpng and libjpeg say, the answer is a thrown error or an image, never a crash.
        for file in ["hopper_palette_interlaced_53x71.png", "hopper_75x50.jpg"] {
            let bytes = [UInt8](FileManager.default.contents(atPath: ImageFixtures.path(file))!)
            var refused = 0
            for end in stride(from: 0, to: bytes.count, by: 37) {
                do { _ = try ImageFile.decode(Array(bytes[..<end])) } catch is CBAMError { refused += 1 }
            }
            #expect(refused > 0)
            for i in stride(from: 0, to: bytes.count, by: 97) {
                var damaged = bytes
                damaged[i] ^= 0x5A
                _ = try? ImageFile.decode(damaged)
            }
        }
    }

    @Test func aMissingFileIsAnIOError() {
        #expect(throws: CBAMError.self) { try ImageFile.read(contentsOf: "/nonexistent/photo.png") }
    }

    // MARK: - Preprocessing rules

    @Test func torchvisionsResizeRule() throws {
        #expect(try ImagePreprocessing.resizedSize(width: 500, height: 375, shorter: 256) == (341, 256))
        #expect(try ImagePreprocessing.resizedSize(width: 375, height: 500, shorter: 256) == (256, 341))
        #expect(try ImagePreprocessing.resizedSize(width: 97, height: 61, shorter: 36) == (57, 36))
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resizedSize(width: 1, height: 60000, shorter: 60000) }
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resizedSize(width: 10, height: 10, shorter: 0) }
    }

    @Test func pythonRoundsHalvesToEven() {
        // round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(3.5) = 4
        #expect([0, 1, 2, 3, 4, 5, 6, 7].map(ImagePreprocessing.halfRoundedToEven) == [0, 0, 1, 2, 2, 2, 3, 4])
    }

    @Test func anImageNetStyleInputGetsTheEvaluationTransform() throws {
        let info = ValueInfo(name: "x", elementType: .float, shape: [.symbolic("batch"), .fixed(3), .fixed(224), .fixed(224)])
        let (steps, defaults) = try ImagePreprocessing.resolve(.init(), for: info)
        #expect(defaults)
        #expect(steps.resize == 256)
        #expect(steps.crop == .init(height: 224, width: 224))
        #expect(steps.mean == ImagePreprocessing.imagenetMean && steps.std == ImagePreprocessing.imagenetStd)
        #expect(steps.channels == .rgb)
        #expect(steps.description == "shorter side resized to 256 (bilinear, antialiased), center crop 224×224, scaled to [0, 1], normalised with ImageNet mean/std, RGB")
        // What the user gives wins, step by step.
        let (mine, _) = try ImagePreprocessing.resolve(.init(resize: 300, mean: [0.5], std: [0.5], channels: .bgr), for: info)
        #expect(mine.resize == 300 && mine.crop == .init(height: 224, width: 224) && mine.mean == [0.5] && mine.std == [0.5])
        // The imagenet preset follows the colors when the channels are BGR.
        let (bgr, _) = try ImagePreprocessing.resolve(.init(channels: .bgr), for: info)
        #expect(bgr.mean == [0.406, 0.456, 0.485])
    }

    @Test func otherInputsOnlyGetWhatIsAskedFor() throws {
        let free = ValueInfo(name: "x", elementType: .float, shape: [.symbolic("n"), .fixed(3), .symbolic("h"), .symbolic("w")])
        let (steps, defaults) = try ImagePreprocessing.resolve(.init(), for: free)
        #expect(!defaults && steps.resize == nil && steps.crop == nil && steps.mean == nil && steps.std == nil)
        let mnist = ValueInfo(name: "x", elementType: .float, shape: [.fixed(1), .fixed(1), .fixed(28), .fixed(28)])
        #expect(try ImagePreprocessing.resolve(.init(), for: mnist).0.channels == .gray)
    }

    @Test func inputsAnImageCannotFeedAreRefused() {
        let rgb = ValueInfo(name: "x", elementType: .float, shape: [.fixed(1), .fixed(3), .fixed(32), .fixed(32)])
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resolve(.init(channels: .gray), for: rgb) }
        let ints = ValueInfo(name: "ids", elementType: .int64, shape: [.fixed(1), .fixed(3), .fixed(32), .fixed(32)])
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resolve(.init(), for: ints) }
        let flat = ValueInfo(name: "x", elementType: .float, shape: [.fixed(1), .fixed(3072)])
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resolve(.init(), for: flat) }
        let gray = ValueInfo(name: "x", elementType: .float, shape: [.fixed(1), .fixed(1), .fixed(8), .fixed(8)])
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resolve(.init(meanIsImagenet: true), for: gray) }
        #expect(throws: CBAMError.self) { try ImagePreprocessing.resolve(.init(std: [0]), for: rgb) }
    }

    @Test func aWrongFinalSizeSaysWhatToPass() throws {
        let info = ValueInfo(name: "x", elementType: .float, shape: [.symbolic("n"), .fixed(3), .fixed(32), .fixed(32)])
        do {
            _ = try InputFiles.loadImage(ImageFixtures.path("hopper_97x61.png"), for: info, request: .init(crop: .init(height: 30, width: 32)))
            Issue.record("a 30×32 crop fed a 32×32 input")
        } catch let error as CBAMError {
            #expect(error.message.contains("needs height 32") && error.message.contains("--crop"), "\(error)")
        }
    }
}

extension CLITests {
    static let imageModel = "Models/seed003_vgg19bn_cbam/torchscript_op17.onnx"

    /// The default transform for a [batch, 3, 32, 32] input is Resize(36), CenterCrop(32),
    /// ImageNet mean/std: the fixture `imagenet_default_32.npy` is torchvision's tensor for it,
    /// so the model must give the same output from the PNG as from that tensor.
    @Test func aPNGInputRunsLikeTorchvisionsTensor() throws {
        let dir = try CLI.temporaryDirectory()
        let image = ImageFixtures.path("hopper_97x61.png")
        let fromImage = try CLI.run([Self.imageModel, image, "-o", dir + "/a.npy"])
        #expect(fromImage.status == 0, "\(fromImage.stderr)")
        #expect(fromImage.stdout.contains("image: \(image) (PNG 97×61, RGB, 8-bit) → shorter side resized to 36 (bilinear, antialiased), center crop 32×32, scaled to [0, 1], normalised with ImageNet mean/std, RGB → [1, 3, 32, 32]"),
                "\(fromImage.stdout)")
        let fromTensor = try CLI.run([Self.imageModel, ImageFixtures.path("imagenet_default_32.npy"), "-o", dir + "/b.npy"])
        #expect(fromTensor.status == 0, "\(fromTensor.stderr)")
        let a = try NPY.read(contentsOf: dir + "/a.npy"), b = try NPY.read(contentsOf: dir + "/b.npy")
        let comparison = Comparison(actual: a, expected: b, atol: 1e-4, rtol: 1e-4)
        #expect(comparison.passed, "\(comparison)")
    }

    @Test func aBadImageIsOneLine() throws {
        let image = ImageFixtures.path("bad_truncated.jpg")
        let result = try CLI.run([Self.imageModel, image])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("cbam-run: error: \(image): cannot decode the JPEG image data: the file ends early (truncated)"), "\(result.stderr)")
        let flags = try CLI.run([Self.imageModel, ImageFixtures.path("hopper_97x61.png"), "--crop", "0x5"])
        #expect(flags.status != 0)
        #expect(flags.stderr.contains("--crop"), "\(flags.stderr)")
    }
}
