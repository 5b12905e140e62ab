import Foundation

/// Chooses which intermediate values stay in the convolution kernels' own layout
/// (NHWC on AVX-512, nChw8c on AVX2: whatever oneDNN's convolution asks for on this
/// CPU) instead of plain NCHW, so a chain of convolutions, their residual adds and the
/// CBAM gates between them runs without a reorder at every convolution.
///
/// A value is carried only when every step that touches it can work on that layout:
///   - Conv / cbam::FusedConv with constant weights (input X, residual R, output Y);
///   - elementwise Relu, Add, Sub, Mul, Div (and cbam::AddRelu) whose operands all have the output's shape
///     (they act on the bytes as they are, so all their operands share one layout);
///   - the fused CBAM gates (X, Y and a merged residual; the sigmoid map stays plain);
///   - MaxPool and AveragePool over 2-D windows (X and Y in one layout);
///   - GlobalAveragePool / GlobalMaxPool, and ReduceMean / ReduceMax over H and W (input
///     only: `[N, C, 1, 1]` is written plain).
/// Anything else that reads or writes the value keeps it plain, as do graph inputs and
/// outputs and the values of views. Values whose steps share bytes (elementwise ops, which
/// may run in place, and the gates) are decided together. A group is carried only when a
/// convolution it touches is large enough (2^20 MACs) for its own-layout kernel to pay:
/// tiny maps stay on the plain im2col path. A convolution whose operands differ from the
/// layout its kernel wants reorders them inside its step (counted by `inspect --plan`).
enum LayoutPass {
    /// MACs from which a convolution's neighbours are worth carrying in its layout.
    static let minimumMACs = 1 << 20

    /// The layout of every carried value (the others are plain).
    static func assign(steps: [TypedGraph.Entry], typed: TypedGraph, excluded: Set<String>, carried: Layout,
                       minimumMACs: Int = minimumMACs) -> [String: Layout] {
        var parent: [String: String] = [:]
        func root(_ name: String) -> String {
            var current = name
            while let next = parent[current] { current = next }
            return current
        }
        func union(_ a: String, _ b: String) {
            let (ra, rb) = (root(a), root(b))
            if ra != rb { parent[ra] = rb }
        }
        var plainOnly = Set<String>()
        var nearLargeConvolution = Set<String>()
        var members = Set<String>()

        func isRuntime(_ name: String) -> Bool { !name.isEmpty && typed.constants[name] == nil }
        for entry in steps {
            let node = entry.node
            let inputs = node.inputs.filter(isRuntime), outputs = node.outputs.filter { !$0.isEmpty }
            members.formUnion(inputs)
            members.formUnion(outputs)
            func allPlain() {
                plainOnly.formUnion(inputs)
                plainOnly.formUnion(outputs)
            }
            let key = node.domain.isEmpty ? node.opType : node.domain + "::" + node.opType
            switch key {
            case "Conv", Passes.domain + "::FusedConv":
                guard node.inputs.count > 1, let weight = typed.constants[node.inputs[1]], weight.rank == 4,
                      let y = typed.types[node.outputs[0]], !node.inputs[0].isEmpty else { allPlain(); break }
                // Flexible: X, R and Y (the kernel reorders what it must). Anything else is a constant.
                let macs = weight.shape.dropFirst().reduce(y.count) { $0.multipliedReportingOverflow(by: $1).overflow ? .max : $0 * $1 }
                if macs >= minimumMACs {
                    nearLargeConvolution.insert(node.inputs[0])
                    nearLargeConvolution.insert(node.outputs[0])
                }
                for (index, name) in node.inputs.enumerated() where isRuntime(name) && index != 0 && index != 3 { plainOnly.insert(name) }
                plainOnly.formUnion(outputs.dropFirst())
            case "Relu", "Add", "Sub", "Mul", "Div", Passes.domain + "::AddRelu":
                guard let output = outputs.first, outputs.count == 1, let type = typed.types[output],
                      node.inputs.allSatisfy({ isRuntime($0) && typed.types[$0]?.shape == type.shape }) else { allPlain(); break }
                for input in inputs { union(input, output) }
            case Passes.domain + "::ChannelGate" where node.outputs.first?.isEmpty == true,
                 Passes.domain + "::SpatialGate" where node.outputs.first?.isEmpty == true:
                // Only the map (apply = 0): x is read in whatever layout it lies in.
                guard let x = node.inputs.first, isRuntime(x) else { allPlain(); break }
                plainOnly.formUnion(outputs.dropFirst())
                plainOnly.formUnion(inputs.dropFirst())
            case Passes.domain + "::ChannelGate", Passes.domain + "::SpatialGate":
                guard let x = node.inputs.first, isRuntime(x), let y = node.outputs.first, !y.isEmpty else { allPlain(); break }
                union(x, y)
                plainOnly.formUnion(outputs.dropFirst())
                // A residual (the last input, attribute residual = 1) lies like y; the program's constants are plain.
                if case .int(1)? = node.attributes["residual"], let residual = node.inputs.last, isRuntime(residual) {
                    union(residual, y)
                    plainOnly.formUnion(inputs.dropFirst().dropLast())
                } else {
                    plainOnly.formUnion(inputs.dropFirst())
                }
            case "MaxPool", "AveragePool":
                // Window pools of 2-D maps without MaxPool's Indices output: X and Y in one layout.
                guard let x = node.inputs.first, isRuntime(x), let y = node.outputs.first, !y.isEmpty, outputs.count == 1,
                      typed.types[x]?.shape.count == 4 else { allPlain(); break }
                union(x, y)
            case "GlobalAveragePool", "GlobalMaxPool":
                plainOnly.formUnion(outputs)
                plainOnly.formUnion(inputs.dropFirst())
            case "ReduceMean", "ReduceMax":
                // A mean or max over H and W (the dynamo exporter's global pool) reads X like a global pool.
                let context = NodeContext(node: node, opset: entry.opset, constants: node.inputs.map { typed.constants[$0] })
                guard let x = node.inputs.first, let rank = typed.types[x]?.shape.count,
                      (try? PlannedKernels.isSpatialReduction(context, rank: rank, axesInputSince: 18)) == true else { allPlain(); break }
                plainOnly.formUnion(outputs)
                plainOnly.formUnion(inputs.dropFirst())
            default:
                allPlain()
            }
        }

        // A group is carried when every member can be and one of them meets a large convolution.
        var groups: [String: [String]] = [:]
        for name in members { groups[root(name), default: []].append(name) }
        var layouts: [String: Layout] = [:]
        for (_, group) in groups {
            guard group.contains(where: nearLargeConvolution.contains),
                  group.allSatisfy({ name in
                      guard !plainOnly.contains(name), !excluded.contains(name), let type = typed.types[name] else { return false }
                      return type.dataType == .float && type.shape.count == 4 && type.count > 0 && carried.fits(type.shape)
                          && type.shape[1] % 8 == 0
                  }) else { continue }
            for name in group { layouts[name] = carried }
        }
        return layouts
    }

