import Foundation
import Synchronization

/// A dedicated OS thread that runs blocking C calls (libpq, sqlite3) for exactly one connection,
/// so they never block a NIO event loop or Swift's cooperative pool. Async callers suspend
/// until their job is done.
final class BlockingWorker: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
    }

    private let condition = NSCondition()
    // Guarded by `condition`; `Mutex` would not let us wait on the condition variable.
    private nonisolated(unsafe) var state = State()

    init(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = name
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while state.jobs.isEmpty && !state.stopped { condition.wait() }
            if state.jobs.isEmpty && state.stopped {
                condition.unlock()
                return
            }
            let batch = state.jobs
            state.jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job() }
        }
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !state.stopped else { return false }
        state.jobs.append(job)
        condition.signal()
        return true
    }

    /// Runs `body` on the worker thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = enqueue {
                continuation.resume(with: Result { try body() })
            }
            if !accepted {
                continuation.resume(throwing: DatabaseError(code: .poolClosed, detail: "the connection is closed"))
            }
        }
    }

    /// Lets queued jobs finish, then ends the thread.
    func stop() {
        condition.lock()
        state.stopped = true
        condition.signal()
        condition.unlock()
    }
}
