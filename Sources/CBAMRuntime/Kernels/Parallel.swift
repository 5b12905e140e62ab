import CDNNL

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
    ///
    /// The threads are libgomp's, the pool oneDNN's convolutions run on: one pool for the
    /// whole process, so threads that spin after a convolution are the ones the next loop
    /// uses (with Dispatch beside it, the two pools fought over the cores: 2-thread runs
    /// were up to 14× slower than 1-thread ones). The team size is per call, so sessions
    /// with different thread counts do not disturb each other. A team smaller than asked
    /// (a nested call) still runs every iteration: each member takes every team-th one.
    static func forEach(_ count: Int, _ body: (Int) -> Void) {
        guard count > 1 else {
            if count == 1 { body(0) }
            return
        }
        withoutActuallyEscaping(body) { body in
            var task = (body: body, count: count)
            withUnsafeMutablePointer(to: &task) { pointer in
                GOMP_parallel({ raw in
                    let task = raw!.assumingMemoryBound(to: ((Int) -> Void, Int).self).pointee
                    let member = Int(omp_get_thread_num()), team = Swift.max(1, Int(omp_get_num_threads()))
                    for index in stride(from: member, to: task.1, by: team) { task.0(index) }
                }, pointer, UInt32(count), 0)
            }
        }
    }
}

/// Carries a value across threads where the code around it guarantees there is no race.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
