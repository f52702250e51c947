package import Foundation
import RestartixKit
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A program run with its standard output or input as a stream (`pg_dump`, `pg_restore`).
///
/// Foundation's `Process` starts it; reads and writes of its pipes are blocking calls, so they
/// run on threads of their own (``BlockingWorker``), never on the cooperative pool. Standard
/// error is drained as it comes (a program that fills the pipe would stall) and kept for the
/// error message: of its last 16 KiB, only the program's own lines (`pg_restore: error: ...`),
/// with quoted text that is not an identifier cut, since that is where PostgreSQL quotes row
/// values (`DETAIL`, `CONTEXT` and continuation lines are dropped whole).
package final class ChildProcess: Sendable {
    private let process: Process
    private let output: FileHandle?
    private let input: FileHandle?
    private let reader = BlockingWorker(name: "restartix.child.reader")
    private let writer = BlockingWorker(name: "restartix.child.writer")
    private let stderrTail = StderrTail()
    private let stderrDone = DispatchSemaphore(value: 0)
    private let exited = DispatchSemaphore(value: 0)
    /// The program's name, for messages.
    package let name: String

    /// Starts `executable` with `arguments` and exactly `environment` (nothing of this
    /// process's own is passed on unless it is in there).
    package init(executable: URL, arguments: [String], environment: [String: String], readOutput: Bool, writeInput: Bool) throws(BackupError) {
        // A write to a pipe whose reader died raises SIGPIPE, which would kill this process
        // instead of failing the write. Ignored once, process-wide.
        _ = Self.ignoreSIGPIPE
        name = executable.lastPathComponent
        process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        let errorPipe = Pipe()
        process.standardError = errorPipe
        if readOutput {
            let pipe = Pipe()
            Self.enlarge(pipe)
            process.standardOutput = pipe
            output = pipe.fileHandleForReading
        } else {
            process.standardOutput = FileHandle.nullDevice
            output = nil
        }
        if writeInput {
            let pipe = Pipe()
            Self.enlarge(pipe)
            process.standardInput = pipe
            input = pipe.fileHandleForWriting
        } else {
            process.standardInput = FileHandle.nullDevice
            input = nil
        }
        let exited = self.exited
        process.terminationHandler = { _ in exited.signal() }
        do { try process.run() } catch {
            reader.stop()
            writer.stop()
            throw BackupError(.invalidInput, "could not start \(executable.path): \(error.localizedDescription)")
        }
        let errorHandle = errorPipe.fileHandleForReading
        let tail = stderrTail
        let done = stderrDone
        Thread.detachNewThread {
            while let chunk = try? errorHandle.read(upToCount: 4096), !chunk.isEmpty {
                tail.bytes.withLock { bytes in
                    bytes.append(contentsOf: chunk)
                    if bytes.count > 16384 { bytes.removeFirst(bytes.count - 16384) }
                }
            }
            try? errorHandle.close()
            done.signal()
        }
    }

    /// The end of standard error, shared with the thread that drains it.
    private final class StderrTail: Sendable {
        let bytes = Mutex<[UInt8]>([])
    }

    /// Gives a pipe 1 MiB of buffer (Linux's default is 64 KiB): the program keeps writing
    /// while this side seals and uploads what it read, instead of stopping every 64 KiB. Where
    /// the system refuses (a lower `pipe-max-size`), the default stays.
    private static func enlarge(_ pipe: Pipe) {
        #if os(Linux)
        let setPipeSize: Int32 = 1031  // F_SETPIPE_SZ, which Glibc exports only under _GNU_SOURCE
        _ = fcntl(pipe.fileHandleForWriting.fileDescriptor, setPipeSize, Int32(1 << 20))
        #endif
    }

    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    /// Up to `count` bytes of standard output; empty at its end.
    package func read(upTo count: Int) async throws(BackupError) -> [UInt8] {
        guard let output else { return [] }
        do {
            return try await reader.run { Array(try output.read(upToCount: count) ?? Data()) }
        } catch {
            throw BackupError(.sourceFailed, "reading \(name)'s output failed")
        }
    }

    /// Writes `bytes` to standard input (waits while the program is busy with earlier ones).
    package func write(_ bytes: [UInt8]) async throws(BackupError) {
        guard let input else { return }
        do {
            try await writer.run { try input.write(contentsOf: bytes) }
        } catch {
            throw BackupError(.targetFailed, "\(name) stopped reading its input")
        }
    }

    /// Closes standard input: the program sees its end.
    package func closeInput() async {
        guard let input else { return }
        _ = try? await writer.run { try input.close() }
    }

    /// Stops the program (SIGTERM).
    package func terminate() {
        if process.isRunning { process.terminate() }
    }

    /// Waits for the program to end: its exit status and what it wrote on standard error
    /// (filtered as the type's documentation says).
    package func wait() async -> (status: Int32, stderr: String) {
        let exited = self.exited
        let stderrDone = self.stderrDone
        _ = try? await reader.run {
            exited.wait()
            stderrDone.wait()
        }
        if let output { try? output.close() }
        reader.stop()
        writer.stop()
        let text = String(decoding: stderrTail.bytes.withLock { $0 }, as: UTF8.self)
        // Only the program's own error lines (`pg_restore: error: ...`): a line of a value with
        // a newline in it does not start that way. Within them, quoted text that is not an SQL
        // identifier (a table's name) is cut: that is where a refused value would be quoted.
        let prefix = "\(name): "
        let kept = text.split(separator: "\n").filter { $0.hasPrefix(prefix) && !$0.lowercased().contains("detail:") }.map { line in
            String(Self.redactQuotedValues(line).prefix(300))
        }
        return (process.terminationStatus, kept.suffix(12).joined(separator: "\n"))
    }

    /// `line` with each double-quoted run that is not an identifier (letters, digits, `_`,
    /// `.`, `$`; at most 63 bytes) replaced by `"…"`.
    package static func redactQuotedValues(_ line: Substring) -> String {
        var out = ""
        var rest = line[...]
        while let open = rest.firstIndex(of: "\"") {
            out += rest[..<open]
            let after = rest[rest.index(after: open)...]
            guard let close = after.firstIndex(of: "\"") else {
                out += "\"…"
                return out
            }
            let quoted = after[..<close]
            let identifier = quoted.count <= 63 && quoted.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "$" }
            out += identifier ? "\"\(quoted)\"" : "\"…\""
            rest = after[after.index(after: close)...]
        }
        return out + rest
    }

    /// The path of `program` on `PATH` (or `program` itself when it names a path).
    package static func locate(_ program: String, path: String?) -> URL? {
        if program.contains("/") {
            return FileManager.default.isExecutableFile(atPath: program) ? URL(fileURLWithPath: program) : nil
        }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        return nil
    }
}
