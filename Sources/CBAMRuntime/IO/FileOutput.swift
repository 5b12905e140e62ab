#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Every file cbam-run writes goes through here, so none is ever half-written.
///
/// The bytes go to a new temporary file in the destination's own folder
/// (`.<name>.<pid>.<n>.cbam-tmp`, created with `O_EXCL`) and are renamed over the
/// destination only when all of them are written; `rename` within one folder is atomic,
/// so a reader sees the old file or the whole new one. A failed write removes its
/// temporary file. ``removeTemporaryFilesOnSignal()`` extends that to SIGINT, SIGTERM and
/// SIGHUP: the handler unlinks the temporary files in flight, then the signal kills the
/// process as it would have.
///
/// Destinations are checked first (``checkDestination(_:)``): a folder, a dangling symlink
/// or a file registered with ``protect(_:)`` (the run's inputs) is refused, so an output
/// can never overwrite the model or an input it was read from, however the path is spelled.
public enum FileOutput {
    /// Writes `bytes` to `path` through a temporary file and a rename.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        try checkDestination(path)
        let folder = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = (folder.isEmpty ? "" : folder + "/") + ".\(name).\(getpid()).\(nextSerial()).cbam-tmp"
        // Registered before it exists: a signal between the two would otherwise leave the file behind.
        let slot = InFlight.register(temporary)
        defer { InFlight.release(slot) }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw CBAMError(.io, "cannot create a temporary file in the folder: \(errnoText())", file: path) }
        var failure: String?
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errnoText()
                    return
                }
                offset += written
            }
        }
        if close(fd) != 0, failure == nil { failure = errnoText() }
        if failure == nil, let pause = pauseBeforeRename { Thread.sleep(forTimeInterval: pause) }
        if failure == nil, rename(temporary, path) != 0 { failure = errnoText() }
        if let failure {
            unlink(temporary)
            throw CBAMError(.io, "cannot write: \(failure)", file: path)
        }
    }

    /// Refuses a destination that is a folder, a dangling symlink, or one of the protected files.
    public static func checkDestination(_ path: String) throws {
        guard !path.isEmpty else { throw CBAMError(.usage, "an output path is empty") }
        var link = stat()
        guard lstat(path, &link) == 0 else { return }  // nothing there yet
        var target = stat()
        if stat(path, &target) != 0 {
            throw CBAMError(.usage, "the output path is a symbolic link to nothing (dangling); remove it or choose another path", file: path)
        }
        if target.st_mode & S_IFMT == S_IFDIR {
            throw CBAMError(.usage, "the output path is a folder; give a file name", file: path)
        }
        if let input = Protected.match(device: UInt64(target.st_dev), inode: UInt64(target.st_ino)) {
            throw CBAMError(.usage, "the output path is the input \(input); writing it would destroy the input", file: path)
        }
    }

    /// Refuses a folder an output goes into when it exists as something else (a file, a dangling symlink).
    public static func checkFolder(_ path: String) throws {
        guard !path.isEmpty else { throw CBAMError(.usage, "an output folder path is empty") }
        var link = stat()
        guard lstat(path, &link) == 0 else { return }  // created when it is written
        var target = stat()
        if stat(path, &target) != 0 {
            throw CBAMError(.usage, "the output folder is a symbolic link to nothing (dangling)", file: path)
        }
        if target.st_mode & S_IFMT != S_IFDIR {
            throw CBAMError(.usage, "the output folder exists and is not a folder", file: path)
        }
    }

    /// Registers files that no output may replace (the model and the inputs of this run),
    /// by device and inode: another spelling, a symlink or a hard link to them is refused too.
    public static func protect(_ paths: [String]) {
        for path in paths {
            var info = stat()
            guard stat(path, &info) == 0 else { continue }
            Protected.add(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), name: path)
        }
    }

    /// Installs handlers for SIGINT, SIGTERM and SIGHUP that unlink every temporary file
    /// being written, then let the signal take its default action (the process ends with it).
    /// Call it first thing on the main thread: it also unblocks the three signals there, since
    /// a process started from a thread that blocks them (a libdispatch worker, e.g. a test's
    /// `Process`) inherits that mask and would otherwise never see them.
    public static func removeTemporaryFilesOnSignal() {
        InFlight.prepare()
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                InFlight.unlinkAll()
                Glibc.signal(number, SIG_DFL)
                raise(number)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(signal, &action, nil)
        }
    }

    /// Seconds to wait between writing a temporary file and renaming it: only for the test
    /// that interrupts a write (`CBAM_TEST_PAUSE_BEFORE_RENAME` in the CLI).
    nonisolated(unsafe) public static var pauseBeforeRename: Double?

    private static let serialLock = NSLock()
    nonisolated(unsafe) private static var serial = 0
    private static func nextSerial() -> Int {
        serialLock.lock()
        defer { serialLock.unlock() }
        serial += 1
        return serial
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    /// Temporary paths being written, in fixed slots a signal handler can read without
    /// allocating or locking: each slot is a state word and a NUL-terminated path.
    private enum InFlight {
        static let slots = 64, pathBytes = 4096
        /// states[i] != 0 when paths[i] holds a temporary file in flight.
        nonisolated(unsafe) static let states: UnsafeMutablePointer<Int> = {
            let p = UnsafeMutablePointer<Int>.allocate(capacity: slots)
            p.initialize(repeating: 0, count: slots)
            return p
        }()
        nonisolated(unsafe) static let paths: UnsafeMutablePointer<CChar> = {
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: slots * pathBytes)
            p.initialize(repeating: 0, count: slots * pathBytes)
            return p
        }()
        static let lock = NSLock()

        static func prepare() { _ = states; _ = paths }

        /// A slot for `path`, or -1 when all are taken or the path is too long (the file is
        /// still written safely; only a signal would leave it behind).
        static func register(_ path: String) -> Int {
            let bytes = Array(path.utf8CString)
            guard bytes.count <= pathBytes else { return -1 }
            lock.lock()
            defer { lock.unlock() }
            guard let slot = (0..<slots).first(where: { states[$0] == 0 }) else { return -1 }
            bytes.withUnsafeBufferPointer { (paths + slot * pathBytes).update(from: $0.baseAddress!, count: bytes.count) }
            states[slot] = 1
            return slot
        }

        static func release(_ slot: Int) {
            guard slot >= 0 else { return }
            lock.lock()
            states[slot] = 0
            lock.unlock()
        }

        /// Called from the signal handler: only `unlink`, which is async-signal-safe.
        static func unlinkAll() {
            for slot in 0..<slots where states[slot] != 0 { unlink(paths + slot * pathBytes) }
        }
    }

    private enum Protected {
        static let lock = NSLock()
        nonisolated(unsafe) static var files: [(device: UInt64, inode: UInt64, name: String)] = []
        static func add(device: UInt64, inode: UInt64, name: String) {
            lock.lock()
            files.append((device, inode, name))
            lock.unlock()
        }
        static func match(device: UInt64, inode: UInt64) -> String? {
            lock.lock()
            defer { lock.unlock() }
            return files.first { $0.device == device && $0.inode == inode }?.name
        }
    }
}
