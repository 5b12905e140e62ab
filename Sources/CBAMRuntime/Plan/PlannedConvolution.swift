import Dispatch
import Foundation

// Planned Conv (1-D and 2-D, float32, constant weights; a 3-D one whose kernel spans one
// element of the last axis as the 2-D one it equals), with bias, the residual Add and the
// Relu, HardSwish or Gelu of `cbam::FusedConv`. Five ways to compute it, chosen per Conv when the
// plan is compiled by timing the first three on this CPU (or forced with CBAM_CONV):
//   im2col + sgemm  columns in the step's scratch memory, one sgemm per (item, group)
//                   straight into the output's place, then one epilogue pass;
//   onednn-plain    a oneDNN primitive on plain NCHW, post-ops sum and eltwise_relu / gelu;
//   onednn-blocked  the primitive in the layout it prefers, reorders around it;
//   onednn-winograd oneDNN's Winograd kernel (3×3, stride 1, ungrouped, AVX-512, maps of 20
//                   and more), taken where it times 1.15× the direct choice and its scratch
//                   fits memory the plan has anyway;
//   folded-gemm     the whole batch's patches through one oneDNN 1×1 convolution, taken
//                   untimed where reading the weights is the cost (PlannedConvolution+Folded).
// The reference `ConvKernel` stays beside them for the differential tests.

extension PlannedKernels {
    static func registerConvolution(_ table: inout [String: Builder]) {
        table["Conv"] = { try convolution($0) }
        table[Passes.domain + "::FusedConv"] = { try convolution($0) }
        table["ConvTranspose"] = { try transposedConvolution($0) }
    }

    /// ConvTranspose (1-D and 2-D, constant weights) as a oneDNN deconvolution on plain NCHW;
    /// nil (the reference kernel) where oneDNN would use its reference implementation or
    /// refuses the geometry (negative end pads from output_padding, say).
    private static func transposedConvolution(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        guard context.convolution != .im2col, let weight = node.constant(1), x.type.dataType == .float, weight.dataType == .float,
              x.shape.count == 3 || x.shape.count == 4, weight.rank == x.shape.count else { return nil }
        if context.inputs.count > 2, context.inputs[2] != nil, node.constant(2) == nil { return nil }
        let reference = try ConvTransposeKernel(node)
        let geometry = try reference.window.geometry(weight: weight)
        let (outSpatial, padBegin) = try reference.resolve(input: Array(x.shape.dropFirst(2)), geometry: geometry)
        let group = reference.group
        let m = weight.shape[1] * group
        guard y.shape == [x.shape[0], m] + outSpatial else { return nil }
        func pair(_ v: [Int], _ fill: Int) -> (Int, Int) { v.count == 1 ? (fill, v[0]) : (v[0], v[1]) }
        let (h, w) = pair(Array(x.shape.dropFirst(2)), 1), (oh, ow) = pair(outSpatial, 1)
        let (kh, kw) = pair(geometry.kernel, 1), (sh, sw) = pair(geometry.strides, 1), (dh, dw) = pair(geometry.dilations, 1)
        let (pt, pl) = pair(padBegin, 0)
        let dnnlGeometry = DNNLDeconvolution.Geometry(
            batch: x.shape[0], channels: x.shape[1], height: h, width: w, outputChannels: m, kernelHeight: kh, kernelWidth: kw,
            strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw, padTop: pt, padLeft: pl,
            outputHeight: oh, outputWidth: ow, group: group)
        // output_padding shows up as a negative end pad, which oneDNN takes (tested against the
        // reference kernel in OneDNNTests and against PyTorch on ResnetFPN4).
        let (weights, bias) = (try weight.floats("W"), try node.constant(2)?.floats("B"))
        let threads = context.threads
        // On plain NCHW, and in the layouts oneDNN picks (blocked: its jit kernels, where plain
        // gets its gemm fallback) with reorders around it; the faster one, timed as Conv's are.
        func candidate(_ layout: DNNLActivationLayout, _ name: String) -> ConvCandidate? {
            guard let primitive = try? DNNLDeconvolution(geometry: dnnlGeometry, weights: weights, bias: bias, layout: layout, threads: threads),
                  !primitive.usesReferenceKernel else { return nil }
            return ConvCandidate(name: name + primitive.implementation, scratchBytes: 0, source: primitive.source, destination: primitive.destination) { x, y, _, _ in
                try primitive.execute(source: x, destination: y, threads: threads)
            }
        }
        let operands = try ConvOperandLayouts(plainX: dnnlGeometry.sourceShape, y: dnnlGeometry.destinationShape)
        let candidates = try [candidate(.plain, "onednn-deconv:"), context.convolution == .oneDNN ? nil : candidate(.chosenByPrimitive, "onednn-deconv-blocked:")]
            .compactMap { $0 }.map { try $0.adapted(to: operands, threads: threads) }
        guard !candidates.isEmpty else { return nil }
        let macs = x.count.multipliedReportingOverflow(by: weight.count / Swift.max(x.shape[1], 1))
        let chosen = ConvCandidate.fastest(candidates, choice: .fastest, macs: macs.overflow ? .max : macs.partialValue, x: x.count, y: y.count, residual: false)
        let scratch = context.scratch(bytes: chosen.scratchBytes)
        // Every candidate here is a oneDNN primitive, which holds its own copy of W and B.
        return PlannedKernel(detail: chosen.name, reorders: chosen.reorders, copiedConstantInputs: [1, 2]) { memory in
            try chosen.run(UnsafePointer(x.floats(memory)), y.floats(memory), nil, scratch.pointer(memory))
        }
    }

    /// BatchNormalization left after folding (one that follows no Conv, such as SKUnit's
    /// after the branch sum) becomes a per-channel scale and shift, computed once.
    static func registerNormalization(_ table: inout [String: Builder]) {
        table["BatchNormalization"] = { context in
            guard try context.node.int("training_mode", default: 0) == 0,
                  let (scale, shift) = try Passes.batchNormAffine(context.node, epsilon: try context.node.float("epsilon", default: 1e-5))
            else { return nil }
            let x = try context.input(0, "X"), y = try context.output(0)
            guard x.type.dataType == .float, x.shape.count >= 2, y.type == x.type, scale.count == x.shape[1] else { return nil }
            let (n, c) = (x.shape[0], x.shape[1]), inner = x.count / Swift.max(n * c, 1)
            return PlannedKernel(detail: "scale+shift") { memory in
                let (source, target) = (UnsafePointer(x.floats(memory)), y.floats(memory))
                for plane in 0..<(n * c) {
                    let channel = plane % c
                    affineRow(source + plane * inner, target + plane * inner, inner, scale[channel], shift[channel], relu: false)
                }
            }
        }
    }

