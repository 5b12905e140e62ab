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
            ("hopper_palette_trns_45x38.png", 45, 38, "palette, 8-bit"),
            ("hopper_gray4_trns_27x33.png", 27, 33, "gray, 4-bit"),
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

    @Test func aResizeOrCropOverThePixelLimitIsRefusedBeforeAllocating() throws {
        let image = RGBImage(width: 4, height: 2, fill: (1, 2, 3))
        let huge = ImagePreprocessing(resize: 60000)  // 120000×60000 would be 21 GB of RGB
        #expect(throws: CBAMError.self) { try huge.pixels(image) }
        let crop = ImagePreprocessing(crop: .init(height: 50000, width: 50000))
        #expect(throws: CBAMError.self) { try crop.pixels(image) }
        #expect(try ImagePreprocessing(crop: .init(height: 10, width: 10)).pixels(image, maxPixels: 100).width == 10)
        #expect(throws: CBAMError.self) { try ImagePreprocessing(crop: .init(height: 10, width: 11)).pixels(image, maxPixels: 100) }
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

// MARK: - Overlays on the photo, map scale, labels

extension ImageInputTests {
    @Test func theHeatMapGoesOverThePhotoInItsOwnColors() throws {
        // A 4×3 photo with distinct colors; panels at the photo's size, so no resampling.
        var photo = RGBImage(width: 4, height: 3, fill: (0, 0, 0))
        for y in 0..<3 { for x in 0..<4 { photo.set(x: x, y: y, (UInt8(40 * x + 10), UInt8(60 * y + 5), 200)) } }
        let map: [Float] = [0.2, 0.4, 0.6, 0.8, 0.1, 0.3, 0.5, 0.7, 0.0, 1.0, 0.5, 0.5]
        let picture = try AttentionRendering.heatmap(map, height: 3, width: 4, size: nil, overlay: nil, photo: photo)
        let layout = AttentionRendering.HeatmapLayout(panelWidth: 4, panelHeight: 3, panelCount: 3)
        for y in 0..<3 {
            for x in 0..<4 {
                // Panel 0 is the photo exactly (not min-max stretched as a tensor overlay is).
                let shown = picture.pixel(x: layout.panelX(0) + x, y: layout.panelY + y)
                let original = photo.pixel(x: x, y: y)!
                #expect(shown.map { [$0.0, $0.1, $0.2] } == [original.0, original.1, original.2])
                // Panel 1 is the map on the fixed scale.
                let heat = picture.pixel(x: layout.panelX(1) + x, y: layout.panelY + y)
                let expected = AttentionRendering.color(map[y * 4 + x])
                #expect(heat.map { [$0.0, $0.1, $0.2] } == [expected.0, expected.1, expected.2])
            }
        }
    }

    @Test func perMapScaleStretchesTheMapsOwnRange() throws {
        // A map between 0.43 and 0.50: on the fixed scale every pixel is near teal; stretched,
        // its minimum takes the color map's first color and its maximum the last.
        let map: [Float] = [0.43, 0.45, 0.47, 0.50]
        let fixed = try AttentionRendering.heatmap(map, height: 2, width: 2, size: nil, overlay: nil)
        let stretched = try AttentionRendering.heatmap(map, height: 2, width: 2, size: nil, overlay: nil, range: (0.43, 0.50))
        var layout = AttentionRendering.HeatmapLayout(panelWidth: 2, panelHeight: 2, panelCount: 1)
        func heat(_ image: RGBImage, _ x: Int, _ y: Int) -> [UInt8] {
            let p = image.pixel(x: layout.panelX(0) + x, y: layout.panelY + y)!
            return [p.0, p.1, p.2]
        }
        let first = AttentionRendering.color(0), last = AttentionRendering.color(1), low = AttentionRendering.color(0.43)
        #expect(heat(stretched, 0, 0) == [first.0, first.1, first.2])
        #expect(heat(stretched, 1, 1) == [last.0, last.1, last.2])
        #expect(heat(fixed, 0, 0) == [low.0, low.1, low.2])
        // The scale bar says the range.
        layout.labels = ["0.5", "0.465", "0.43"]
        #expect(stretched.width == layout.width)
        #expect(AttentionRendering.scaleLabel(0.465) == "0.465" && AttentionRendering.scaleLabel(0.000123) == "0.000123")
        #expect(throws: CBAMError.self) { try AttentionRendering.heatmap(map, height: 2, width: 2, size: nil, overlay: nil, range: (0.5, 0.5)) }
    }

    @Test func labelsFilesAreReadLineByLine() throws {
        let dir = try CLI.temporaryDirectory()
        try Data("tench\r\ngoldfish  \n\ngreat white shark\n".utf8).write(to: URL(fileURLWithPath: dir + "/labels.txt"))
        #expect(try Labels.read(contentsOf: dir + "/labels.txt") == ["tench", "goldfish", "", "great white shark"])
        try Data().write(to: URL(fileURLWithPath: dir + "/empty.txt"))
        #expect(throws: CBAMError.self) { try Labels.read(contentsOf: dir + "/empty.txt") }
        try Data([0xFF, 0xFE, 0x00, 0x41]).write(to: URL(fileURLWithPath: dir + "/binary.txt"))
        #expect(throws: CBAMError.self) { try Labels.read(contentsOf: dir + "/binary.txt") }
    }
}

extension CLITests {
    @Test func attentionOverThePhotoWithPerMapScaleAndLabels() throws {
        let dir = try CLI.temporaryDirectory()
        let labels = (0..<100).map { "kind \($0)" }.joined(separator: "\n") + "\n"
        try Data(labels.utf8).write(to: URL(fileURLWithPath: dir + "/labels.txt"))
        let result = try CLI.run([Self.imageModel, ImageFixtures.path("hopper_75x50.jpg"), "--attention", dir + "/maps",
                                  "--map-scale", "per-map", "--labels", dir + "/labels.txt"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.range(of: #"top-5  \d+ \(kind \d+\): "#, options: .regularExpression) != nil, "\(result.stdout)")
        let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/maps/attention.json"))
        let report = try JSONDecoder().decode(AttentionReport.self, from: data)
        #expect(report.mapScale == "per-map")
        let spatial = report.maps.filter { $0.kind == "spatial" }
        #expect(!spatial.isEmpty)
        for map in spatial {
            #expect(map.displayRange.map { abs($0[0] - map.min) < 1e-6 && abs($0[1] - map.max) < 1e-6 } == true, "\(map.tensor)")
        }
        // The first spatial map's picture shows the photo, 32×32 enlarged 6× to 192×192, in panel 0.
        let first = try #require(spatial.first?.files.first { $0.hasSuffix(".png") })
        let picture = try ImageFile.read(contentsOf: dir + "/maps/" + first).image
        #expect(picture.height >= 192 + 12)
        let html = try String(contentsOfFile: dir + "/maps/index.html", encoding: .utf8)
        #expect(html.contains("stretched per map"))

        let bad = try CLI.run([Self.imageModel, ImageFixtures.path("hopper_75x50.jpg"), "--map-scale", "log"])
        #expect(bad.status != 0 && bad.stderr.contains("--map-scale"))
    }
}
