import Foundation

// The batch-folded convolution: one GEMM for the whole batch, on NHWC.
//
// A convolution on a small output map is bound by reading its weights, not by arithmetic:
// VGG-19's 512-channel 3×3 layers at 4×4 and 2×2 read 9.4 MB of weights for 16 or 4 output
// pixels an image. oneDNN's direct kernel (and im2col) read them again for every image of the
// batch, so batch 2 takes twice batch 1. Here the patches of every image are gathered into one
// matrix, `P[N·oH·oW, kH·kW·C]`, and multiplied once by the weights laid out as
// `Wᵀ[kH·kW·C, M]`: the weights are read once per run, and the product is Y in NHWC,
// `[N·oH·oW, M]`, with no reorder where the plan carries NHWC.

extension ConvCandidate {
    /// Whether a convolution takes the batch-folded kernel without timing: a batch of 2 or more,
    /// at most ``foldedMaximumRows`` output pixels over the whole batch (so each weight is used so
    /// few times that reading it bounds the time), and weights larger than a core's L2 (so the
    /// direct kernel's second and later reads come from L3 or memory).
    ///
    /// Timing cannot show it: on the buffers a plan times candidates on, the weights stay in the
    /// L3 between runs, while in the network the other layers' weights push them out. VGG-19-BN's
    /// 512-channel 3×3 convolutions at 4×4, batch 2, 1 thread: oneDNN's direct kernel timed
    /// 0.88 ms and this one 1.12 ms when compiling, but in the network they took 2.9–3.0 ms and
    /// 1.6 ms (the 2×2 ones 2.0 and 1.2–1.3 ms).
    static func prefersBatchFolded(batch: Int, outputPixels: Int, weightBytes: Int) -> Bool {
        let (rows, overflow) = batch.multipliedReportingOverflow(by: outputPixels)
        return batch >= 2 && !overflow && rows <= foldedMaximumRows && weightBytes > foldedMinimumWeightBytes
    }

    /// Output pixels over the batch up to which ``prefersBatchFolded(batch:outputPixels:weightBytes:)``
    /// holds: from about 64 uses of each weight the multiplications cost more than reading it.
    static let foldedMaximumRows = 64

    /// Weight bytes above which the direct kernel's repeated reads miss a core's L2 (2 MB here).
    static let foldedMinimumWeightBytes = 2 << 20

    /// The batch-folded kernel for an ungrouped 2-D convolution: X `[N, C, H, W]` read in NHWC,
    /// W `[M, C, kH, kW]`, optional bias `[M]`, optional residual and activation, Y
    /// `[N, M, oH, oW]` written in NHWC. `threads` split the output channels (each reads its
    /// share of the weights once).
    static func batchFolded(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, activation: ConvActivation,
                            threads: Int) throws -> ConvCandidate {
        let (n, c, h, w, m) = (g.batch, g.channels, g.height, g.width, g.outputChannels)
        let (kh, kw, oh, ow) = (g.kernelHeight, g.kernelWidth, g.outputHeight, g.outputWidth)
        let (sh, sw, dh, dw, pt, pl) = (g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft)
        let k = kh * kw * c, rows = n * oh * ow
        try BLAS.checkSize(k, rows, m)
        // Patches are X itself for a 1×1 convolution with stride 1 and no padding.
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w
        // Wᵀ[(i·kW + j)·C + ci][mo] = W[mo][ci][i][j].
        var transposed = [Float](repeating: 0, count: k * m)
        for mo in 0..<m {
            for ci in 0..<c {
                for i in 0..<kh {
                    for j in 0..<kw { transposed[((i * kw + j) * c + ci) * m + mo] = weights[((mo * c + ci) * kh + i) * kw + j] }
                }
            }
        }
        let weightsT = UncheckedSendable(transposed), shift = bias
        let patchBytes = pointwise ? 0 : rows * k * MemoryLayout<Float>.stride
        return ConvCandidate(name: "folded-gemm" + (threads > 1 ? "" : " 1T"), scratchBytes: patchBytes,
                             source: try .channelsLast(g.sourceShape), destination: try .channelsLast(g.destinationShape),
                             copiesWeights: true) { x, y, residual, scratch in
            let patches = pointwise ? x : UnsafePointer(scratch.assumingMemoryBound(to: Float.self))
            if !pointwise {
                let target = scratch.assumingMemoryBound(to: Float.self)
                for row in 0..<rows {
                    let (image, pixel) = row.quotientAndRemainder(dividingBy: oh * ow)
                    let (oy, ox) = pixel.quotientAndRemainder(dividingBy: ow)
                    for i in 0..<kh {
                        let iy = oy * sh - pt + i * dh
                        for j in 0..<kw {
                            let ix = ox * sw - pl + j * dw
                            let place = target + row * k + (i * kw + j) * c
                            if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                place.update(from: x + ((image * h + iy) * w + ix) * c, count: c)
                            } else {
                                place.update(repeating: 0, count: c)
                            }
                        }
                    }
                }
            }
            weightsT.value.withUnsafeBufferPointer { wt in
                Parallel.forEach(Swift.min(threads, m)) { worker in
                    let share = Parallel.share(worker, of: Swift.min(threads, m), count: m)
                    guard !share.isEmpty else { return }
                    BLAS.sgemm(m: rows, n: share.count, k: k, a: patches, lda: k, b: wt.baseAddress! + share.lowerBound, ldb: m,
                               c: y + share.lowerBound, ldc: m)
                    foldedEpilogue(y, residual, rows: rows, channels: m, share: share, bias: shift, activation: activation)
                }
            }
        }
    }
}

/// Bias, residual and activation on the channels `share` of every row of an NHWC output
/// `[rows, channels]` (the residual in the same layout).
private func foldedEpilogue(_ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?, rows: Int, channels: Int,
                            share: Range<Int>, bias: [Float]?, activation: ConvActivation) {
    guard bias != nil || residual != nil || activation != .none else { return }
    let relu = activation == .relu
    for row in 0..<rows {
        let line = y + row * channels
        let other = residual.map { $0 + row * channels }
        for col in share {
            var v = line[col] + (bias?[col] ?? 0) + (other?[col] ?? 0)
            if relu { v = Swift.max(v, 0) } else if case .gelu(let tanh) = activation { v = gelu(v, tanh: tanh) }
            line[col] = v
        }
    }
}