    /// A 3-D Conv whose kernel is 1 wide on the last axis, with stride 1 and no padding there
    /// and stride 1 on the middle axis (LambdaResNet's positional lambda, `Conv3d(1, k, (r, r, 1))`
    /// over `[N, 1, H, W, V]`): the last axis only rides along, so with the last two axes as one
    /// (`[N, C, D, H·W]`) it is the 2-D Conv of kernel (kD, kH), dilations (dD, dH·W) and pads
    /// (pD, pH·W) — a window step of dH along H is dH·W elements of the joined axis, and a padded
    /// H row is W padded elements. Built as that Conv, on the same bytes; nil where it does not fit.
    private static func depthHeightConvolution(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        guard let weight = node.constant(1), weight.rank == 5, weight.shape[4] == 1, x.layout == .plain, y.layout == .plain,
              context.inputs.count <= 3 || context.inputs[3] == nil, try ConvActivation(node) == .none else { return nil }
        let geometry = try ConvWindow(node).geometry(weight: weight)
        let (d, h, w) = (x.shape[2], x.shape[3], x.shape[4])
        let (output, begin, end) = try geometry.resolve(input: [d, h, w])
        guard geometry.kernel[2] == 1, geometry.strides[1] == 1, geometry.strides[2] == 1, begin[2] == 0, end[2] == 0,
              output[2] == w, y.shape == [x.shape[0], weight.shape[0]] + output else { return nil }
        // The joined axis' dilation and pads must stay within what a window attribute may be.
        let limit = 1 << 24
        let joined = [geometry.dilations[1], begin[1], end[1]].map { $0.multipliedReportingOverflow(by: w) }
        guard joined.allSatisfy({ !$0.overflow && $0.partialValue < limit }) else { return nil }
        var flat = node.node
        flat.attributes["kernel_shape"] = .ints(Array(geometry.kernel[0...1]))
        flat.attributes["strides"] = .ints([geometry.strides[0], 1])
        flat.attributes["dilations"] = .ints([geometry.dilations[0], joined[0].partialValue])
        flat.attributes["pads"] = .ints([begin[0], joined[1].partialValue, end[0], joined[2].partialValue])
        flat.attributes["auto_pad"] = nil
        let weight4 = try weight.reshaped(Array(weight.shape[0...3]))
        let joinedX = Operand(type: ValueType(x.type.dataType, [x.shape[0], x.shape[1], d, h * w]), address: x.address)
        let joinedY = Operand(type: ValueType(y.type.dataType, [y.shape[0], y.shape[1], output[0], output[1] * w]), address: y.address)
        let inner = PlanContext(node: NodeContext(node: flat, opset: node.opset, threads: node.threads,
                                                  constants: [nil, weight4] + (0..<Swift.max(0, context.inputs.count - 2)).map { node.constant($0 + 2) }),
                                inputs: [joinedX] + Array(context.inputs.dropFirst()), outputs: [joinedY], threads: context.threads,
                                convolution: context.convolution, memory: context.memory, scratchIsFree: context.scratchIsFree)
        guard let kernel = try convolution(inner) else { return nil }
        _ = context.scratch(bytes: inner.scratchBytes)
        return kernel
    }

