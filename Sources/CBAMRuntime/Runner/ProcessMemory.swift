/// glibc's `malloc_trim`: hands the free memory of malloc's heaps back to the system.
@_silgen_name("malloc_trim")
private func glibcMallocTrim(_ pad: Int) -> Int32

/// Keeps the process's resident memory near what it holds.
///
/// glibc serves the many mid-sized blocks of loading and compiling (protobuf-c's copies of
/// the weights, freed as each tensor is converted; the buffers a Conv's candidates are
/// timed on) from its heap, and keeps them resident once freed: loading ResNet-50 + CBAM
/// (112 MB of weights) left 224 MB resident beyond the runtime's own. Trimming after these
/// two phases gives that memory back, so it is not counted twice at the process's peak.
enum ProcessMemory {
    static func returnFreedMemory() {
        _ = glibcMallocTrim(0)
    }
}
