// Benchmarks for the oneDNN kernels (not part of any test run):
//   swift build -c release --product onednn-bench
//   .build/release/onednn-bench resnet50 [runs]   GFLOP/s of ResNet-50's 53 convolutions, batch 1, 1 and 2 threads, plain vs chosen layouts
//   .build/release/onednn-bench postops           which implementation each post-op order and layout gets
//   .build/release/onednn-bench threads           per-thread OpenMP counts, concurrent sessions with different counts
//   .build/release/onednn-bench overhead          µs per execute of tiny convolutions
//   .build/release/onednn-bench weightbound       weight-bound 1×1 products, weights cold: brgconv_1x1 against matmul
//   .build/release/onednn-bench spin [ms]         does libgomp's spinning slow a DispatchQueue.concurrentPerform loop after a conv?
import CBAMRuntime
import Dispatch
import Foundation

/// A 64-byte aligned float buffer.
final class Buffer {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    init(_ count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: count * 4, alignment: 64).bindMemory(to: Float.self, capacity: count)
        pointer.initialize(repeating: 0, count: count)
    }
    deinit { pointer.deallocate() }
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func median(_ values: [Double]) -> Double { let s = values.sorted(); return s[s.count / 2] }

/// ResNet-50 v1.5 (stride on the 3×3), 224×224: (C, M, H, k, stride), pad k/2.
func resnet50() -> [(c: Int, m: Int, h: Int, k: Int, s: Int)] {
    var layers = [(3, 64, 224, 7, 2)]
    var channels = 64, size = 56
    for (stage, (planes, blocks)) in zip([64, 128, 256, 512], [3, 4, 6, 3]).enumerated() {
        for block in 0..<blocks {
            let stride = block == 0 && stage > 0 ? 2 : 1
            layers.append((channels, planes, size, 1, 1))
            layers.append((planes, planes, size, 3, stride))
            let out = size / stride
            layers.append((planes, planes * 4, out, 1, 1))
            if block == 0 { layers.append((channels, planes * 4, size, 1, stride)) }
            channels = planes * 4
            size = out
        }
    }
    return layers.map { (c: $0.0, m: $0.1, h: $0.2, k: $0.3, s: $0.4) }
}

func geometry(_ l: (c: Int, m: Int, h: Int, k: Int, s: Int)) -> DNNLConvolution.Geometry {
    let p = l.k / 2
    return .init(batch: 1, channels: l.c, height: l.h, width: l.h, outputChannels: l.m, kernelHeight: l.k, kernelWidth: l.k,
                 strideHeight: l.s, strideWidth: l.s, padTop: p, padLeft: p, padBottom: p, padRight: p)
}

/// Median seconds of `runs` calls after one warm-up.
func time(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    try body()
    var samples: [Double] = []
    for _ in 0..<runs { let t0 = now(); try body(); samples.append(now() - t0) }
    return median(samples)
}