    /// Conv or FusedConv: X `[N, C, (H,) W]`, W `[M, C/group, (kH,) kW]` (a constant),
    /// optional B `[M]`, optional residual R `[N, M, (oH,) oW]` → Y `[N, M, (oH,) oW]`.
    private static func convolution(_ context: PlanContext) throws -> PlannedKernel? {
        let node = context.node
        let x = try context.input(0, "X"), y = try context.output(0)
        if x.shape.count == 5 { return try depthHeightConvolution(context) }
        guard let weight = node.constant(1), x.type.dataType == .float, weight.dataType == .float,
              x.shape.count == 3 || x.shape.count == 4 else { return nil }
        let bias = try node.constant(2).map { try $0.floats("B") }
        if context.inputs.count > 2, context.inputs[2] != nil, bias == nil { return nil }  // a runtime bias: reference path
        let residual = context.inputs.count > 3 ? context.inputs[3] : nil
        let activation = try ConvActivation(node)

        let geometry = try ConvWindow(node).geometry(weight: weight)
        let group = try node.int("group", default: 1)
        let (n, c, m) = (x.shape[0], x.shape[1], weight.shape[0])
        guard group >= 1, c % group == 0, m % group == 0, weight.shape[1] == c / group, weight.rank == x.shape.count else { return nil }
        let (outSpatial, padBegin, _) = try geometry.resolve(input: Array(x.shape.dropFirst(2)))
        guard y.shape == [n, m] + outSpatial, residual.map({ $0.type == y.type }) ?? true else { return nil }

        let spatial2D = { (v: [Int]) -> (Int, Int) in v.count == 1 ? (1, v[0]) : (v[0], v[1]) }
        let (h, w) = spatial2D(Array(x.shape.dropFirst(2)))
        let (oh, ow) = spatial2D(outSpatial)
        let (kh, kw) = spatial2D(geometry.kernel)
        let (sh, sw) = spatial2D(geometry.strides)
        let (dh, dw) = spatial2D(geometry.dilations)
        let (padH, padW) = padBegin.count == 1 ? (0, padBegin[0]) : (padBegin[0], padBegin[1])
        let (cg, mg) = (c / group, m / group)
        let k = cg * kh * kw, p = oh * ow
        try BLAS.checkSize(k, p, mg)
        // X itself is the column matrix only where the output is the input's size (not with padding at the end alone).
        let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && padH == 0 && padW == 0 && oh == h && ow == w

        // Work split: whole (item, group) units per worker when there are enough of them,
        // otherwise one unit at a time with its columns and sgemm split across workers.
        let items = n * group
        let macsPerItem = mg * k * p
        let allThreads = macsPerItem >= Parallel.minimumMACs ? context.threads : 1
        let columnsBytes = pointwise ? 0 : k * p * MemoryLayout<Float>.stride
        let weights = UncheckedSendable(try weight.floats("W"))

        // Candidate 1, always there: im2col into scratch and sgemm per (item, group), then the epilogue.
        let epilogue = EpilogueParameters(bias: bias, activation: activation, rows: mg, columns: p)
        func im2colCandidate(threads: Int) -> ConvCandidate {
        let perItem = threads > 1 && items >= threads
        return ConvCandidate(name: (pointwise ? "sgemm" : "im2col+sgemm") + (threads > 1 ? "" : " 1T"),
                             scratchBytes: columnsBytes * (perItem ? threads : 1)) { source, target, added, scratch in
            let columns = scratch.assumingMemoryBound(to: Float.self)
            weights.value.withUnsafeBufferPointer { wp in
                let w0 = wp.baseAddress!
                @inline(__always) func unfold(_ image: UnsafePointer<Float>, into buffer: UnsafeMutablePointer<Float>, channels: Range<Int>) {
                    im2col(image + channels.lowerBound * h * w, channels: channels.count, h: h, w: w, kh: kh, kw: kw, oh: oh, ow: ow,
                           strideH: sh, strideW: sw, dilH: dh, dilW: dw, padH: padH, padW: padW,
                           into: buffer + channels.lowerBound * kh * kw * p)
                }
                if perItem {
                    Parallel.forEach(threads) { worker in
                        let own = columns + worker * (columnsBytes / MemoryLayout<Float>.stride)
                        for item in stride(from: worker, to: items, by: threads) {
                            let (batch, g) = (item / group, item % group)
                            let image = source + (batch * c + g * cg) * h * w
                            if !pointwise { unfold(image, into: own, channels: 0..<cg) }
                            let offset = (batch * m + g * mg) * p
                            BLAS.sgemm(m: mg, n: p, k: k, a: w0 + g * mg * k, lda: k, b: pointwise ? image : UnsafePointer(own), ldb: p,
                                       c: target + offset, ldc: p)
                            epilogue.apply(target + offset, added.map { $0 + offset }, firstChannel: g * mg, columns: 0..<p)
                        }
                    }
                } else {
                    for item in 0..<items {
                        let (batch, g) = (item / group, item % group)
                        let image = source + (batch * c + g * cg) * h * w
                        if !pointwise {
                            Parallel.forEach(threads) { worker in unfold(image, into: columns, channels: Parallel.share(worker, of: threads, count: cg)) }
                        }
                        let offset = (batch * m + g * mg) * p
                        let b = pointwise ? image : UnsafePointer(columns)
                        // Column blocks of Y_g = W_g · cols, one per worker, each with its epilogue.
                        Parallel.forEach(threads) { worker in
                            let share = Parallel.share(worker, of: threads, count: p)
                            guard !share.isEmpty else { return }
                            BLAS.sgemm(m: mg, n: share.count, k: k, a: w0 + g * mg * k, lda: k, b: b + share.lowerBound, ldb: p,
                                       c: target + offset + share.lowerBound, ldc: p)
                            epilogue.apply(target + offset, added.map { $0 + offset }, firstChannel: g * mg, columns: share)
                        }
                    }
                }
            }
        }
        }
        // With several threads, one-thread variants compete too: a small convolution's team
        // hand-offs can cost more than they share.
        let threadCounts = allThreads > 1 ? [allThreads, 1] : [1]
        let cores = threadCounts.map { im2colCandidate(threads: $0) }
        let dnnlGeometry = oneDNNGeometry(x: x, m: m, group: group, kernel: (kh, kw), strides: (sh, sw), dilations: (dh, dw),
                                      padBegin: padBegin, output: (oh, ow))
        // X, Y and R as they lie in the arena (a carried layout, or plain); each candidate
        // reorders into the layouts its kernel reads, inside its step, where they differ.
        let carried = x.layout != .plain || y.layout != .plain || (residual?.layout ?? .plain) != .plain
        let operandLayouts = carried ? try ConvOperandLayouts(geometry: dnnlGeometry, x: x.layout, y: y.layout, residual: residual?.layout)
            : try? ConvOperandLayouts(geometry: dnnlGeometry, x: .plain, y: .plain, residual: residual.map { _ in .plain })
        // The batch-folded GEMM (ungrouped 2-D): forced, or untimed where reading the weights once
        // per image is the cost (``ConvCandidate/prefersBatchFolded``). Decided first, so that the
        // candidates it replaces are neither built nor timed.
        func foldedChoice() throws -> ConvCandidate? {
            guard group == 1, x.shape.count == 4, let operandLayouts,
                  context.convolution == .folded || context.convolution.isTimed
                      && ConvCandidate.prefersBatchFolded(batch: n, outputPixels: oh * ow, weightBytes: weight.count * MemoryLayout<Float>.stride),
                  let folded = try ConvCandidate.batchFolded(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil,
                                                             activation: activation, threads: context.threads) else { return nil }
            return try folded.adapted(to: operandLayouts, threads: context.threads)
        }
        // Otherwise the timed (or forced) choice among im2col and oneDNN's kernels, then Winograd.
        func usualChoice() throws -> ConvCandidate {
            var candidates = try cores.map { core in carried ? try core.adapted(to: operandLayouts!, threads: context.threads) : core }
            if context.convolution != .im2col, let operandLayouts {
                // A large convolution takes oneDNN's own-layout kernel untimed (``ConvCandidate/fastest``): build that
                // one alone first, since each primitive holds its own reordered copy of the weights while it lives.
                let untimed = context.convolution.isTimed && items * macsPerItem >= ConvCandidate.untimedMACs
                    ? try oneDNNCandidates(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil, activation: activation,
                                           threads: context.threads, onlyOwnLayout: true).filter(\.isOwnLayoutKernel) : []
                if let only = untimed.first {
                    candidates += [try only.adapted(to: operandLayouts, threads: context.threads)]
                } else {
                    for threads in context.threads > 1 ? [context.threads, 1] : [1] {
                        candidates += try oneDNNCandidates(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil, activation: activation,
                                                           threads: threads, carried: carried ? operandLayouts : nil)
                            .map { try $0.adapted(to: operandLayouts, threads: threads) }
                    }
                }
            }
            var chosen = ConvCandidate.fastest(candidates, choice: context.convolution, macs: items * macsPerItem,
                                               x: x.count, y: y.count, residual: residual != nil, grouped: group > 1)
            // oneDNN's Winograd kernel where it has one (3×3, stride 1, ungrouped, maps of
            // ``winogradMinimumMap`` and more, AVX-512): forced, or timed against the direct choice.
            // Chosen by time, it must also find its scratch (a larger buffer of transformed tiles)
            // where the plan has memory anyway: the speed is not worth a larger arena. Where the
            // batch's primitive wants too much, the batch-1 one run image by image may fit.
            let winogradKinds: [ConvolutionKernel] = [.oneDNNWinograd, .oneDNNWinogradPerImage, .fastest]
            if let operandLayouts, winogradKinds.contains(context.convolution),
               let winograd = try winogradCandidate(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil,
                                                    activation: activation, threads: context.threads)?.adapted(to: operandLayouts, threads: context.threads) {
                func perImage() throws -> ConvCandidate? {
                    try perImageWinogradCandidate(dnnlGeometry, x: x.layout, y: y.layout, residual: residual?.layout, weights: weights.value,
                                                  bias: bias, activation: activation, threads: context.threads)
                }
                if context.convolution == .oneDNNWinograd {
                    chosen = winograd
                } else if context.convolution == .oneDNNWinogradPerImage {
                    chosen = try perImage() ?? winograd
                } else if let fitting = ConvCandidate.winogradScratchFits(winograd.scratchBytes, context) ? winograd
                            : try perImage().flatMap({ ConvCandidate.winogradScratchFits($0.scratchBytes, context) ? $0 : nil }) {
                    chosen = ConvCandidate.prefer(fitting, over: chosen, margin: ConvCandidate.winogradMargin, x: x.count, y: y.count, residual: residual != nil, macs: items * macsPerItem)
                } else if traceChoices {
                    FileHandle.standardError.write(Data("conv \(items * macsPerItem) MACs: \(winograd.name) left out, its \(winograd.scratchBytes) bytes of scratch would grow the plan\n".utf8))
                }
            }
            // Our Winograd kernel: forced, or timed against the choice so far on the maps where
            // oneDNN builds no Winograd kernel, when the plan may hold its larger weights.
            if let operandLayouts, context.convolution == .winogradF2
                || context.convolution == .fastest && context.memory == .speed && Swift.min(oh, ow) < winogradMinimumMap,
               let ours = try ConvCandidate.winogradF2(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil,
                                                       activation: activation, threads: context.threads)?.adapted(to: operandLayouts, threads: context.threads) {
                if context.convolution == .winogradF2 {
                    chosen = ours
                } else if ConvCandidate.winogradScratchFits(ours.scratchBytes, context) {
                    chosen = ConvCandidate.prefer(ours, over: chosen, margin: ConvCandidate.winogradF2Margin, x: x.count, y: y.count,
                                                  residual: residual != nil, macs: items * macsPerItem)
                }
            }
            return chosen
        }
        // The streamed kernel where few output pixels use many weights: forced, or untimed with
        // the AVX-512 variant (``ConvCandidate/prefersStreamed(isa:)``; decided first, so that the
        // candidates it replaces are neither built nor timed), else timed against the choice the
        // plan would make without it.
        let streamed = context.convolution == .streamed || context.convolution.isTimed
            ? try operandLayouts.flatMap { layouts in
                try ConvCandidate.streamed(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil,
                                           activation: activation, threads: context.threads,
                                           forced: context.convolution == .streamed)?.adapted(to: layouts, threads: context.threads)
            } : nil
        // Our grouped kernel (ResNeXt's 3×3 layers): forced, or untimed on wide groups with AVX-512
        // (``ConvCandidate/prefersGrouped(_:isa:)``; decided first, like the streamed kernel), else
        // timed against the choice the plan would make without it.
        let grouped = group > 1 && (context.convolution == .grouped || context.convolution.isTimed)
            ? try operandLayouts.flatMap { layouts in
                try ConvCandidate.grouped(dnnlGeometry, weights: weights.value, bias: bias, residual: residual != nil,
                                          activation: activation, threads: context.threads)?.adapted(to: layouts, threads: context.threads)
            } : nil
        let chosen: ConvCandidate
        if let streamed, context.convolution == .streamed || ConvCandidate.prefersStreamed() {
            chosen = streamed
        } else if let streamed {
            chosen = ConvCandidate.prefer(streamed, over: try foldedChoice() ?? usualChoice(), margin: ConvCandidate.streamedMargin,
                                          x: x.count, y: y.count, residual: residual != nil, macs: items * macsPerItem)
        } else if let grouped, context.convolution == .grouped || ConvCandidate.prefersGrouped(dnnlGeometry) {
            chosen = grouped
        } else if let grouped {
            chosen = ConvCandidate.prefer(grouped, over: try usualChoice(), margin: ConvCandidate.groupedMargin,
                                          x: x.count, y: y.count, residual: residual != nil, macs: items * macsPerItem)
        } else {
            chosen = try foldedChoice() ?? usualChoice()
        }
        let scratch = context.scratch(bytes: chosen.scratchBytes)
        // A oneDNN primitive holds its own copy of W and B; im2col reads the constants' buffers.
        return PlannedKernel(detail: chosen.name, reorders: chosen.reorders, copiedConstantInputs: chosen.copiesWeights ? [1, 2] : []) { memory in
            try chosen.run(UnsafePointer(x.floats(memory)), y.floats(memory), residual.map { UnsafePointer($0.floats(memory)) },
                           scratch.pointer(memory))
        }
    }
}