    /// The activation layout oneDNN's convolution prefers on this CPU, found once by asking
    /// it for a typical ResNet convolution (64 → 64, 3×3, 56×56); nil without a layout of
    /// ours to match (or without oneDNN).
    static let machineLayout: Layout? = {
        let geometry = DNNLConvolution.Geometry(batch: 1, channels: 64, height: 56, width: 56, outputChannels: 64,
                                                kernelHeight: 3, kernelWidth: 3, padTop: 1, padLeft: 1, padBottom: 1, padRight: 1)
        let weights = [Float](repeating: 0, count: 64 * 64 * 9)
        guard let probe = try? DNNLConvolution(geometry: geometry, weights: weights, bias: nil, layout: .chosenByPrimitive),
              !probe.usesReferenceKernel, probe.source == probe.destination else { return nil }
        return probe.source.activationLayout
    }()
}

extension DNNLLayout {
    /// oneDNN's description of a 4-D activation `dims` in `layout`.
    static func activation(_ dims: [Int], _ layout: Layout) throws -> DNNLLayout {
        switch layout {
        case .plain: return try .plain(dims)
        case .channelsLast: return try .channelsLast(dims)
        case .channelBlocked(let b): return try .channelsBlocked(dims, block: b)
        }
    }

    /// This layout as one of ours, when it is one (nchw, nhwc, nChw8c, nChw16c).
    var activationLayout: Layout? {
        let dims = self.dims
        guard dims.count == 4 else { return nil }
        for candidate in [Layout.plain, .channelsLast, .channelBlocked(16), .channelBlocked(8)] {
            if candidate.fits(dims), let layout = try? DNNLLayout.activation(dims, candidate), layout == self { return candidate }
        }
        return nil
    }
}