func resnet50Bench(runs: Int) throws {
    print("oneDNN \(OneDNN.versionDetails), ISA \(OneDNN.isaName)")
    let layers = resnet50()
    let totalFlops = layers.map { geometry($0).flops }.reduce(0, +)
    print("ResNet-50 convolutions: \(layers.count), \(String(format: "%.2f", totalFlops / 1e9)) GFLOP at batch 1; bias + ReLU post-op; median of \(runs) runs")
    struct Row { var plain = 0.0, chosen = 0.0, unaligned = 0.0, reorderIn = 0.0, reorderOut = 0.0; var implPlain = "", implChosen = "", layout = "" }
    var rows = [[Row]](repeating: [Row](repeating: Row(), count: layers.count), count: 3)
    for threads in [1, 2] {
        for (i, layer) in layers.enumerated() {
            let g = geometry(layer)
            let w = (0..<g.weightShape.reduce(1, *)).map { Float(($0 % 17) - 8) * 0.01 }
            let b = [Float](repeating: 0.1, count: g.outputChannels)
            // 64-byte aligned buffers, as a planner's arena would give (Swift arrays are only
            // 16-byte aligned: the "unaligned" column shows what that costs).
            let x = Buffer(g.sourceShape.reduce(1, *)), y = Buffer(g.destinationShape.reduce(1, *))
            for i in 0..<x.count { x.pointer[i] = Float((i % 13) - 6) * 0.1 }
            let plain = try DNNLConvolution(geometry: g, weights: w, bias: b, postOps: [.relu], threads: threads)
            let chosen = try DNNLConvolution(geometry: g, weights: w, bias: b, postOps: [.relu], layout: .chosenByPrimitive, threads: threads)
            var row = Row()
            row.implPlain = plain.implementation
            row.implChosen = chosen.implementation
            row.layout = "\(chosen.source)→\(chosen.destination)"
            row.plain = try time(runs) { try plain.execute(source: x.pointer, destination: y.pointer, threads: threads) }
            let xb = Buffer(chosen.source.elementCount), yb = Buffer(chosen.destination.elementCount)
            let toSource = try DNNLReorder(from: .plain(g.sourceShape), to: chosen.source)
            let fromDestination = try DNNLReorder(from: chosen.destination, to: .plain(g.destinationShape))
            try toSource.execute(source: x.pointer, destination: xb.pointer, threads: threads)
            row.chosen = try time(runs) { try chosen.execute(source: xb.pointer, destination: yb.pointer, threads: threads) }
            row.reorderIn = try time(runs) { try toSource.execute(source: x.pointer, destination: xb.pointer, threads: threads) }
            row.reorderOut = try time(runs) { try fromDestination.execute(source: yb.pointer, destination: y.pointer, threads: threads) }
            // The same chosen-layout conv on 4-byte-offset buffers (cache-line splits on every vector load).
            let xu = Buffer(chosen.source.elementCount + 1), yu = Buffer(chosen.destination.elementCount + 1)
            xu.pointer.update(from: xb.pointer, count: chosen.source.elementCount)
            row.unaligned = try time(runs) { try chosen.execute(source: xu.pointer + 1, destination: yu.pointer + 1, threads: threads) }
            rows[threads][i] = row
        }
    }
    print("\n| # | C→M | H | k/s | GFLOP | 1T plain | 1T chosen | 2T plain | 2T chosen | impl plain (1T) | impl chosen (1T) | chosen layout | reorders in+out 1T ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (i, l) in layers.enumerated() {
        let f = geometry(l).flops
        let (r1, r2) = (rows[1][i], rows[2][i])
        print("| \(i) | \(l.c)→\(l.m) | \(l.h) | \(l.k)/\(l.s) | \(String(format: "%.3f", f / 1e9)) | "
              + [r1.plain, r1.chosen, r2.plain, r2.chosen].map { String(format: "%.0f", f / $0 / 1e9) }.joined(separator: " | ")
              + " | \(r1.implPlain) | \(r1.implChosen) | \(r1.layout) | \(String(format: "%.3f", (r1.reorderIn + r1.reorderOut) * 1e3)) |")
        if r2.implPlain != r1.implPlain || r2.implChosen != r1.implChosen {
            print("|   | (2T impls: \(r2.implPlain) / \(r2.implChosen)) | | | | | | | | | | | |")
        }
    }
    for threads in [1, 2] {
        let r = rows[threads]
        let plain = r.map(\.plain).reduce(0, +), chosen = r.map(\.chosen).reduce(0, +)
        let reorders = r.map { $0.reorderIn + $0.reorderOut }.reduce(0, +)
        let unaligned = r.map(\.unaligned).reduce(0, +)
        print(String(format: "%dT total: plain NCHW %.1f ms (%.0f GFLOP/s), chosen layouts %.1f ms (%.0f GFLOP/s), chosen + reorder in/out at every conv %.1f ms (%.0f GFLOP/s), chosen on unaligned buffers %.1f ms (%.0f GFLOP/s)",
                     threads, plain * 1e3, totalFlops / plain / 1e9, chosen * 1e3, totalFlops / chosen / 1e9,
                     (chosen + reorders) * 1e3, totalFlops / (chosen + reorders) / 1e9, unaligned * 1e3, totalFlops / unaligned / 1e9))
    }
}

func postOpsReport() throws {
    let cases: [(String, DNNLConvolution.Geometry)] = [
        ("3x3 64→64 @28", geometry((64, 64, 28, 3, 1))),
        ("1x1 256→64 @28", geometry((256, 64, 28, 1, 1))),
        ("7x7s2 3→64 @224", geometry((3, 64, 224, 7, 2))),
        ("3x3 dw 64 @28", { var g = geometry((64, 64, 28, 3, 1)); g.group = 64; return g }()),
        ("3x3 g32 128→128 @28", { var g = geometry((128, 128, 28, 3, 1)); g.group = 32; return g }()),
        ("3x3 dil2 64→64 @28", { var g = geometry((64, 64, 28, 3, 1)); g.dilationHeight = 2; g.dilationWidth = 2; g.padTop = 2; g.padLeft = 2; g.padBottom = 2; g.padRight = 2; return g }()),
        ("7x7 2→1 @56 (CBAM spatial)", geometry((2, 1, 56, 7, 1))),
    ]
    let orders: [[DNNLPostOp]] = [[], [.relu], [.sum], [.sum, .relu], [.relu, .sum]]
    for (name, g) in cases {
        let w = [Float](repeating: 0.01, count: g.weightShape.reduce(1, *))
        for layout in [DNNLActivationLayout.plain, .chosenByPrimitive] {
            let impls = try orders.map { try DNNLConvolution(geometry: g, weights: w, postOps: $0, layout: layout).implementation }
            let c = try DNNLConvolution(geometry: g, weights: w, layout: layout)
            print("\(name) \(layout) [\(c.source)→\(c.destination), weights \(c.weights.tag)]: " + zip(orders, impls).map { "\($0)=\($1)" }.joined(separator: " "))
        }
    }
}

