import Dispatch

/// Intra-op parallelism: the kernels that split their work (Conv) call this.
enum Parallel {
    /// Below this many elements an elementwise op is not worth a thread hand-off.
    static let minimumElements = 1 << 16
    /// Below this many multiply-accumulates per work item a convolution stays on one thread.
    static let minimumMACs = 1 << 18

    /// The `worker`-th of `workers` near-equal contiguous shares of `0..<count`.
    static func share(_ worker: Int, of workers: Int, count: Int) -> Range<Int> {
        let base = count / workers, extra = count % workers
        let start = worker * base + Swift.min(worker, extra)
        return start..<(start + base + (worker < extra ? 1 : 0))
    }

    /// Runs `body(0)`, …, `body(count - 1)` on up to `count` threads and returns when all
    /// are done. The caller guarantees the iterations write disjoint memory; that is why
    /// the closure may capture raw buffer pointers (not `Sendable`) safely.
    static func forEach(_ count: Int, _ body: (Int) -> Void) {
        guard count > 1 else {
            if count == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: count) { shared.value($0) }
        }
    }
}

/// Carries a value across threads where the code around it guarantees there is no race.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
