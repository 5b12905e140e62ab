import CDNNL
#if canImport(Glibc)
import Glibc
#endif

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
                ThreadSanitizer.release(pointer)  // fork: the team sees what the caller wrote
                GOMP_parallel({ raw in
                    ThreadSanitizer.acquire(raw)
                    let task = raw!.assumingMemoryBound(to: ((Int) -> Void, Int).self).pointee
                    let member = Int(omp_get_thread_num()), team = Swift.max(1, Int(omp_get_num_threads()))
                    for index in stride(from: member, to: task.1, by: team) { task.0(index) }
                    ThreadSanitizer.release(raw)
                }, pointer, UInt32(count), 0)
                ThreadSanitizer.acquire(pointer)  // join: the caller sees what the team wrote
            }
        }
    }
}

/// ThreadSanitizer's happens-before annotations, looked up at run time: present only in a
/// process built with `-sanitize=thread` (`make test-tsan`), no-ops otherwise. libgomp is not
/// instrumented, so without them TSan cannot see that GOMP_parallel's thread launch and final
/// barrier order the caller's writes before the team's reads and the team's writes before the
/// caller's next ones, and reports every parallel loop as a race.
enum ThreadSanitizer {
    typealias Hook = @convention(c) (UnsafeMutableRawPointer?) -> Void
    private static let acquireHook: Hook? = lookup("__tsan_acquire")
    private static let releaseHook: Hook? = lookup("__tsan_release")

    private static func lookup(_ name: String) -> Hook? {
        dlsym(UnsafeMutableRawPointer(bitPattern: 0), name).map { unsafeBitCast($0, to: Hook.self) }
    }

    @inline(__always) static func acquire(_ address: UnsafeMutableRawPointer?) { acquireHook?(address) }
    @inline(__always) static func release(_ address: UnsafeMutableRawPointer?) { releaseHook?(address) }
}

/// Carries a value across threads where the code around it guarantees there is no race.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
