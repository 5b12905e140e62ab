import Foundation
import Testing
@testable import CBAMRuntime

@Suite("float16")
struct Float16Tests {
    @Test func npyRoundTripKeepsHalfPrecision() throws {
        // 1/3 in half precision is 0x3555 = 0.333251953125 (round to nearest even).
        let tensor = try Tensor(shape: [2], storage: .float16([Float16(Float(1) / 3), 65504]))
        let bytes = NPY.encode(tensor)
        #expect(String(decoding: bytes[10..<50], as: UTF8.self).contains("'<f2'"))
        let back = try NPY.decode(bytes)
        #expect(back == tensor)
        guard case .float16(let values) = back.storage else { Issue.record("not float16"); return }
        #expect(values[0].bitPattern == 0x3555)
    }

    @Test func castRoundsToNearestEvenAndBack() throws {
        // 2049 lies halfway between the halves 2048 and 2050: ties go to the even mantissa, 2048.
        let x = try Tensor(shape: [3], floats: [2049, 0.1, -7.5])
        let half = try cast(x, to: .float16)
        guard case .float16(let values) = half.storage else { Issue.record("not float16"); return }
        #expect(values.map(\.bitPattern) == [0x6800, 0x2E66, 0xC780])
        #expect(try cast(half, to: .float).floats() == [2048, 0.0999755859375, -7.5])
    }

    @Test func arithmeticOnHalvesComputesInFloatAndRoundsOnce() throws {
        let a = try Tensor(shape: [2], storage: .float16([1, 1000]))
        let b = try Tensor(shape: [2], storage: .float16([0.0001, 0.4]))
        // 1 + 0.0001 rounds back to 1 in half precision; 1000.4 rounds to 1000.5 (step 0.5).
        let sum = try arithmetic(a, b, float: +, double: +, int64: { $0 &+ $1 }, int32: { $0 &+ $1 })
        #expect(sum.storage == .float16([1, 1000.5]))
    }
}
