import Foundation
import Synchronization

/// A dedicated OS thread that runs blocking C calls (libpq, sqlite3) for exactly one connection,
/// so they never block a NIO event loop or Swift's cooperative pool. Async callers suspend
/// until their job is done.
package final class BlockingWorker: Sendable {
    private struct State {
        var jobs: [@Sendable () -> Void] = []
        var stopped = false
    }

    private let condition = NSCondition()
    // Guarded by `condition`; `Mutex` would not let us wait on the condition variable.
    private nonisolated(unsafe) var state = State()

    package init(name: String) {
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
    package func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let accepted = enqueue {
                continuation.resume(with: Result { try body() })
            }
            if !accepted {
                continuation.resume(throwing: DatabaseError(code: .poolClosed, detail: "the connection is closed"))
            }
        }
    }

    /// Runs `body` on the worker thread and returns its result, or throws `timeout` once
    /// `deadline` passes first; a result that comes later is handed to `discardLate` (on the
    /// worker thread) to be released. `deadline` `nil` waits as long as `body` takes.
    func run<T: Sendable>(
        until deadline: ContinuousClock.Instant?,
        timeout: DatabaseError,
        discardLate: @escaping @Sendable (T) -> Void,
        _ body: @escaping @Sendable () throws -> T
    ) async throws -> T {
        guard let deadline else { return try await run(body) }
        guard deadline > .now else { throw timeout }
        // Whoever takes the continuation first resumes it: the job or the timer.
        let waiting = OnceContinuation<T>()
        // A dispatch timer, not a sleeping task: it fires on time even when the cooperative
        // pool is saturated.
        let timer = DispatchWorkItem { waiting.resume(with: .failure(timeout)) }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            waiting.set(continuation)
            let accepted = enqueue {
                let result = Result { try body() }
                if !waiting.resume(with: result), case .success(let late) = result {
                    discardLate(late)
                }
            }
            guard accepted else {
                waiting.resume(with: .failure(DatabaseError(code: .poolClosed, detail: "the connection is closed")))
                return
            }
            DispatchQueue.global().asyncAfter(deadline: .at(deadline), execute: timer)
        }
    }

    /// Lets queued jobs finish, then ends the thread.
    package func stop() {
        condition.lock()
        state.stopped = true
        condition.signal()
        condition.unlock()
    }
}

/// A continuation resumed by whichever of several parties comes first; later ones are told no.
final class OnceContinuation<T: Sendable>: Sendable {
    private let slot = Mutex<CheckedContinuation<T, any Error>?>(nil)

    func set(_ continuation: CheckedContinuation<T, any Error>) {
        slot.withLock { $0 = continuation }
    }

    /// Resumes the continuation unless someone did already; `false` if someone did.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        guard let continuation = slot.withLock({ $0.take() }) else { return false }
        continuation.resume(with: result)
        return true
    }
}
