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
            let inner = plan[producer].kernel, relu = step.kernel
            plan[producer] = Step(
                node: plan[producer].node,
                kernel: Kernel { inputs in
                    var outputs = try inner.run(inputs)
                    // Other element types take the Relu node's own kernel, as an unfused run would.
                    outputs[0] = outputs[0].dataType == .float ? reluInPlace(outputs[0], threads: threads)
                        : try relu.run([outputs[0]])[0]
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
/// Other element types are returned unchanged; the caller sends them to the Relu kernel.
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
        return Tensor(unchecked: shape, other)
    }
}
