import Dispatch
import Foundation

/// Stops runs between steps: another thread calls ``cancel()`` (a server dropping a
/// request, a signal handler's thread), and every run of the sessions holding the token
/// ends before its next step with a `.cancelled` ``CBAMError``.
///
/// A step that has started finishes first: the check costs one load per step and a
/// kernel is never interrupted halfway through its output. Set it as
/// ``SessionOptions/cancellation``; ``SessionOptions/timeout`` gives each run a deadline
/// the same way.
///
/// ```swift
/// let token = CancellationToken()
/// let session = try Session(contentsOf: "model.onnx", options: SessionOptions(cancellation: token))
/// DispatchQueue.global().asyncAfter(deadline: .now() + 1) { token.cancel() }
/// _ = try session.run(feeds)  // throws .cancelled if it is still running after a second
/// ```
public final class CancellationToken: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    public init() {}

    /// Stops every run in flight at its next step, and every later run before its first.
    public func cancel() {
        lock.lock()
        cancelled = true
        lock.unlock()
    }

    public var isCancelled: Bool {
        lock.lock()
        defer { lock.unlock() }
        return cancelled
    }
}

/// What a plan checks between its steps: the session's token and this run's deadline.
struct RunInterrupt {
    let token: CancellationToken?
    /// Monotonic nanoseconds (`DispatchTime`) past which the run stops; nil for none.
    let deadline: UInt64?
    let timeout: Double?

    /// nil when the options ask for neither, so a plain run checks nothing.
    init?(_ options: SessionOptions) {
        guard options.cancellation != nil || options.timeout != nil else { return nil }
        token = options.cancellation
        timeout = options.timeout
        deadline = options.timeout.map { timeout in
            let now = DispatchTime.now().uptimeNanoseconds
            let nanoseconds = timeout * 1e9
            return nanoseconds >= Double(UInt64.max - now) ? UInt64.max : now + UInt64(nanoseconds)
        }
    }

    /// Throws when the run must stop before step `index` of `count`.
    func check(step index: Int, of count: Int) throws {
        if let token, token.isCancelled {
            throw CBAMError(.cancelled, "the run was cancelled after \(index) of \(count) steps")
        }
        if let deadline, DispatchTime.now().uptimeNanoseconds > deadline {
            let limit = timeout.map { String(format: "%g", $0) } ?? "?"
            throw CBAMError(.cancelled, "the run took longer than its time limit of \(limit) s and was stopped after \(index) of \(count) steps; raise it with --timeout")
        }
    }
}
