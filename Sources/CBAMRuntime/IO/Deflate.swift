/// A small DEFLATE compressor (RFC 1951) for the PNG writer: greedy LZ77 and the fixed Huffman code.
///
/// ## The format written
///
/// A raw DEFLATE stream (no zlib header or trailer; ``PNG`` adds those) is a sequence of
/// blocks, each starting with 3 header bits: `BFINAL` (1 on the last block) and `BTYPE`
/// (2 bits). Bits are packed into bytes starting at the least significant bit; Huffman codes
/// are sent most significant bit first, every other field (extra bits, LEN) least significant
/// bit first. The input is cut into blocks of at most 65535 bytes, and each block is written
/// as whichever of these two is smaller (ties go to the compressed one):
///
/// - `BTYPE = 01`, fixed Huffman codes (RFC 1951 §3.2.6): a sequence of literals (bytes 0–255)
///   and ⟨length 3…258, distance 1…32768⟩ back-references, then the end-of-block symbol 256.
///   Literal/length symbols 0–143 take 8 bits, 144–255 take 9, 256–279 take 7, 280–287 take 8;
///   a length is a symbol 257–285 plus 0–5 extra bits, a distance a 5-bit code 0–29 plus 0–13
///   extra bits (tables ``lengthBase``, ``distanceBase``).
/// - `BTYPE = 00`, stored (§3.2.4): padding to the next byte, LEN and NLEN = ~LEN (u16 LE),
///   then the LEN bytes as they are. Used when the block does not compress (noise, photos);
///   it costs 5 bytes per block over the raw data.
///
/// Back-references may reach into earlier blocks (the window is the last 32 KiB of
/// input, whatever block types carried it); they never extend past the end of their own block.
///
/// ## Matching
///
/// Greedy LZ77: at each position the next 3 bytes are hashed (15 bits) into ``head``, the most
/// recent position with that hash; ``prev`` links each position to the previous one with the
/// same hash (a ring of 32 KiB). At most ``maxChain`` candidates closer than 32 KiB are
/// compared and the longest match is taken (3…258 bytes, the first found on ties, so the
/// nearest); every position a match covers is still entered into the hash tables. A
/// 3-byte match is taken only when it is cheaper in bits than its 3 literals.
/// Work per input byte is bounded (chain × 258 compares at worst), so the time is linear.
///
/// ## Why fixed Huffman codes are enough here
///
/// Attention pictures are flat areas of one color, rows that repeat the row above (bars,
/// scale bar, margins) and smooth gradients; after PNG's Sub/Up filters most of the data is
/// long runs of zeros, which LZ77 turns into a few 258-byte back-references of about
/// 12 bits each. What is left is dominated by literals that a dynamic Huffman code
/// (BTYPE = 10, with its code-length tables) would shorten by perhaps 10–20%: a few KiB at
/// most on these pictures, against a much larger and harder to verify encoder. The stored
/// fallback bounds the worst case (incompressible input) at +5 bytes per 64 KiB.
///
/// The compressor never traps: every array index is guarded by the loop conditions
/// (positions stay below the input size, candidates below the current position).
enum Deflate {
    /// The LZ77 window: how far back a distance may reach (RFC 1951 allows 32768; we stop
    /// one short so a candidate's ``prev`` slot is never the one just overwritten).
    static let windowSize = 1 << 15
    static let windowMask = windowSize - 1
    static let minMatch = 3
    static let maxMatch = 258
    /// Candidates compared per position: short, as the pictures' matches are found at once
    /// (the pixel to the left or the row above), and bounded, for linear time.
    static let maxChain = 16
    /// A match this long is taken without looking further down the chain.
    static let niceLength = 128
    static let hashBits = 15
    /// Input bytes per block; also the most a stored block can hold (LEN is a u16).
    static let blockSize = 65535

    // MARK: - Tables (RFC 1951 §3.2.5)