/// One way to compute a planned Conv: `run(x, y, residual, scratch)`, X in `source`
/// layout, Y and the residual in `destination` layout (nil: plain NCHW).
struct ConvCandidate {
    typealias Run = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafePointer<Float>?, UnsafeMutableRawPointer) throws -> Void
    let name: String
    let scratchBytes: Int
    let run: Run
    /// The layouts the kernel reads X in and writes Y in (nil: plain).
    var source: DNNLLayout? = nil
    var destination: DNNLLayout? = nil
    /// True when the kernel adds the residual by summing into Y (oneDNN's sum post-op), so a
    /// reordered residual can be written straight into Y; false when it reads it apart (im2col's epilogue).
    var sumsIntoDestination = false
    /// Reorders the step runs around the kernel (operands in another layout than the kernel's).
    var reorders = 0

    /// True when the kernel made its own copy of the weights and bias when it was built (a oneDNN
    /// primitive's reordered weights, the batch-folded kernel's too), so the plan can let the
    /// constants go; false when it reads the constants' buffers (im2col).
    let copiesWeights: Bool

    init(name: String, scratchBytes: Int, source: DNNLLayout? = nil, destination: DNNLLayout? = nil, sumsIntoDestination: Bool = false,
         copiesWeights: Bool? = nil, _ run: @escaping Run) {
        self.name = name
        self.copiesWeights = copiesWeights ?? name.hasPrefix("onednn")
        self.scratchBytes = scratchBytes
        self.source = source
        self.destination = destination
        self.sumsIntoDestination = sumsIntoDestination
        self.run = run
    }

    /// This candidate on operands laid out as `operands`: X reordered into the kernel's source
    /// layout, Y written in the kernel's layout and reordered out, the residual reordered in,
    /// each through scratch memory after the kernel's own, only where the layouts differ.
    func adapted(to operands: ConvOperandLayouts, threads: Int) throws -> ConvCandidate {
        let kernelSource = try source ?? .plain(operands.x.dims), kernelDestination = try destination ?? .plain(operands.y.dims)
        let into = operands.x == kernelSource ? nil : try DNNLReorder(from: operands.x, to: kernelSource)
        let outOf = operands.y == kernelDestination ? nil : try DNNLReorder(from: kernelDestination, to: operands.y)
        let residualInto = try operands.residual.flatMap { $0 == kernelDestination ? nil : try DNNLReorder(from: $0, to: kernelDestination) }
        let reorders = [into != nil, outOf != nil, residualInto != nil].filter { $0 }.count
        guard reorders > 0 else { return self }
        func aligned(_ floats: Int) -> Int { (floats * MemoryLayout<Float>.stride + 63) / 64 * 64 }
        let xOffset = (scratchBytes + 63) / 64 * 64
        let yOffset = xOffset + (into == nil ? 0 : aligned(kernelSource.elementCount))
        // A residual that the kernel sums into Y goes straight into Y's buffer; else it gets its own.
        let separateResidual = residualInto != nil && !sumsIntoDestination
        let rOffset = yOffset + (outOf == nil ? 0 : aligned(kernelDestination.elementCount))
        let total = rOffset + (separateResidual ? aligned(kernelDestination.elementCount) : 0)
        let core = run
        var result = ConvCandidate(name: name + " (\(operands.x.description)→\(operands.y.description), \(reorders) reorder\(reorders == 1 ? "" : "s"))",
                                   scratchBytes: total, copiesWeights: copiesWeights) { x, y, added, scratch in
            let source = into == nil ? x : UnsafePointer((scratch + xOffset).assumingMemoryBound(to: Float.self))
            if let into { try into.execute(source: x, destination: (scratch + xOffset).assumingMemoryBound(to: Float.self), threads: threads) }
            let target = outOf == nil ? y : (scratch + yOffset).assumingMemoryBound(to: Float.self)
            var residual = added
            if let added, let residualInto {
                let place = separateResidual ? (scratch + rOffset).assumingMemoryBound(to: Float.self) : target
                try residualInto.execute(source: added, destination: place, threads: threads)
                residual = UnsafePointer(place)
            }
            try core(source, target, residual, scratch)
            if let outOf { try outOf.execute(source: UnsafePointer(target), destination: y, threads: threads) }
        }
        result.reorders = reorders
        return result
    }

    /// From these MACs a convolution with one of oneDNN's own-layout kernels takes it untimed.
    static let untimedMACs = 1 << 24

    /// oneDNN's kernel in the layout it prefers (not its gemm fallback).
    var isOwnLayoutKernel: Bool { name.hasPrefix("onednn-blocked:") && !name.contains("gemm") }

    /// The candidate that runs fastest on this machine, timed now on zero buffers of the
    /// step's sizes (fastest of 5 runs after one warm-up). Which kernel wins depends on the
    /// CPU and the shape: oneDNN's blocked kernels win on large maps, im2col + sgemm on tiny
    /// ones, where a primitive's fixed cost dominates. Below 2^16 MACs only grouped convolutions are timed.
    static func fastest(_ candidates: [ConvCandidate], choice: ConvolutionKernel, macs: Int, x: Int, y: Int, residual: Bool,
                        grouped: Bool = false) -> ConvCandidate {
        if choice == .im2col { return candidates[0] }
        if !choice.isTimed, let forced = candidates.first(where: { $0.name.hasPrefix(choice.prefix) }) { return forced }
        // A grouped convolution is timed however small: im2col makes one sgemm call per group
        // (per channel, depthwise), which oneDNN's grouped and depthwise kernels avoid.
        guard candidates.count > 1, macs >= 1 << 16 || grouped else { return candidates[0] }
        // A large convolution with one of oneDNN's own-layout kernels (not its gemm fallback) takes
        // it without timing: measured 1.6–1.8× plain NCHW on AVX-512 (docs/onednn.md), and
        // timing a large candidate on a busy machine costs compile time and can mislead.
        if traceChoices { FileHandle.standardError.write(Data("conv \(macs) MACs: candidates \(candidates.map(\.name))\n".utf8)) }
        if macs >= untimedMACs, let blocked = candidates.first(where: \.isOwnLayoutKernel) {
            return blocked
        }
        // The default without timing: from 2^20 MACs oneDNN's kernel in the layout its neighbours
        // are carried in (no reorder), else its own-layout kernel; im2col below.
        let blocked = candidates.first(where: { $0.name.hasPrefix("onednn-carried:") }) ?? candidates.first(where: \.isOwnLayoutKernel)
        let preferred = macs >= 1 << 20 ? blocked ?? candidates[0] : candidates[0]
        let fastestTimes = time(candidates, x: x, y: y, residual: residual, macs: macs)
        guard let winner = fastestTimes.min(by: { $0.nanoseconds < $1.nanoseconds }) else { return preferred }
        // Keep the default unless another kernel is clearly faster (15%): two processes then
        // make the same choice even when their timings differ by a little.
        let chosen = fastestTimes.first(where: { $0.candidate.name == preferred.name }).map { $0.nanoseconds <= winner.nanoseconds * 1.15 } == true
            ? preferred : winner.candidate
        if traceChoices { FileHandle.standardError.write(Data("conv \(macs) MACs: chose \(chosen.name)\n".utf8)) }
        return chosen
    }
}

