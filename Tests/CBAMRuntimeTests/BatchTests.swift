import Foundation
import Testing
@testable import CBAMRuntime

@Suite("Batch runs")
struct BatchTests {
    @Test func stackingAndTakingItemsBack() throws {
        let a = try Tensor(shape: [1, 2, 2], floats: [1, 2, 3, 4]), b = try Tensor(shape: [1, 2, 2], floats: [5, 6, 7, 8])
        let both = try Tensor.stacking([a, b])
        #expect(both.shape == [2, 2, 2])
        #expect(try both.floats() == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try both.item(1) == b)
        #expect(throws: CBAMError.self) { try both.item(2) }
        #expect(throws: CBAMError.self) { try Tensor.stacking([a, try Tensor(shape: [1, 4], floats: [1, 2, 3, 4])]) }
    }

    @Test func resultsLinesSurviveACutOffLineAndCompactToOnePerFile() throws {
        let dir = try CLI.temporaryDirectory()
        let path = dir + "/results.jsonl"
        var a = BatchRecord(file: "b.png", status: "error")
        a.error = "truncated"
        try BatchResults.append(a, to: path)
        // A run killed mid-line leaves half a record; the next append starts a new line.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"file\":\"c.png\",\"sta".utf8))
        try handle.close()
        try BatchResults.append(BatchRecord(file: "a.png", status: "ok"), to: path)
        try BatchResults.append(BatchRecord(file: "b.png", status: "ok"), to: path)
        let records = BatchResults.read(path)
        #expect(Set(records.keys) == ["a.png", "b.png"])
        #expect(records["b.png"]?.isOK == true)  // the last line for a file wins
        try BatchResults.compact(path)
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines == [#"{"file":"a.png","status":"ok"}"#, #"{"file":"b.png","status":"ok"}"#])
    }
}

extension CLITests {
    /// Three photos and a truncated PNG in a folder: every input gets a line, the bad one an
    /// error; the exit status says something failed; a second run redoes only the failure.
    @Test func batchRecordsEveryInputAndResumes() throws {
        let dir = try CLI.temporaryDirectory()
        let photos = dir + "/photos"
        try FileManager.default.createDirectory(atPath: photos + "/more", withIntermediateDirectories: true)
        for (source, target) in [("hopper_97x61.png", "a.png"), ("hopper_75x50.jpg", "b.jpg"),
                                 ("hopper_gray_31x45.jpg", "more/c.jpeg"), ("bad_truncated.png", "more/d.png")] {
            try FileManager.default.copyItem(atPath: ImageFixtures.path(source), toPath: photos + "/" + target)
        }
        try Data("not an input".utf8).write(to: URL(fileURLWithPath: photos + "/notes.txt"))
        let out = dir + "/out"
        let first = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", out, "--attention"])
        #expect(first.status == 1, "\(first.stderr)")
        #expect(first.stdout.contains("batch: 3 ok, 1 failed of 4"), "\(first.stdout)")
        // Not a terminal: one plain progress line per input.
        #expect(first.stderr.contains("1/4") && first.stderr.contains("4/4") && first.stderr.contains("items/s"), "\(first.stderr)")

        let lines = try String(contentsOfFile: out + "/results.jsonl", encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(BatchRecord.self, from: Data($0.utf8)) }
        #expect(records.map(\.file) == ["a.png", "b.jpg", "more/c.jpeg", "more/d.png"].map { photos + "/" + $0 })
        #expect(records.map(\.status) == ["ok", "ok", "ok", "error"])
        #expect(records[3].error?.contains("truncated") == true)
        for record in records.prefix(3) {
            #expect(record.outputs?.first?.top?.count == 5)
            #expect(record.maps?.isEmpty == false)
            let page = try #require(record.page)
            #expect(FileManager.default.fileExists(atPath: out + "/" + page))
            #expect(record.preprocessing?.contains("center crop 32×32") == true)
            let thumbnail = try #require(record.thumbnail)
            #expect(try ImageFile.read(contentsOf: out + "/" + thumbnail).image.width == 32)
        }
        let gallery = try String(contentsOfFile: out + "/index.html", encoding: .utf8)
        #expect(gallery.contains("3 ok, 1 failed") && gallery.contains(records[0].page!))

        let second = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", out])
        #expect(second.status == 1)
        #expect(second.stdout.contains("3 of 4 input(s) already done"), "\(second.stdout)")
        #expect(second.stderr.contains("1/1") && !second.stderr.contains("1/4"), "\(second.stderr)")
        #expect(try String(contentsOfFile: out + "/results.jsonl", encoding: .utf8).split(separator: "\n").count == 4)

        // Stacked two at a time: the same outputs and maps for every input, the bad one still alone in error.
        let stacked = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", dir + "/stacked", "--attention", "--batch-size", "2"])
        #expect(stacked.status == 1, "\(stacked.stderr)")
        let byFile = BatchResults.read(dir + "/stacked/results.jsonl")
        for single in records {
            let batched = try #require(byFile[single.file])
            #expect(batched.status == single.status)
            guard single.isOK else { continue }
            let a = try #require(single.outputs?.first?.top), b = try #require(batched.outputs?.first?.top)
            #expect(a.map(\.index) == b.map(\.index))
            for (x, y) in zip(a, b) { #expect(abs(x.score - y.score) <= 1e-4 * max(1, abs(x.score))) }
            let mapsA = try #require(single.maps), mapsB = try #require(batched.maps)
            #expect(mapsA.map(\.shape) == mapsB.map(\.shape))
            for (x, y) in zip(mapsA, mapsB) { #expect(abs(x.mean - y.mean) < 1e-5 && abs(x.max - y.max) < 1e-5) }
        }
        let fixed = try CLI.run(["batch", "Models/seed004_resnet50_cbam/torchscript_op17.onnx", photos, "--output-dir", dir + "/fixed", "--batch-size", "2"])
        #expect(fixed.status == 1 && fixed.stderr.contains("--batch-size"), "\(fixed.stderr)")

        try FileManager.default.removeItem(atPath: photos + "/more/d.png")
        let forced = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", out, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stderr.contains("3/3"))
        #expect(try String(contentsOfFile: out + "/results.jsonl", encoding: .utf8).split(separator: "\n").count == 3)
    }
}

extension CLITests {
    /// Three shards run in parallel, each into its own folder, together give exactly the records
    /// of one unsharded run: every input once, with the same status and outputs.
    @Test func threeShardsInParallelEqualOneRun() throws {
        let dir = try CLI.temporaryDirectory()
        let photos = dir + "/photos"
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        let sources = ["hopper_97x61.png", "hopper_75x50.jpg", "hopper_gray_31x45.jpg", "hopper_gray_29x37.png",
                       "hopper_palette_interlaced_53x71.png", "bad_truncated.png", "hopper_rgba16_40x33.png"]
        for (i, source) in sources.enumerated() {
            try FileManager.default.copyItem(atPath: ImageFixtures.path(source), toPath: photos + "/\(i)_" + source)
        }
        _ = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", dir + "/all", "--threads", "1"])
        let whole = BatchResults.read(dir + "/all/results.jsonl")
        #expect(whole.count == sources.count)
        var group = [Thread]()
        let statuses = UncheckedBox([Int32](repeating: -1, count: 3))
        for shard in 0..<3 {
            let thread = Thread {
                let result = try? CLI.run(["batch", Self.imageModel, photos, "--output-dir", dir + "/shard\(shard)", "--shard", "\(shard)/3",
                                           "--threads", "1"])
                statuses.lock.lock(); statuses.value[shard] = result?.status ?? -2; statuses.lock.unlock()
            }
            thread.start()
            group.append(thread)
        }
        while statuses.lock.withLock({ statuses.value.contains(-1) }) { Thread.sleep(forTimeInterval: 0.05) }
        var merged: [String: BatchRecord] = [:]
        for shard in 0..<3 {
            for (file, record) in BatchResults.read(dir + "/shard\(shard)/results.jsonl") {
                #expect(merged[file] == nil, "\(file) ran in two shards")
                merged[file] = record
            }
        }
        #expect(Set(merged.keys) == Set(whole.keys))
        for (file, record) in whole {
            let sharded = try #require(merged[file])
            #expect(sharded.status == record.status, "\(file)")
            #expect(sharded.outputs?.first?.top?.map(\.index) == record.outputs?.first?.top?.map(\.index), "\(file)")
            // Each process times its own Conv kernels and may pick another: float rounding may differ.
            guard record.isOK else { continue }
            let (a, b) = (sharded.outputs?.first?.mean ?? .nan, record.outputs?.first?.mean ?? .nan)
            #expect(abs(a - b) <= 1e-4 * max(1, abs(b)), "\(file): mean \(a) vs \(b)")
        }
        let bad = try CLI.run(["batch", Self.imageModel, photos, "--output-dir", dir + "/bad", "--shard", "3/3"])
        #expect(bad.status != 0 && bad.stderr.contains("--shard"), "\(bad.stderr)")
    }

    /// The output folder inside the input folder: its pictures are not taken as inputs on the next run.
    @Test func batchIgnoresItsOwnOutputFolder() throws {
        let dir = try CLI.temporaryDirectory()
        try FileManager.default.copyItem(atPath: ImageFixtures.path("hopper_97x61.png"), toPath: dir + "/a.png")
        let first = try CLI.run(["batch", Self.imageModel, dir, "--output-dir", dir + "/out", "--attention"])
        #expect(first.status == 0, "\(first.stderr)")
        let second = try CLI.run(["batch", Self.imageModel, dir, "--output-dir", dir + "/out"])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stdout.contains("1 of 1 input(s) already done") && second.stdout.contains("1 ok, 0 failed of 1"), "\(second.stdout)")
    }
}

/// A value shared by test threads under a lock.
final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    let lock = NSLock()
    init(_ value: T) { self.value = value }
}