    /// Smallest length of each length symbol 257…285, and its extra bits.
    static let lengthBase: [Int] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                                    35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra: [Int] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                                     3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    /// Smallest distance of each distance code 0…29, and its extra bits.
    static let distanceBase: [Int] = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                                      257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
                                      8193, 12289, 16385, 24577]
    static let distanceExtra: [Int] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                       7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    /// Index into ``lengthBase`` (symbol − 257) for each length 0…258 (entries below 3 unused).
    static let lengthCode: [UInt8] = {
        var table = [UInt8](repeating: 0, count: maxMatch + 1)
        // In order, so 258 ends up with its own symbol 285 rather than 284's range 227…258.
        for code in 0..<lengthBase.count {
            let first = lengthBase[code], last = Swift.min(maxMatch, first + (1 << lengthExtra[code]) - 1)
            for length in first...last { table[length] = UInt8(code) }
        }
        return table
    }()

    /// Distance code for each distance 0…32768 (entry 0 unused).
    static let distanceCode: [UInt8] = {
        var table = [UInt8](repeating: 0, count: windowSize + 1)
        for code in 0..<distanceBase.count {
            let first = distanceBase[code], last = Swift.min(windowSize, first + (1 << distanceExtra[code]) - 1)
            for distance in first...last { table[distance] = UInt8(code) }
        }
        return table
    }()

    /// The fixed literal/length code of symbols 0…287, bit-reversed for LSB-first output, and its length.
    static let fixedLiteral: [(bits: UInt32, count: Int)] = (0..<288).map { symbol in
        let code: Int, count: Int
        switch symbol {
        case 0...143: (code, count) = (0x30 + symbol, 8)          // 00110000 …
        case 144...255: (code, count) = (0x190 + symbol - 144, 9) // 110010000 …
        case 256...279: (code, count) = (symbol - 256, 7)         // 0000000 …
        default: (code, count) = (0xC0 + symbol - 280, 8)         // 11000000 …
        }
        return (reversed(code, count), count)
    }

    /// The fixed distance codes 0…29: 5 bits each, bit-reversed.
    static let fixedDistance: [UInt32] = (0..<30).map { reversed($0, 5) }

    /// The low `count` bits of `code` in reverse order.
    static func reversed(_ code: Int, _ count: Int) -> UInt32 {
        var result: UInt32 = 0
        for i in 0..<count where code >> i & 1 == 1 { result |= 1 << UInt32(count - 1 - i) }
        return result
    }

    /// Bits a back-reference costs in the fixed code (symbol, length extra bits, distance code and extra bits).
    @inline(__always)
    static func matchCost(length: Int, distance: Int) -> Int {
        let l = Int(lengthCode[length]), d = Int(distanceCode[distance])
        return fixedLiteral[257 + l].count + lengthExtra[l] + 5 + distanceExtra[d]
    }

    /// Bits a literal byte costs in the fixed code.
    @inline(__always)
    static func literalCost(_ byte: UInt8) -> Int { byte < 144 ? 8 : 9 }

    @inline(__always)
    static func hash(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> Int {
        let v = UInt32(a) | UInt32(b) << 8 | UInt32(c) << 16
        return Int((v &* 2_654_435_761) >> UInt32(32 - hashBits))
    }

    // MARK: - Compression

    /// `data` as a raw DEFLATE stream (RFC 1951): fixed-Huffman blocks with greedy LZ77
    /// matches, or stored blocks where those would be larger. Empty input gives one empty
    /// fixed block (`03 00`).
    static func compress(_ data: [UInt8]) -> [UInt8] {
        let count = data.count
        var out = BitWriter()
        out.bytes.reserveCapacity(count / 8 + 64)

        var head = [Int](repeating: -1, count: 1 << hashBits)
        var prev = [Int](repeating: -1, count: windowSize)
        /// Enters position `p` (which has 3 bytes after it) into the hash chains; returns the previous head.
        @inline(__always)
        func insert(_ p: Int) -> Int {
            let h = hash(data[p], data[p + 1], data[p + 2])
            let previous = head[h]
            prev[p & windowMask] = previous
            head[h] = p
            return previous
        }

        // Tokens of the current block: a literal byte, or matchFlag | length << 16 | distance.
        let matchFlag: UInt32 = 1 << 31
        var tokens: [UInt32] = []
        tokens.reserveCapacity(Swift.min(count, blockSize))

        var start = 0
        repeat {
            let end = start + Swift.min(blockSize, count - start)
            let final = end == count
            tokens.removeAll(keepingCapacity: true)
            var fixedBits = 3 + fixedLiteral[256].count  // header + end of block
            var i = start
            while i < end {
                var bestLength = 0, bestDistance = 0
                if i + minMatch <= count {
                    var candidate = insert(i)
                    let maxLength = Swift.min(maxMatch, end - i)
                    var chain = maxChain
                    // candidate < i keeps every compare below i + maxLength <= end <= count.
                    while maxLength >= minMatch, candidate >= 0, candidate < i, i - candidate < windowSize, chain > 0 {
                        chain -= 1
                        if data[candidate + bestLength] == data[i + bestLength] {
                            var length = 0
                            while length < maxLength, data[candidate + length] == data[i + length] { length += 1 }
                            if length > bestLength {
                                bestLength = length
                                bestDistance = i - candidate
                                if length >= maxLength || length >= niceLength { break }
                            }
                        }
                        let next = prev[candidate & windowMask]
                        guard next < candidate else { break }  // chains only go back in time
                        candidate = next
                    }
                }
                if bestLength == minMatch {
                    // Far 3-byte matches can cost more than the 3 literals (up to 25 bits vs 24).
                    let literals = literalCost(data[i]) + literalCost(data[i + 1]) + literalCost(data[i + 2])
                    if matchCost(length: bestLength, distance: bestDistance) >= literals { bestLength = 0 }
                }
                if bestLength >= minMatch {
                    tokens.append(matchFlag | UInt32(bestLength) << 16 | UInt32(bestDistance))
                    fixedBits += matchCost(length: bestLength, distance: bestDistance)
                    let stop = i + bestLength
                    i += 1
                    while i < stop {
                        if i + minMatch <= count { _ = insert(i) }
                        i += 1
                    }
                } else {
                    tokens.append(UInt32(data[i]))
                    fixedBits += literalCost(data[i])
                    i += 1
                }
            }

            // A stored block: 3 header bits, padding to a byte, LEN and NLEN, the bytes.
            let padding = (8 - (out.pending + 3) % 8) % 8
            let storedBits = 3 + padding + 32 + 8 * (end - start)
            if fixedBits <= storedBits {
                out.write(final ? 0b011 : 0b010, 3)  // BFINAL, then BTYPE = 01 (LSB first)
                for token in tokens {
                    if token & matchFlag == 0 {
                        let code = fixedLiteral[Int(token)]
                        out.write(code.bits, code.count)
                    } else {
                        let length = Int(token >> 16 & 0x1FF), distance = Int(token & 0xFFFF)
                        let l = Int(lengthCode[length])
                        let symbol = fixedLiteral[257 + l]
                        out.write(symbol.bits, symbol.count)
                        out.write(UInt32(length - lengthBase[l]), lengthExtra[l])
                        let d = Int(distanceCode[distance])
                        out.write(fixedDistance[d], 5)
                        out.write(UInt32(distance - distanceBase[d]), distanceExtra[d])
                    }
                }
                let endOfBlock = fixedLiteral[256]
                out.write(endOfBlock.bits, endOfBlock.count)
            } else {
                out.write(final ? 1 : 0, 3)  // BFINAL, BTYPE = 00
                out.alignToByte()
                let length = end - start
                out.bytes.append(UInt8(length & 0xFF))
                out.bytes.append(UInt8(length >> 8 & 0xFF))
                out.bytes.append(UInt8(~length & 0xFF))
                out.bytes.append(UInt8(~length >> 8 & 0xFF))
                out.bytes.append(contentsOf: data[start..<end])
            }
            start = end
        } while start < count
        out.alignToByte()
        return out.bytes
    }

    /// Packs bit fields into bytes, least significant bit first (RFC 1951 §3.1.1).
    struct BitWriter {
        var bytes: [UInt8] = []
        var buffer: UInt64 = 0
        /// Bits in `buffer` not yet written out (always < 8 between calls).
        var pending = 0

        /// Appends the low `count` (0…32) bits of `bits`.
        @inline(__always)
        mutating func write(_ bits: UInt32, _ count: Int) {
            guard count > 0 else { return }
            let mask: UInt64 = count >= 32 ? 0xFFFF_FFFF : (1 << UInt64(count)) - 1
            buffer |= (UInt64(bits) & mask) << UInt64(pending)
            pending += Swift.min(count, 32)
            while pending >= 8 {
                bytes.append(UInt8(truncatingIfNeeded: buffer))
                buffer >>= 8
                pending -= 8
            }
        }

        /// Pads with zero bits to the next byte boundary.
        mutating func alignToByte() {
            if pending > 0 { bytes.append(UInt8(truncatingIfNeeded: buffer)) }
            buffer = 0
            pending = 0
        }
    }
}