extension ConvCandidate {
    /// Each candidate's fastest of 5 runs after a warm-up, on zero buffers of the step's sizes
    /// (candidates that throw are left out). The minimum, not the median, because what a
    /// busy machine adds (preemption, another process's cache traffic) only ever adds time.
    /// The candidates take turns, run by run, so that a burst of such noise slows them all
    /// rather than whichever happened to be timed during it.
    static func time(_ candidates: [ConvCandidate], x: Int, y: Int, residual: Bool, macs: Int) -> [(candidate: ConvCandidate, nanoseconds: Double)] {
        let source = AlignedBuffer(byteCount: x * 4), target = AlignedBuffer(byteCount: y * 4)
        let added = residual ? AlignedBuffer(byteCount: y * 4) : nil
        for buffer in [source, target] + (added.map { [$0] } ?? []) { buffer.pointer.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.byteCount) }
        let scratches = candidates.map { AlignedBuffer(byteCount: $0.scratchBytes) }
        var best = [Double](repeating: .infinity, count: candidates.count)
        var failed = [Bool](repeating: false, count: candidates.count)
        for attempt in 0..<6 {
            for (index, candidate) in candidates.enumerated() where !failed[index] {
                let start = DispatchTime.now().uptimeNanoseconds
                do {
                    try candidate.run(UnsafePointer(source.pointer.assumingMemoryBound(to: Float.self)), target.pointer.assumingMemoryBound(to: Float.self),
                                      added.map { UnsafePointer($0.pointer.assumingMemoryBound(to: Float.self)) }, scratches[index].pointer)
                } catch { if traceChoices { FileHandle.standardError.write(Data("conv \(macs) MACs: \(candidate.name) failed: \(error)\n".utf8)) }; failed[index] = true; continue }
                if attempt > 0 { best[index] = Swift.min(best[index], Double(DispatchTime.now().uptimeNanoseconds - start)) }
            }
        }
        var times: [(candidate: ConvCandidate, nanoseconds: Double)] = []
        for (index, candidate) in candidates.enumerated() where !failed[index] && best[index].isFinite {
            if traceChoices { FileHandle.standardError.write(Data("conv \(macs) MACs: \(candidate.name) \(best[index] / 1e6) ms\n".utf8)) }
            times.append((candidate, best[index]))
        }
        return times
    }

    /// `alternative` (Winograd, the streamed kernel) instead of `chosen` when, timed side by side
    /// in the operands' layouts (reorders included), it is at least `margin` times as fast.
    static func prefer(_ alternative: ConvCandidate, over chosen: ConvCandidate, margin: Double, x: Int, y: Int, residual: Bool,
                       macs: Int) -> ConvCandidate {
        let times = time([chosen, alternative], x: x, y: y, residual: residual, macs: macs)
        guard times.count == 2 else { return times.first?.candidate ?? chosen }
        let result = times[1].nanoseconds * margin <= times[0].nanoseconds ? alternative : chosen
        if traceChoices { FileHandle.standardError.write(Data("conv \(macs) MACs: chose \(result.name)\n".utf8)) }
        return result
    }

    /// How much faster than the direct kernel Winograd must time in its step (reorders to and
    /// from its nChw16c layout included) to be taken: the margin keeps it off maps where it only
    /// ties, since it costs memory (larger transformed weights) and its result differs from the
    /// direct kernel's by more rounding. On this VM it timed 1.3–1.4× on ResNet-18's 56×56 and
    /// 28×28 steps, and whole networks took 0.90–0.92 (ResNet-18 + CBAM, SE-ResNet-34) and
    /// 0.95–0.97 (ResNet-50 + CBAM) of the direct plan's time, runs alternating in one process.
    static let winogradMargin = 1.15

    /// Whether a Winograd kernel timed by the plan may take `bytes` of scratch: where they fit
    /// memory the plan has anyway, or (``MemoryPreference/speed``) up to ``winogradFreeScratchBytes``.
    static func winogradScratchFits(_ bytes: Int, _ context: PlanContext) -> Bool {
        context.scratchIsFree(bytes) || context.memory == .speed && bytes <= winogradFreeScratchBytes
    }

    /// Scratch a Winograd kernel may add to the plan: the plan has one scratch buffer, shared by
    /// all steps, so this costs at most 4 MB once. It lets SE-ResNet-34's 28×28 layers take oneDNN's
    /// Winograd kernel at batch 1 (2.35–2.9 MB): paired, the whole network took 0.83 of the time
    /// before where without it 0.88 (one thread, our Winograd kernel on the 7×7 and 14×14 maps in
    /// both). The batch-2 primitive's 9.2 MB still have to fit memory the plan has.
    static let winogradFreeScratchBytes = 4 << 20
}

