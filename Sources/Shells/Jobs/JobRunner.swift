import ArgumentParser
import Foundation
import Logging
import ServiceSupport

/// What a job takes from its process: the configuration, its loggers and where progress lines
/// go. The binary uses ``process``; tests build one with their own variables and call
/// ``Job/perform(_:)`` in process, reading the structured report instead of printed text.
struct JobContext: Sendable {
    /// The configuration (the process environment, or a test's variables).
    var service: ServiceEnvironment
    /// Makes a job's logger.
    var makeLogger: @Sendable (String) -> Logger
    /// Receives a line as soon as a step is done (a killed job has reported what it did).
    var progress: @Sendable (String) -> Void

    /// The process's: its environment, the logging bootstrap, progress on standard output
    /// (standard error with `--json`, so standard output holds the one report).
    static func process(json: Bool) -> JobContext {
        let progress: @Sendable (String) -> Void
        if json {
            progress = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
        } else {
            progress = { line in say(line) }
        }
        return JobContext(
            service: ServiceEnvironment(),
            makeLogger: { label in
                _ = bootstrapLogging
                return Logger(label: label)
            },
            progress: progress
        )
    }
}

/// The output flag every job takes.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print the report as one JSON object on standard output instead of text lines.")
    var json = false
}

/// A job: parsed arguments in, a structured report out. `run()` (the binary) prints the report
/// as text lines or, with `--json`, as one JSON object a scheduler or log pipeline can read;
/// a report that records a failure then ends the process with status 1 (``verdict(_:)``).
protocol Job: AsyncParsableCommand {
    associatedtype Report: Encodable & Sendable
    var output: OutputOptions { get }
    /// Does the work and says what it did.
    func perform(_ context: JobContext) async throws -> Report
    /// The report as the text lines the binary prints.
    func lines(_ report: Report) -> [String]
    /// Throws when the report records a failure the exit status must carry.
    func verdict(_ report: Report) throws
}

extension Job {
    func verdict(_ report: Report) throws {}

    func run() async throws {
        let report = try await perform(.process(json: output.json))
        if output.json {
            say(String(decoding: try JobReportEncoding.encoder.encode(report), as: UTF8.self))
        } else {
            for line in lines(report) { say(line) }
        }
        try verdict(report)
    }
}

/// How reports are written as JSON: sorted keys, ISO 8601 dates.
enum JobReportEncoding {
    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}
