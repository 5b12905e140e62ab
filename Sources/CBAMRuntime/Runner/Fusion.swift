/// Folds a Relu into the node that produces its input, when that node's output is
/// read by the Relu alone and is not a graph output: the producer's fresh buffer is
/// clamped in place instead of being copied into a new one. ResNet-style networks
/// have one such pair after almost every Conv and residual Add.
///
/// Only unobserved runs use the fused plan, so `--dump`, attention capture and the
/// profiler still see every node's own output.
extension Session {
    static func fuseActivations(_ steps: [Step], keep: Set<Int>, threads: Int) -> [Step] {
        var readers: [Int: Int] = [:]
        for step in steps {
            for s in step.inputSlots.compactMap({ $0 }) { readers[s, default: 0] += 1 }
        }
        var producerOf: [Int: Int] = [:]
        for (index, step) in steps.enumerated() {
            for s in step.outputSlots { producerOf[s] = index }
        }
        var plan = steps
        var removed = Set<Int>()
        for (index, step) in steps.enumerated() where step.node.opType == "Relu" && step.node.domain.isEmpty {
            guard step.inputSlots.count == 1, let source = step.inputSlots[0], let producer = producerOf[source],
                  readers[source] == 1, !keep.contains(source), !removed.contains(producer),
                  steps[producer].outputSlots.first == source else { continue }
            let inner = plan[producer].kernel
            plan[producer] = Step(
                node: plan[producer].node,
                kernel: Kernel { inputs in
                    var outputs = try inner.run(inputs)
                    outputs[0] = reluInPlace(outputs[0], threads: threads)
                    return outputs
                },
                inputSlots: plan[producer].inputSlots,
                outputSlots: [step.outputSlots[0]] + plan[producer].outputSlots.dropFirst(),
                releaseAfter: [])
            removed.insert(index)
        }
        return plan.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
    }
}

/// max(x, 0) on a float32 tensor, reusing its buffer when nothing else holds it
/// (the producer's fresh output): consuming the tensor leaves the array the only owner.
func reluInPlace(_ tensor: consuming Tensor, threads: Int = 1) -> Tensor {
    let shape = tensor.shape
    let storage = (consume tensor).storage
    switch consume storage {
    case .float(var values):
        values.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!, count = p.count
            let workers = count >= Parallel.minimumElements ? threads : 1
            Parallel.forEach(workers) { worker in
                for i in Parallel.share(worker, of: workers, count: count) { base[i] = Swift.max(base[i], 0) }
            }
        }
        return Tensor(unchecked: shape, .float(values))
    case let other:
        // Relu of other element types is not fused (the producer's output is never
        // anything but float32 here); kept for completeness.
        return Tensor(unchecked: shape, other).clampedBelowZeroFallback()
    }
}

extension Tensor {
    /// The generic Relu for non-float tensors (integers clamp at 0, others unchanged).
    fileprivate func clampedBelowZeroFallback() -> Tensor {
        switch storage {
        case .double(let v): return Tensor(unchecked: shape, .double(v.map { Swift.max($0, 0) }))
        case .int64(let v): return Tensor(unchecked: shape, .int64(v.map { Swift.max($0, 0) }))
        case .int32(let v): return Tensor(unchecked: shape, .int32(v.map { Swift.max($0, 0) }))
        case .int8(let v): return Tensor(unchecked: shape, .int8(v.map { Swift.max($0, 0) }))
        default: return self
        }
    }
}
