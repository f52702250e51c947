public import Foundation
import Synchronization

/// A child process the tests start and wait for without blocking a thread: Foundation's
/// `waitUntilExit` spins a run loop on the calling thread, and two of those on the two
/// threads of a CI machine's cooperative pool stop every test in the process (time limits
/// included, since they need a thread too).
public final class ChildProcess: Sendable {
    private struct State {
        var exit: (status: Int32, reason: Process.TerminationReason)?
        var waiters: [CheckedContinuation<(status: Int32, reason: Process.TerminationReason), Never>] = []
    }

    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared = Shared()
    /// The child's process id.
    public let pid: Int32

    /// Starts `process` (configured, not yet run), watching for its exit.
    public init(starting process: Process) throws {
        let shared = self.shared
        process.terminationHandler = { finished in
            let exit = (status: finished.terminationStatus, reason: finished.terminationReason)
            let waiters = shared.state.withLock { state in
                state.exit = exit
                defer { state.waiters.removeAll() }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: exit) }
        }
        try process.run()
        pid = process.processIdentifier
    }

    /// Waits for the exit: its status and whether it exited or was killed by a signal.
    public func exit() async -> (status: Int32, reason: Process.TerminationReason) {
        await withCheckedContinuation { continuation in
            let done = shared.state.withLock { state -> (status: Int32, reason: Process.TerminationReason)? in
                if let exit = state.exit { return exit }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Runs `process` to its end.
    @discardableResult
    public static func run(_ process: Process) async throws -> (status: Int32, reason: Process.TerminationReason) {
        try await ChildProcess(starting: process).exit()
    }
}