/// `CBAM_CONV_TRACE=1` prints every timed Conv candidate to standard error.
private let traceChoices = ProcessInfo.processInfo.environment["CBAM_CONV_TRACE"] == "1"

extension ConvolutionKernel {
    /// The plan times the candidates (`fastest`, `direct`) rather than taking a forced one.
    var isTimed: Bool { self == .fastest || self == .direct }

    var prefix: String {
        switch self {
        case .fastest, .direct: return ""
        case .im2col: return "im2col"
        case .oneDNN: return "onednn-plain"
        case .oneDNNBlocked: return "onednn-blocked"
        case .oneDNNCarried: return "onednn-carried"
        case .oneDNNWinograd, .oneDNNWinogradPerImage: return "onednn-winograd"
        case .folded: return "folded-gemm"
        case .streamed: return "streamed"
        case .winogradF2: return "winograd-f2"
        case .grouped: return "grouped"
        }
    }
}

/// Output maps below this many rows or columns get no Winograd kernel: its transforms cost more
/// than the multiplications they save there, and its weights are largest there (measured alone
/// on this VM, batch 2: 0.5–0.9× the direct kernel on 512 channels at 7×7, 1.2–2× at 14×14,
/// 1.7–2.3× at 28×28 and 56×56; docs/onednn.md).
let winogradMinimumMap = 20