/// A fixed amount of float work per iteration (no memory traffic to speak of).
@inline(never)
func spinWork(_ iterations: Int) -> Float {
    var a: Float = 1, b: Float = 0.5
    for i in 0..<iterations { a = a * 0.999_999 + b; b = b * 0.999_998 + Float(i & 1) }
    return a + b
}

func spinBench(idleMs: Int) throws {
    let env = ProcessInfo.processInfo.environment
    print("OMP_WAIT_POLICY=\(env["OMP_WAIT_POLICY"] ?? "(unset)") GOMP_SPINCOUNT=\(env["GOMP_SPINCOUNT"] ?? "(unset)")")
    let g = geometry((64, 64, 56, 3, 1))
    let w = [Float](repeating: 0.01, count: g.weightShape.reduce(1, *))
    let x = [Float](repeating: 0.5, count: g.sourceShape.reduce(1, *))
    var y = [Float](repeating: 0, count: g.destinationShape.reduce(1, *))
    let conv = try DNNLConvolution(geometry: g, weights: w, postOps: [.relu], threads: 2)
    let work = 400_000  // ≈ 1–2 ms per iteration
    let sink = UnsafeMutablePointer<Float>.allocate(capacity: 2)
    defer { sink.deallocate() }
    let shared = UncheckedPointer(sink)
    func loop() -> Double {
        let t0 = now()
        DispatchQueue.concurrentPerform(iterations: 2) { i in shared.pointer[i] = spinWork(work) }
        return now() - t0
    }
    var baseline: [Double] = [], afterConv: [Double] = [], convTimes: [Double] = []
    for _ in 0..<3 { _ = loop(); try conv.execute(source: x, destination: &y, threads: 2) }
    for _ in 0..<30 {
        usleep(UInt32(idleMs * 1000))  // libgomp's workers have long stopped spinning
        baseline.append(loop())
        let t0 = now()
        try conv.execute(source: x, destination: &y, threads: 2)
        convTimes.append(now() - t0)
        afterConv.append(loop())  // right after the conv: workers may still spin
    }
    // CPU burnt per conv including the workers' spin afterwards: process CPU time over a conv and a 100 ms sleep.
    func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
    var burnt: [Double] = []
    for _ in 0..<10 {
        usleep(100_000)
        let c0 = cpuSeconds()
        try conv.execute(source: x, destination: &y, threads: 2)
        usleep(100_000)
        burnt.append(cpuSeconds() - c0)
    }
    print(String(format: "CPU time per 2T conv incl. spinning afterwards: %.1f ms (conv wall %.2f ms)", median(burnt) * 1e3, median(convTimes) * 1e3))
    print(String(format: "conv 2T %.2f ms; concurrentPerform(2) loop: idle before %.2f ms, right after a 2-thread conv %.2f ms (x%.2f)",
                 median(convTimes) * 1e3, median(baseline) * 1e3, median(afterConv) * 1e3, median(afterConv) / median(baseline)))
}

struct UncheckedPointer: @unchecked Sendable { let pointer: UnsafeMutablePointer<Float>; init(_ p: UnsafeMutablePointer<Float>) { pointer = p } }

func threadsReport() throws {
    // "Sessions" on two threads, each executing the same conv with its own thread count.
    // A primitive built for 1 thread starts no OpenMP region, so a 1-thread session creates no
    // libgomp worker; each thread that runs a 2-thread primitive gets a worker pool of its own.
    let g = geometry((128, 128, 28, 3, 1))
    let w = [Float](repeating: 0.01, count: g.weightShape.reduce(1, *))
    let x = Buffer(g.sourceShape.reduce(1, *))
    let conv = try DNNLConvolution(geometry: g, weights: w, threads: 1)
    let count = g.destinationShape.reduce(1, *)
    let out = Buffer(count * 2)
    func osThreads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1 }
    let shared = UncheckedPointer(out.pointer), input = UncheckedPointer(x.pointer)
    func sessions(_ counts: [Int]) -> [String] {
        let report = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: counts.count) { i in
            do {
                var times: [Double] = []
                for _ in 0..<9 {
                    let t0 = now()
                    try conv.execute(source: input.pointer, destination: shared.pointer + i * count, threads: counts[i])
                    times.append(now() - t0)
                }
                let line = String(format: "session %d with %dT: %.2f ms per conv (%@)", i, counts[i], median(times) * 1e3, try conv.implementation(threads: counts[i]))
                report.withLock { $0.append(line) }
            } catch { report.withLock { $0.append("\(error)") } }
        }
        return report.withLock { $0 }.sorted()
    }
    print("OS threads at start: \(osThreads())")
    for line in sessions([1, 1]) { print("  \(line)") }
    print("OS threads after two concurrent 1T sessions: \(osThreads())")
    for line in sessions([1, 2]) { print("  \(line)") }
    print("OS threads after a 1T and a 2T session side by side: \(osThreads())")
    for line in sessions([2, 2]) { print("  \(line)") }
    print("OS threads after two 2T sessions side by side: \(osThreads())")
}

