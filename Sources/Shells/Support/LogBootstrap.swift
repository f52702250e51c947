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

/// A swift-log handler that writes one JSON object per line. swift-log ships only a text
/// handler, and the listed packages have no JSON one; this is the smallest that gives the
/// platform's pipeline what it parses (field names fixed, metadata as an object, one write per
/// line so lines from concurrent tasks never interleave).
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
        var object: [String: Any] = [
            "timestamp": Self.timestamp(Date()),
            "level": event.level.rawValue,
            "label": label,
            "message": event.message.description,
            "source": event.source,
        ]
        if !merged.isEmpty { object["metadata"] = merged.mapValues(Self.json) }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]),
            var line = String(data: data, encoding: .utf8)
        else { return }
        line.append("\n")
        switch sink {
        case .standardError:
            // One write(2) per line where the system allows (on a pipe, atomic up to PIPE_BUF,
            // 4 KiB); a partial write is continued, an interrupted one retried.
            var bytes = Array(line.utf8)[...]
            while !bytes.isEmpty {
                let written = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
                if written > 0 {
                    bytes = bytes.dropFirst(written)
                } else if written < 0, errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        case .memory(let buffer):
            buffer.append(String(line.dropLast()))
        }
    }

    static func json(_ value: Logger.Metadata.Value) -> Any {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let values): values.map(json)
        case .dictionary(let values): values.mapValues(json)
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(secondsFromGMT: 0)!))
    }
}
