import Foundation
import Testing
@testable import CBAMRuntime

/// The test `make test-tsan` is for (it runs the whole suite under ThreadSanitizer; this one
/// makes the races it could find likely): one session run from four threads at once, on
/// threads of their own rather than a pool that may run them two at a time, while a second
/// session with another thread count runs beside them. Every run must give the output of a
/// lone run.
@Suite struct ConcurrencyTests {
    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [(worker: Int, outputs: [String: Tensor]?, error: String?)] = []
        func add(_ result: (worker: Int, outputs: [String: Tensor]?, error: String?)) {
            lock.lock()
            results.append(result)
            lock.unlock()
        }
        var all: [(worker: Int, outputs: [String: Tensor]?, error: String?)] {
            lock.lock()
            defer { lock.unlock() }
            return results
        }
    }

    @Test func fourThreadsOnOneSessionBesideAnotherSession() throws {
        let path = Repo.path("Models/seed004_cbam/torchscript_op17.onnx")
        let input = try NPY.read(contentsOf: Repo.path("Models/seed004_cbam/input.npy"))
        let shared = try Session(contentsOf: path, options: SessionOptions(threads: 2))
        let other = try Session(contentsOf: path, options: SessionOptions(threads: 1))
        let expected = try Session(contentsOf: path, options: SessionOptions(threads: 1)).run(positional: [input])

        let workers = 5, runsEach = 3
        let collected = Collected()
        let start = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        for worker in 0..<workers {
            // Workers 0–3 share `shared`; worker 4 runs `other`. Each compiles on its first run
            // (the plan cache is filled concurrently) and reuses the plan after.
            let session = worker < 4 ? shared : other
            let thread = Thread {
                start.wait()
                for _ in 0..<runsEach {
                    do { collected.add((worker, try session.run(positional: [input]), nil)) } catch { collected.add((worker, nil, "\(error)")) }
                }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<workers { start.signal() }
        for _ in 0..<workers { done.wait() }

        let results = collected.all
        #expect(results.count == workers * runsEach)
        for (worker, outputs, error) in results {
            let got = try #require(outputs, "worker \(worker): \(error ?? "")")
            for (name, tensor) in expected {
                let comparison = Comparison(actual: try #require(got[name]), expected: tensor, atol: 1e-5, rtol: 1e-5)
                #expect(comparison.passed, "worker \(worker), output \(name): \(comparison)")
            }
        }
    }
}
