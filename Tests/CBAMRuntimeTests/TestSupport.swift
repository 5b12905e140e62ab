import Foundation
import Testing
@testable import CBAMRuntime

/// Paths into the repository, found from this file's location so tests read
/// Models/ and Fixtures/ in place.
enum Repo {
    static let root: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func path(_ relative: String) -> String { root.appendingPathComponent(relative).path }
}

/// The result of comparing an output with its reference.
struct Comparison: CustomStringConvertible {
    var maxAbsoluteError: Double = 0
    var maxRelativeError: Double = 0
    /// Elements outside `atol + rtol·|expected|` (numpy.allclose's rule).
    var mismatches = 0
    var shapeProblem: String? = nil

    var passed: Bool { shapeProblem == nil && mismatches == 0 }
    var description: String {
        shapeProblem ?? "max abs error \(maxAbsoluteError), max rel error \(maxRelativeError), \(mismatches) element(s) out of tolerance"
    }

    /// Compares element types, shapes and values. NaN matches NaN, infinities must be equal.
    init(actual: Tensor, expected: Tensor, atol: Double, rtol: Double) {
        guard actual.shape == expected.shape else {
            shapeProblem = "shape \(Shape.describe(actual.shape)) but expected \(Shape.describe(expected.shape))"
            return
        }
        guard actual.dataType == expected.dataType else {
            shapeProblem = "element type \(actual.dataType) but expected \(expected.dataType)"
            return
        }
        for (a, e) in zip(actual.doubles(), expected.doubles()) {
            if a.isNaN || e.isNaN {
                if !(a.isNaN && e.isNaN) { mismatches += 1 }
                continue
            }
            if a.isInfinite || e.isInfinite {
                if a != e { mismatches += 1 }
                continue
            }
            let difference = abs(a - e)
            maxAbsoluteError = max(maxAbsoluteError, difference)
            if e != 0 { maxRelativeError = max(maxRelativeError, difference / abs(e)) }
            if difference > atol + rtol * abs(e) { mismatches += 1 }
        }
    }
}

/// Runs `body` and returns the CBAMError it throws, recording an issue when it throws
/// nothing or another kind of error.
func thrownCBAMError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> CBAMError? {
    do {
        try body()
        Issue.record("expected a CBAMError, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as CBAMError {
        return error
    } catch {
        Issue.record("expected a CBAMError, got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

/// A small deterministic generator (SplitMix64), so randomised tests repeat exactly.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
