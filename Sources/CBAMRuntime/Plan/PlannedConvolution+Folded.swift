import Foundation

// The batch-folded convolution: one GEMM for the whole batch, on NHWC.
//
// A convolution on a small output map is bound by reading its weights, not by arithmetic:
// VGG-19's 512-channel 3×3 layers at 4×4 and 2×2 read 9.4 MB of weights for 16 or 4 output
// pixels an image. oneDNN's direct kernel (and im2col) read them again for every image of the
// batch, so batch 2 takes twice batch 1. Here the patches of every image are gathered into one
// matrix, `P[N·oH·oW, kH·kW·C]`, and multiplied once by the weights `[M, kH·kW·C]`: the weights
// are read once per run, and the product is Y in NHWC, `[N·oH·oW, M]`, with no reorder where
// the plan carries NHWC.

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
    /// `[N, M, oH, oW]` written in NHWC.
    ///
    /// The product runs as oneDNN's 1×1 convolution over one "image" of 1 × N·oH·oW pixels with
    /// kH·kW·C channels (the patch matrix in NHWC is exactly that), so the weights are reordered
    /// once, when the plan is built, into the layout its kernel streams fastest, and bias,
    /// residual and activation are its post-ops. Nil where oneDNN has no such kernel (the plan
    /// keeps its usual choice).
    static func batchFolded(_ g: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool,
                            activation: ConvActivation, threads: Int) throws -> ConvCandidate? {
        let (n, c, h, w, m) = (g.batch, g.channels, g.height, g.width, g.outputChannels)
        let (kh, kw, oh, ow) = (g.kernelHeight, g.kernelWidth, g.outputHeight, g.outputWidth)
        let (sh, sw, dh, dw, pt, pl) = (g.strideHeight, g.strideWidth, g.dilationHeight, g.dilationWidth, g.padTop, g.padLeft)
        let k = kh * kw * c, rows = n * oh * ow
        try BLAS.checkSize(k, rows, m)
        // Patches are X itself for a 1×1 convolution with stride 1 and no padding.
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w
        let patchBytes = pointwise ? 0 : rows * k * MemoryLayout<Float>.stride
        /// Row `(image·oH + oy)·oW + ox` of P: the kH·kW taps of C channels each, zeros off the image.
        func gatherPatches(_ x: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>) {
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
        let (source, destination) = (try DNNLLayout.channelsLast(g.sourceShape), try DNNLLayout.channelsLast(g.destinationShape))

        // W as the 1×1 convolution's `[M, kH·kW·C]`: W'[mo][(i·kW + j)·C + ci] = W[mo][ci][i][j].
        var flatWeights = [Float](repeating: 0, count: m * k)
        for mo in 0..<m {
            for ci in 0..<c {
                for i in 0..<kh {
                    for j in 0..<kw { flatWeights[mo * k + (i * kw + j) * c + ci] = weights[((mo * c + ci) * kh + i) * kw + j] }
                }
            }
        }
        let flat = DNNLConvolution.Geometry(batch: 1, channels: k, height: 1, width: rows, outputChannels: m, kernelHeight: 1, kernelWidth: 1)
        let primitive: DNNLConvolution? = try? flatWeights.withUnsafeBufferPointer { wp in
            try (bias ?? []).withUnsafeBufferPointer { bp in
                try DNNLConvolution(geometry: flat, weights: wp.baseAddress!, bias: bias == nil ? nil : bp.baseAddress,
                                    postOps: activation.postOps(residual: residual),
                                    layout: .given(source: try .channelsLast(flat.sourceShape), destination: try .channelsLast(flat.destinationShape)),
                                    threads: threads)
            }
        }
        if let primitive, !primitive.usesReferenceKernel, let scratchpad = try? primitive.scratchpadBytes(threads: threads) {
            let scratchpadOffset = (patchBytes + 63) / 64 * 64, count = rows * m
            return ConvCandidate(name: "folded-gemm:" + primitive.implementation, scratchBytes: scratchpadOffset + scratchpad,
                                 source: source, destination: destination, sumsIntoDestination: true, copiesWeights: true) { x, y, added, scratch in
                let patches = scratch.assumingMemoryBound(to: Float.self)
                if !pointwise { gatherPatches(x, into: patches) }
                if let added, added != UnsafePointer(y) { y.update(from: added, count: count) }
                try primitive.execute(source: pointwise ? x : UnsafePointer(patches), destination: y, threads: threads,
                                      scratchpad: scratchpad > 0 ? scratch + scratchpadOffset : nil)
            }
        }

        return nil
    }
}
