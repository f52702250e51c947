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
        let object = Line(
            label: label, level: event.level.rawValue, message: event.message.description,
            metadata: merged.isEmpty ? nil : merged.mapValues(MetadataValue.init), source: event.source, timestamp: Self.timestamp(Date())
        )
        guard let data = try? Self.encoder.encode(object), var line = String(data: data, encoding: .utf8) else { return }
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

    /// One line. (Codable through one shared `JSONEncoder`, not `JSONSerialization` of a
    /// dictionary: that, with a date style made per line, cut the Core API's `/health` to a
    /// third of its rate with text logs, Benchmarks/service-footprint.)
    struct Line: Encodable {
        let label: String
        let level: String
        let message: String
        let metadata: [String: MetadataValue]?
        let source: String
        let timestamp: String
    }

    /// A metadata value as JSON: a string, an array or an object.
    enum MetadataValue: Encodable {
        case string(String)
        case array([MetadataValue])
        case object([String: MetadataValue])

        init(_ value: Logger.Metadata.Value) {
            switch value {
            case .string(let text): self = .string(text)
            case .stringConvertible(let convertible): self = .string(convertible.description)
            case .array(let values): self = .array(values.map(MetadataValue.init))
            case .dictionary(let values): self = .object(values.mapValues(MetadataValue.init))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let text): try container.encode(text)
            case .array(let values): try container.encode(values)
            case .object(let values): try container.encode(values)
            }
        }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// `2026-12-05T07:40:00.123Z`: UTC, milliseconds (the ISO 8601 form the pipeline parses),
    /// from `gmtime_r` rather than a date format style made on every line.
    static func timestamp(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = Swift.min(999, Swift.max(0, Int((interval - Double(seconds)) * 1000)))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
        }
        return "\(digits(Int(parts.tm_year) + 1900, 4))-\(digits(Int(parts.tm_mon) + 1, 2))-\(digits(Int(parts.tm_mday), 2))"
            + "T\(digits(Int(parts.tm_hour), 2)):\(digits(Int(parts.tm_min), 2)):\(digits(Int(parts.tm_sec), 2)).\(digits(millis, 3))Z"
    }
}
