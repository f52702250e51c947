import Foundation
import RestartixKit
import Testing

/// Runs the real `restartix-jobs` binary, as the scheduler would.
@Suite("restartix-jobs")
struct JobsTests {
    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("restartix-jobs")
    }

    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "DATABASE_DIRECT_URL")
        env.merge(environment) { $1 }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus,
            stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self)
        )
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-jobs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("migrate applies once, then is a no-op; partition roll is a no-op on SQLite")
    func migrateSQLite() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build restartix-jobs first")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = "sqlite://" + dir.appendingPathComponent("jobs.sqlite").path
        let first = try run(["migrate", "--database-url", url])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.contains("migrate: applied 1 (1), already applied 0"))
        let second = try run(["migrate", "--database-url", url])
        #expect(second.status == 0)
        #expect(second.stdout.contains("migrate: applied 0 (), already applied 1"))
        let roll = try run(["audit-partition-roll", "--database-url", url])
        #expect(roll.status == 0)
        #expect(roll.stdout.contains("nothing to do"))
    }

    @Test("bad input: each a clear error, non-zero exit, no password, nothing applied")
    func badInput() throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build restartix-jobs first")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        let scheme = try run(["migrate", "--database-url", "mysql://root:hunter2@localhost/x"])
        #expect(scheme.status != 0)
        #expect(scheme.stderr.contains("unsupported database URL scheme 'mysql'"))
        #expect(!scheme.stderr.contains("hunter2"))

        let malformed = try run(["migrate", "--database-url", "postgres://root:hunter2@localhost:port/x"])
        #expect(malformed.status != 0)
        #expect(malformed.stderr.contains("invalid port"))
        #expect(!malformed.stderr.contains("hunter2"))

        let refused = try run(["migrate", "--database-url", "postgres://root:hunter2@127.0.0.1:1/x"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("could not connect"))
        #expect(!refused.stderr.contains("hunter2"))

        // A migration folder with a gap: refused before anything is applied.
        let folder = dir.appendingPathComponent("migrations")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "CREATE TABLE a (x INTEGER);".write(to: folder.appendingPathComponent("0001_a.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE c (x INTEGER);".write(to: folder.appendingPathComponent("0003_c.sql"), atomically: true, encoding: .utf8)
        let database = dir.appendingPathComponent("gap.sqlite").path
        let gap = try run(["migrate", "--database-url", "sqlite://" + database, "--migrations-directory", folder.path])
        #expect(gap.status != 0)
        #expect(gap.stderr.contains("version 2 is missing"))
        let tables = try run(["migrate", "--database-url", "sqlite://" + database, "--migrations-directory", dir.appendingPathComponent("none").path])
        #expect(tables.status != 0)
        #expect(tables.stderr.contains("cannot read the migration folder"))

        let months = try run(["audit-partition-roll", "--months-ahead", "99", "--database-url", "sqlite::memory:"])
        #expect(months.status != 0)
        #expect(months.stderr.contains("--months-ahead must be between 0 and 36"))

        let unknown = try run(["no-such-job"])
        #expect(unknown.status != 0)
    }
}
