#if canImport(Glibc)
import Glibc
#endif
import Foundation

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


/// Transparent huge pages (2 MiB) for the large buffers a run streams through: a network's
/// weights (ResNet-50 + CBAM: 112 MB, VGG-19: 82 MB) are read once per run, at batch 1 mostly
/// faster than they can be used, and with 4 KiB pages every 4 KiB of them costs a TLB miss
/// (the second-level TLB reaches 6 MiB). Debian's kernels give huge pages only where a process
/// asks (`/sys/kernel/mm/transparent_hugepage/enabled` = madvise), and glibc's malloc asks only
/// when told by `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` at process start, which a library cannot
/// set. So buffers of 2 MiB and more start on a 2 MiB boundary and their whole 2 MiB pages are
/// advised `MADV_HUGEPAGE` before anything touches them; the tail past the last boundary stays
/// on small pages, so resident memory does not grow (ResNet-50 + CBAM at batch 2: +0.1 to 0.3 MB
/// of 170). Measured on the Xeon (a KVM guest, where a TLB miss walks two page tables), batch 1,
/// 1 thread, processes taking turns run by run: VGG-19-BN + CBAM 0.95, ResNeXt-50 0.93,
/// ResNet-50 + CBAM 0.98 of the time with small pages (glibc's own tunable: 0.93, 0.94, 0.99).
/// `CBAM_HUGEPAGES=0` turns it off (for comparison).
enum HugePages {
    static let size = 2 << 20

    /// Off with `CBAM_HUGEPAGES=0`.
    static let enabled: Bool = ProcessInfo.processInfo.environment["CBAM_HUGEPAGES"] != "0"

    /// Whether a buffer of `byteCount` bytes gets huge pages.
    static func suits(_ byteCount: Int) -> Bool { enabled && byteCount >= size }

    /// Advises the whole 2 MiB pages of `[pointer, pointer + byteCount)` (pointer 2 MiB-aligned).
    /// A kernel without transparent huge pages refuses, and the buffer keeps small pages.
    static func advise(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let whole = byteCount / size * size
        guard whole > 0 else { return }
        #if canImport(Glibc)
        _ = madvise(pointer, whole, MADV_HUGEPAGE)
        #endif
    }

    /// `byteCount` bytes of fresh zeroed memory starting on a 2 MiB boundary, mapped for this
    /// buffer alone (nil where mmap fails: the caller falls back to the allocator). Its own
    /// mapping, not malloc's: memory malloc hands out again may lie in a range an earlier buffer
    /// advised, and would then take huge pages past its last whole page too.
    static func map(_ byteCount: Int) -> UnsafeMutableRawPointer? {
        #if canImport(Glibc)
        let length = pageRounded(byteCount) + size
        guard let raw = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else { return nil }
        let address = UInt(bitPattern: raw), aligned = (address + UInt(size) - 1) / UInt(size) * UInt(size)
        let end = aligned + UInt(pageRounded(byteCount))
        if aligned > address { munmap(raw, Int(aligned - address)) }
        if address + UInt(length) > end { munmap(UnsafeMutableRawPointer(bitPattern: end), Int(address + UInt(length) - end)) }
        return UnsafeMutableRawPointer(bitPattern: aligned)
        #else
        return nil
        #endif
    }

    /// Releases what ``map(_:)`` returned.
    static func unmap(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        #if canImport(Glibc)
        munmap(pointer, pageRounded(byteCount))
        #endif
    }

    private static func pageRounded(_ byteCount: Int) -> Int { (byteCount + 4095) / 4096 * 4096 }
}