/// oneDNN's Winograd kernel for this convolution, in the layout it wants, or nil where it has
/// none (not 3×3 stride 1 ungrouped, a map under ``winogradMinimumMap``, a CPU without AVX-512,
/// a post-op it does not take).
private func winogradCandidate(_ geometry: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool,
                               activation: ConvActivation, threads: Int) -> ConvCandidate? {
    guard DNNLConvolutionAlgorithm.winogradFits(geometry),
          Swift.min(geometry.outputHeight, geometry.outputWidth) >= winogradMinimumMap else { return nil }
    let postOps = activation.postOps(residual: residual)
    guard let primitive = try? DNNLConvolution(geometry: geometry, weights: weights, bias: bias, postOps: postOps, layout: .chosenByPrimitive,
                                               threads: threads, algorithm: .winograd),
          !primitive.usesReferenceKernel else { return nil }
    return oneDNNCandidate(primitive, "onednn-winograd:" + primitive.implementation + " " + primitive.source.tag, threads: threads)
}

/// The images of a batch one at a time through the batch-1 Winograd primitive, nil for batch 1
/// or where there is none. From batch 2 oneDNN takes its F(4×4) kernel, whose scratch of
/// transformed tiles is several MB (9.2 MB for ResNet-50's 56×56 steps at batch 2); at batch 1
/// it takes F(2×2) with a quarter of that, which fits gaps of the arena the other does not.
/// Each image lies contiguous in every layout the plan carries (NCHW, NHWC, nChw8c/16c).
private func perImageWinogradCandidate(_ g: DNNLConvolution.Geometry, x: Layout, y: Layout, residual: Layout?, weights: [Float],
                                       bias: [Float]?, activation: ConvActivation, threads: Int) throws -> ConvCandidate? {
    guard g.batch > 1 else { return nil }
    var single = g
    single.batch = 1
    let layouts = try ConvOperandLayouts(geometry: single, x: x, y: y, residual: residual)
    guard let one = try winogradCandidate(single, weights: weights, bias: bias, residual: residual != nil, activation: activation,
                                          threads: threads)?.adapted(to: layouts, threads: threads) else { return nil }
    let (images, xStride, yStride) = (g.batch, layouts.x.elementCount, layouts.y.elementCount)
    var result = ConvCandidate(name: one.name + " per image", scratchBytes: one.scratchBytes) { x, y, added, scratch in
        for image in 0..<images {
            try one.run(x + image * xStride, y + image * yStride, added.map { $0 + image * yStride }, scratch)
        }
    }
    result.reorders = one.reorders
    return result
}

private func oneDNNGeometry(x: Operand, m: Int, group: Int, kernel: (Int, Int), strides: (Int, Int), dilations: (Int, Int),
                            padBegin: [Int], output: (Int, Int)) -> DNNLConvolution.Geometry {
    let spatial = Array(x.shape.dropFirst(2))
    let (h, w) = spatial.count == 1 ? (1, spatial[0]) : (spatial[0], spatial[1])
    let (padTop, padLeft) = padBegin.count == 1 ? (0, padBegin[0]) : (padBegin[0], padBegin[1])
    // End pads that give exactly the planned output size. A stride that leaves the last rows
    // unread (1×1 stride 2 on an even size) gives a negative figure, which oneDNN refuses;
    // 0 gives the same output size, its formula rounding down as ONNX's does.
    let padBottom = Swift.max(0, (output.0 - 1) * strides.0 + (kernel.0 - 1) * dilations.0 + 1 - h - padTop)
    let padRight = Swift.max(0, (output.1 - 1) * strides.1 + (kernel.1 - 1) * dilations.1 + 1 - w - padLeft)
    return DNNLConvolution.Geometry(
        batch: x.shape[0], channels: x.shape[1], height: h, width: w, outputChannels: m,
        kernelHeight: kernel.0, kernelWidth: kernel.1, strideHeight: strides.0, strideWidth: strides.1,
        dilationHeight: dilations.0, dilationWidth: dilations.1,
        padTop: padTop, padLeft: padLeft, padBottom: padBottom, padRight: padRight, group: group)
}

/// oneDNN candidates: the primitive on plain NCHW, and the primitive in the layout it
/// prefers (nhwc or nChw16c on AVX-512, nChw8c on AVX2), each reading and writing its own
/// layouts (``ConvCandidate/adapted(to:threads:)`` reorders operands that lie otherwise).
/// oneDNN's reference kernels are not offered: they are slower than im2col.
/// With `onlyOwnLayout`, the own-layout primitive alone (for a convolution that takes it untimed).
/// With `carried` operand layouts other than the primitive's preferred ones (a grouped conv
/// between NHWC neighbours prefers nChw4c, say), also the primitive asked for exactly those:
/// no reorder, if oneDNN has a kernel for them that is not its reference one.
private func oneDNNCandidates(_ geometry: DNNLConvolution.Geometry, weights: [Float], bias: [Float]?, residual: Bool,
                              activation: ConvActivation, threads: Int, onlyOwnLayout: Bool = false,
                              carried: ConvOperandLayouts? = nil) throws -> [ConvCandidate] {
    let postOps = activation.postOps(residual: residual)
    func make(_ layout: DNNLActivationLayout) -> DNNLConvolution? {
        try? weights.withUnsafeBufferPointer { wp in
            try bias.map { b in
                try b.withUnsafeBufferPointer { bp in
                    try DNNLConvolution(geometry: geometry, weights: wp.baseAddress!, bias: bp.baseAddress, postOps: postOps, layout: layout, threads: threads)
                }
            } ?? DNNLConvolution(geometry: geometry, weights: wp.baseAddress!, postOps: postOps, layout: layout, threads: threads)
        }
    }
    func candidate(_ primitive: DNNLConvolution, _ name: String) -> ConvCandidate? { oneDNNCandidate(primitive, name, threads: threads) }
    var result: [ConvCandidate?] = []
    if !onlyOwnLayout, let plain = make(.plain), !plain.usesReferenceKernel {
        result.append(candidate(plain, "onednn-plain:" + plain.implementation))
    }
    let blocked = make(.chosenByPrimitive)
    if let blocked, !blocked.usesReferenceKernel, !(blocked.source.isPlain && blocked.destination.isPlain) {
        result.append(candidate(blocked, "onednn-blocked:" + blocked.implementation + " " + blocked.source.tag))
    }
    if !onlyOwnLayout, let carried, carried.residual.map({ $0 == carried.y }) ?? true,
       blocked.map({ $0.source != carried.x || $0.destination != carried.y }) ?? true,
       let exact = make(.given(source: carried.x, destination: carried.y)), !exact.usesReferenceKernel {
        result.append(candidate(exact, "onednn-carried:" + exact.implementation + " " + exact.source.tag))
    }
    return result.compactMap { $0 }
}

