import Foundation
import Logging

/// Writes log lines to a file descriptor (standard error) from a thread of its own, so that
/// logging never blocks the caller: a request's access log line costs a copy into a buffer, not
/// a `write(2)` on an event loop, and a log pipe that stops draining (a stuck collector) stalls
/// nothing but this thread.
///
/// Lines are written in the order they were appended, whole, a batch at a time: the thread
/// wakes when the first line of a batch arrives, waits ``flushInterval`` for more, and writes
/// them with as few `write(2)` calls as the descriptor takes. While the descriptor does not
/// drain, lines go on to a bounded buffer (``capacity``); past it they are dropped and counted,
/// and a warning line says how many once writing works again. At `exit` (including a return
/// from `main`) the buffer is flushed (``flush()``, registered with `atexit`); a crash or a
/// `SIGKILL` loses at most the last ``flushInterval`` of lines.
///
/// (swift-log's handlers write synchronously and the listed packages have no asynchronous
/// sink, hence this one.)
public final class LogWriter: @unchecked Sendable {
    /// Standard error, the executables' log stream.
    public static let standardError: LogWriter = {
        let writer = LogWriter(fileDescriptor: STDERR_FILENO)
        atexit { LogWriter.standardError.flush() }
        return writer
    }()

    /// How long the thread waits after the first line of a batch for more.
    public let flushInterval: Duration
    /// The most bytes kept while the descriptor does not drain; lines past it are dropped.
    public let capacity: Int

    private let fileDescriptor: Int32
    // `condition` guards `pending`, `dropped`, `waiting` and `started`; `writing` serializes
    // the writes of the thread and of `flush()`, so batches never interleave.
    private let condition = NSCondition()
    private let writing = NSLock()
    private var pending: [UInt8] = []
    private var dropped = 0
    private var waiting = false
    private var started = false

    /// A writer to `fileDescriptor` (which it does not close).
    public init(fileDescriptor: Int32, flushInterval: Duration = .milliseconds(5), capacity: Int = 8 << 20) {
        self.fileDescriptor = fileDescriptor
        self.flushInterval = flushInterval
        self.capacity = capacity
    }

    /// Queues one line (its bytes, ending in a newline); never blocks on the descriptor.
    public func append(_ line: some Collection<UInt8>) {
        condition.lock()
        if !started {
            started = true
            let thread = Thread { [self] in run() }
            thread.name = "restartix.log"
            thread.start()
        }
        if pending.count + line.count > capacity {
            dropped += 1
        } else {
            let wasEmpty = pending.isEmpty
            pending.append(contentsOf: line)
            if wasEmpty, waiting { condition.signal() }
        }
        condition.unlock()
    }

    /// Writes every queued line now, on the caller's thread (it blocks while the descriptor
    /// does not drain). Called at exit; tests call it to read what was written.
    public func flush() {
        writing.lock()
        defer { writing.unlock() }
        let (batch, lost) = take()
        write(batch, dropped: lost)
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && dropped == 0 {
                waiting = true
                condition.wait()
                waiting = false
            }
            condition.unlock()
            // More lines of the same burst join the batch meanwhile.
            Thread.sleep(forTimeInterval: Double(flushInterval.components.seconds) + Double(flushInterval.components.attoseconds) / 1e18)
            flush()
        }
    }

    private func take() -> ([UInt8], Int) {
        condition.lock()
        defer { condition.unlock() }
        let batch = pending
        let lost = dropped
        pending.removeAll(keepingCapacity: pending.count <= 1 << 20)
        dropped = 0
        return (batch, lost)
    }

    /// Writes `batch`, then a warning line when lines were dropped; a partial write is
    /// continued, an interrupted one retried, a failing descriptor (closed) gives up.
    private func write(_ batch: [UInt8], dropped lost: Int) {
        writeAll(batch)
        if lost > 0 {
            let now = JSONLogHandler.now()
            let line = JSONLogLine.render(
                label: "restartix.log", level: .warning,
                message: "\(lost) log lines dropped: the log stream did not drain and the buffer was full",
                metadata: [:], source: "ServiceSupport", timestampSeconds: now.seconds, milliseconds: now.milliseconds
            )
            writeAll(line)
        }
    }

    private func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0, errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }
}
