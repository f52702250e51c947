/// A one-shot gate that tasks can wait on (tests only).
///
/// A waiter also returns when its task is cancelled: a test that waits for a gate nobody will
/// open (the task that should have opened it failed first) then ends at its time limit instead
/// of hanging the whole run.
public actor Gate {
    private var isOpen = false
    private var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    private var nextID = 0

    public init() {}

    /// Returns once the gate is open, or once the calling task is cancelled.
    public func wait() async {
        if isOpen { return }
        nextID += 1
        let id = nextID
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if isOpen || Task.isCancelled {
                    continuation.resume()
                } else {
                    waiters[id] = continuation
                }
            }
        } onCancel: {
            Task { await self.release(id) }
        }
    }

    /// Opens the gate: every waiter returns, and later waits return at once.
    public func open() {
        isOpen = true
        for waiter in waiters.values { waiter.resume() }
        waiters.removeAll()
    }

    private func release(_ id: Int) {
        waiters.removeValue(forKey: id)?.resume()
    }
}