import Synchronization

/// Time per execute of a tiny convolution: the fixed cost of a call (binding, lock, OpenMP setup).
func overheadReport() throws {
    for (name, g) in [("1x1 4→4 @2x2", geometry((4, 4, 2, 1, 1))), ("1x1 256→16 @1x1 (SE/CBAM MLP)", geometry((256, 16, 1, 1, 1)))] {
        let w = [Float](repeating: 0.01, count: g.weightShape.reduce(1, *))
        let x = Buffer(g.sourceShape.reduce(1, *)), y = Buffer(g.destinationShape.reduce(1, *))
        for threads in [1, 2] {
            let conv = try DNNLConvolution(geometry: g, weights: w, postOps: [.relu], threads: threads)
            let calls = 20_000
            let t = try time(5) { for _ in 0..<calls { try conv.execute(source: x.pointer, destination: y.pointer, threads: threads) } }
            print(String(format: "%@, %dT (%@): %.2f µs per execute", name, threads, conv.implementation, t / Double(calls) * 1e6))
        }
    }
}

/// Weight-bound products as the network meets them, weights cold: a 1×1 convolution of `rows`
/// pixels (NHWC, oneDNN's brgconv_1x1) against oneDNN's matmul with the same weights reordered
/// at build, each timed over 40 copies of the weights (more than the L3 holds), so every
/// execute reads its weights from memory.
func weightBoundReport() throws {
    let copies = 40
    for (rows, k, n) in [(16, 1024, 2048), (16, 2048, 1024), (32, 1024, 2048), (49, 2048, 512), (4, 4608, 512), (16, 4608, 512)] {
        let g = DNNLConvolution.Geometry(batch: 1, channels: k, height: 1, width: rows, outputChannels: n, kernelHeight: 1, kernelWidth: 1)
        let w = [Float](repeating: 0.01, count: n * k)
        let x = Buffer(rows * k), y = Buffer(rows * n)
        let nhwc = DNNLActivationLayout.given(source: try .channelsLast(g.sourceShape), destination: try .channelsLast(g.destinationShape))
        let convs = try (0..<copies).map { _ in try DNNLConvolution(geometry: g, weights: w, layout: nhwc, threads: 1) }
        let wt = [Float](repeating: 0.01, count: n * k)  // B = Wᵀ [K, N]
        let mms = try wt.withUnsafeBufferPointer { b in try (0..<copies).map { _ in try DNNLMatMul(m: rows, n: n, k: k, constantB: b.baseAddress!, threads: 1) } }
        var tc: [Double] = [], tm: [Double] = []
        for _ in 0..<5 {
            var t = now()
            for conv in convs { try conv.execute(source: x.pointer, destination: y.pointer, threads: 1) }
            tc.append((now() - t) / Double(copies))
            t = now()
            for mm in mms { try mm.execute(a: x.pointer, b: nil, c: y.pointer, threads: 1) }
            tm.append((now() - t) / Double(copies))
        }
        let mb = Double(n * k * 4) / 1e6
        print(String(format: "rows %3d K %4d N %4d (%.1f MB): conv %@ %.3f ms (%.1f GB/s), matmul %@ %.3f ms (%.1f GB/s)",
                     rows, k, n, mb, convs[0].implementation, median(tc) * 1e3, mb / median(tc) / 1e3, mms[0].implementation, median(tm) * 1e3, mb / median(tm) / 1e3))
    }
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first ?? "resnet50" {
case "resnet50": try resnet50Bench(runs: arguments.dropFirst().first.flatMap { Int($0) } ?? 15)
case "postops": try postOpsReport()
case "spin": try spinBench(idleMs: arguments.dropFirst().first.flatMap { Int($0) } ?? 50)
case "threads": try threadsReport()
case "overhead": try overheadReport()
case "weightbound": try weightBoundReport()
default: print("usage: onednn-bench resnet50 [runs] | postops | spin [idle-ms] | threads")
}
