import Foundation
public import Logging
import Synchronization

/// How the executables write log lines.
public enum LogFormat: String, Sendable, Hashable {
    /// One JSON object a line: `timestamp` (RFC 3339, UTC, milliseconds), `level`, `label`,
    /// `message`, `metadata` (an object; nested values as JSON), `source`. What the
    /// platform's log pipeline reads in staging and production.
    case json
    /// swift-log's readable stream format, for a terminal.
    case text
}

/// The one logging bootstrap of the three executables: `LOG_FORMAT` and `LOG_LEVEL` applied
/// the same way everywhere. Call once, first thing in `main`.
public enum LogBootstrap {
    /// Bootstraps swift-log for the process: `format` to standard error, at `level`. (Standard
    /// output stays the program's own: a job's report lines are not log records.)
    public static func bootstrap(format: LogFormat, level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = switch format {
            case .json: JSONLogHandler(label: label, sink: .standardError)
            case .text: StreamLogHandler.standardError(label: label)
            }
            handler.logLevel = level
            return handler
        }
    }
}

/// A swift-log handler that writes one JSON object per line (``JSONLogLine``). swift-log ships
/// only a text handler, and the listed packages have no JSON one; this is the smallest that
/// gives the platform's pipeline what it parses (field names fixed, metadata as an object,
/// whole lines that never interleave). Standard error is written by ``LogWriter`` on a thread
/// of its own, so a log line never blocks the task (or event loop) that logs it.
public struct JSONLogHandler: LogHandler {
    /// Where lines go.
    public enum Sink: Sendable {
        case standardError
        /// Collects lines in memory (tests).
        case memory(LineBuffer)
    }

    /// Lines written to a ``Sink/memory(_:)`` sink.
    public final class LineBuffer: Sendable {
        private let storage = Mutex<[String]>([])
        public init() {}
        /// The lines so far.
        public var lines: [String] { storage.withLock { $0 } }
        func append(_ line: String) { storage.withLock { $0.append(line) } }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let sink: Sink

    /// A handler for `label` writing to `sink`.
    public init(label: String, sink: Sink, metadataProvider: Logger.MetadataProvider? = LoggingSystem.metadataProvider) {
        self.label = label
        self.sink = sink
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let own = event.metadata { merged.merge(own) { $1 } }
        let now = Self.now()
        let line = JSONLogLine.render(
            label: label, level: event.level, message: event.message.description, metadata: merged, source: event.source,
            timestampSeconds: now.seconds, milliseconds: now.milliseconds
        )
        switch sink {
        case .standardError:
            // Never a write(2) here: the writer's thread writes, whole lines, in order.
            LogWriter.standardError.append(line)
        case .memory(let buffer):
            buffer.append(String(decoding: line.dropLast(), as: UTF8.self))
        }
    }

    /// The wall clock: whole seconds since 1970 and milliseconds.
    static func now() -> (seconds: Int, milliseconds: Int) { wholeSeconds(Date().timeIntervalSince1970) }

    static func wholeSeconds(_ interval: Double) -> (seconds: Int, milliseconds: Int) {
        let seconds = Int(interval.rounded(.down))
        return (seconds, Swift.min(999, Swift.max(0, Int((interval - Double(seconds)) * 1000))))
    }

    /// `2026-12-05T07:40:00.123Z`: UTC, milliseconds (the ISO 8601 form the pipeline parses),
    /// as a line's `timestamp` says it.
    static func timestamp(_ date: Date) -> String {
        let (seconds, milliseconds) = wholeSeconds(date.timeIntervalSince1970)
        var line = JSONLogLine()
        line.appendTimestamp(seconds: seconds, milliseconds: milliseconds)
        return String(decoding: line.bytes.dropFirst().dropLast(), as: UTF8.self)
    }
}
