public import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A Postgres and PgBouncer of a test's own, for tests that stop, restart or kill them (fault
/// drills), made by `Scripts/services` in a private state directory on ports of their own
/// (a free pair below the ephemeral range for each, so two can run at once), removed by ``stop()``.
public struct DrillInstance: Sendable {
    /// Wherever the shared services run (or must, under CI), a test can make its own.
    public static var enabled: Bool {
        RequiredServices.areRequired || RequiredServices.value("DATABASE_DIRECT_URL") != nil
    }

    static let script = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Scripts/services").path

    /// The state directory.
    public let directory: String
    /// What `Scripts/services env` printed for it: `DATABASE_APP_URL` and the rest.
    public let urls: [String: String]

    /// The URL `Scripts/services env` names `name`.
    public func url(_ name: String) throws -> String {
        guard let url = urls[name] else { throw MissingService(name: name) }
        return url
    }

    /// Starts one on `pgPort` and `pgbouncerPort`, or on a free pair below the ephemeral range
    /// when they are nil (see ``LoopbackPorts``; RESTARTIX_DRILL_PG_PORT and
    /// RESTARTIX_DRILL_PGBOUNCER_PORT name a pair instead). A pair another process takes
    /// between the check and the bind is given up for another, twice at most.
    public static func start(pgPort: Int? = nil, pgbouncerPort: Int? = nil) async throws -> DrillInstance {
        let named = (pgPort ?? RequiredServices.value("RESTARTIX_DRILL_PG_PORT").flatMap { Int($0) },
                     pgbouncerPort ?? RequiredServices.value("RESTARTIX_DRILL_PGBOUNCER_PORT").flatMap { Int($0) })
        var attempt = 0
        while true {
            attempt += 1
            let free = try LoopbackPorts.free(2)
            let ports = (named.0 ?? free[0], named.1 ?? free[1])
            do {
                return try await start(directory: newDirectory(), pgPort: ports.0, pgbouncerPort: ports.1)
            } catch let failure as Failed where failure.description.contains("already in use") && attempt < 3 && (named.0 == nil || named.1 == nil) {
                continue
            }
        }
    }

    static func newDirectory() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-drill-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        return directory
    }

    static func start(directory: String, pgPort: Int, pgbouncerPort: Int) async throws -> DrillInstance {
        let environment = [
            "RESTARTIX_SERVICES_DIR": directory,
            "RESTARTIX_SERVICES_ONLY": "postgres pgbouncer",
            // A commit acknowledged before a restart must survive it: drills count rows.
            "RESTARTIX_PG_SYNCHRONOUS_COMMIT": "on",
            "RESTARTIX_PG_PORT": "\(pgPort)",
            "RESTARTIX_PGBOUNCER_PORT": "\(pgbouncerPort)",
        ]
        let exports: String
        do {
            _ = try await run(["up"], environment: environment)
            exports = try await run(["env"], environment: environment)
        } catch {
            // Half up (one daemon started, the other refused): never leave it behind.
            _ = try? await run(["down"], environment: ["RESTARTIX_SERVICES_DIR": directory])
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        var urls: [String: String] = [:]
        for line in exports.split(separator: "\n") where line.hasPrefix("export ") {
            let assignment = line.dropFirst("export ".count)
            guard let equals = assignment.firstIndex(of: "=") else { continue }
            urls[String(assignment[..<equals])] = String(assignment[assignment.index(after: equals)...]).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        }
        return DrillInstance(directory: directory, urls: urls)
    }

    /// Runs `Scripts/services <arguments>` on this instance.
    public func services(_ arguments: String...) async throws {
        _ = try await Self.run(arguments, environment: ["RESTARTIX_SERVICES_DIR": directory])
    }

    /// Stops and removes the instance.
    public func stop() async {
        _ = try? await Self.run(["down"], environment: ["RESTARTIX_SERVICES_DIR": directory])
    }

    public struct Failed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs `Scripts/services` and returns what it printed (stdout and stderr).
    static func run(_ arguments: [String], environment: [String: String]) async throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [script] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // A file, not a pipe: the daemons `up` starts inherit the script's output and would keep
        // a pipe open (and its reader waiting) for as long as they run.
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-drill-\(UUID().uuidString).out")
        FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: outputFile) }
        let output = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // `waitpid` on a thread of its own, not Foundation's wait: Foundation learns of the exit
        // through a descriptor the child's daemons inherit, so it would wait for them to exit.
        let pid = process.processIdentifier
        nonisolated(unsafe) let launched = process
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var raw: Int32 = 0
                var result = waitpid(pid, &raw, 0)
                while result == -1 && errno == EINTR { result = waitpid(pid, &raw, 0) }
                if result == pid {
                    // Exited normally: its exit code; killed by a signal: -1.
                    continuation.resume(returning: raw & 0x7f == 0 ? (raw >> 8) & 0xff : -1)
                    return
                }
                // Foundation reaped it first (another process of this test run ended and it
                // checked all of its children): it has the status.
                while launched.isRunning { usleep(10_000) }
                continuation.resume(returning: launched.terminationStatus)
            }
        }
        try? output.close()
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        guard status == 0 else {
            throw Failed(description: "Scripts/services \(arguments.joined(separator: " ")) exited \(status): \(text.suffix(2000))")
        }
        return text
    }
}