/// The layouts a Conv step's operands lie in, in oneDNN's terms (4-D: 1-D convolutions as H = 1).
struct ConvOperandLayouts {
    let x: DNNLLayout, y: DNNLLayout, residual: DNNLLayout?

    init(geometry: DNNLConvolution.Geometry, x: Layout, y: Layout, residual: Layout?) throws {
        self.x = try .activation(geometry.sourceShape, x)
        self.y = try .activation(geometry.destinationShape, y)
        self.residual = try residual.map { try .activation(geometry.destinationShape, $0) }
    }

    /// Plain NCHW X and Y of these dims, no residual.
    init(plainX x: [Int], y: [Int]) throws {
        self.x = try .plain(x)
        self.y = try .plain(y)
        residual = nil
    }
}

/// The activation a `cbam::FusedConv` applies last: its `activation` attribute ("Relu",
/// "HardSwish", "SiLU", or "Gelu" with the Gelu node's `approximate`), absent for none.
enum ConvActivation: Equatable {
    case none, relu, hardSwish, silu, gelu(tanh: Bool)

    init(_ node: NodeContext) throws {
        switch try node.string("activation", default: "") {
        case "": self = .none
        case "Relu": self = .relu
        case "HardSwish": self = .hardSwish
        case "SiLU": self = .silu
        case "Gelu": self = .gelu(tanh: try geluApproximation(node))
        case let other: throw node.invalid("activation", "must be \"Relu\", \"HardSwish\", \"SiLU\" or \"Gelu\", got \"\(other)\"")
        }
    }

    /// oneDNN's post-op for it.
    var postOp: DNNLPostOp? {
        switch self {
        case .none: return nil
        case .relu: return .relu
        case .hardSwish: return .hardSwish
        case .silu: return .silu
        case .gelu(let tanh): return tanh ? .geluTanh : .geluErf
        }
    }

    /// oneDNN's post-ops for a convolution with this activation: the residual summed first.
    func postOps(residual: Bool) -> [DNNLPostOp] { (residual ? [.sum] : []) + (postOp.map { [$0] } ?? []) }
}

/// What follows a convolution's sgemm on each output row: + bias, + residual, Relu, HardSwish, SiLU or Gelu.
struct EpilogueParameters {
    let bias: [Float]?
    let activation: ConvActivation
    let rows: Int
    let columns: Int

    /// Applies the epilogue to `columns` of each of the rows of one (item, group) block
    /// `y` (`rows × self.columns`), whose first channel is `firstChannel`.
    @inline(__always)
    func apply(_ y: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?, firstChannel: Int, columns range: Range<Int>) {
        guard bias != nil || residual != nil || activation != .none else { return }
        let relu = activation == .relu
        for row in 0..<rows {
            let line = y + row * columns + range.lowerBound
            let shift = bias?[firstChannel + row] ?? 0
            if let residual {
                let other = residual + row * columns + range.lowerBound
                for i in 0..<range.count {
                    let v = line[i] + shift + other[i]
                    line[i] = relu ? Swift.max(v, 0) : v
                }
            } else {
                affineRow(UnsafePointer(line), line, range.count, 1, shift, relu: relu)
            }
            // Gelu, HardSwish and SiLU as their planned steps compute them.
            switch activation {
            case .gelu(let tanh): VectorMath.gelu(UnsafePointer(line), bias: nil, line, range.count, tanh: tanh)
            case .hardSwish: VectorMath.map(UnsafePointer(line), line, range.count, hardSwish)
            case .silu: VectorMath.silu(line, range.count)
            case .none, .relu: break
            }
        }
    }
}

/// `target[i] = source[i] · scale + shift` (then max(·, 0) when `relu`), SIMD8.
@inline(__always)
func affineRow(_ source: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>, _ count: Int,
               _ scale: Float, _ shift: Float, relu: Bool) {
    let a = SIMD8<Float>(repeating: scale), b = SIMD8<Float>(repeating: shift)
    if relu {
        VectorMath.map(source, target, count) { v in
            let r = v * a + b
            return r.replacing(with: SIMD8<Float>.zero, where: r .< SIMD8<Float>.zero)
        }
    } else {
        VectorMath.map(source, target, count) { $0 * a + b }
    }
}

/// A oneDNN convolution primitive as a candidate: the sum post-op adds into what the destination
/// holds, so the residual is copied there first (unless it was reordered there already).
private func oneDNNCandidate(_ primitive: DNNLConvolution, _ name: String, threads: Int) -> ConvCandidate? {
    let count = primitive.destination.elementCount
    // oneDNN's scratchpad lives in the step's scratch memory (shared by every step of the plan),
    // not beside each primitive: a Winograd kernel's is several MB.
    guard let scratchpad = try? primitive.scratchpadBytes(threads: threads) else { return nil }
    return ConvCandidate(name: name, scratchBytes: scratchpad, source: primitive.source, destination: primitive.destination,
                         sumsIntoDestination: true) { x, y, added, scratch in
        if let added, added != UnsafePointer(y) { y.update(from: added, count: count) }
        try primitive.execute(source: x, destination: y, threads: threads, scratchpad: scratchpad > 0 ? scratch : nil)
    }
}
