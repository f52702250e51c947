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

    /// Runs `executable` with `arguments` and exactly `environment` to its end, standard
    /// input empty, and returns its exit status and what it wrote (through files: a pipe
    /// nobody reads while waiting would stall a talkative child).
    public static func capture(_ executable: URL, _ arguments: [String], environment: [String: String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-child-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let outURL = directory.appendingPathComponent("stdout")
        let errURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL)
        let err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let status = try await run(process).status
        try out.close()
        try err.close()
        return (status, (try? String(contentsOf: outURL, encoding: .utf8)) ?? "", (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    /// The peak resident set size so far (`VmHWM`, bytes) of process `pid`, or nil once it is gone.
    public static func peakResidentBytes(of pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
        }
        return nil
    }
}
