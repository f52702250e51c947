import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import RestartixTestSupport
import Testing

/// The built `restartix-core-api` binary stops as an orchestrator expects: SIGTERM drains it
/// and it exits 0, its pools closed, within the grace.
@Suite("Core API drain", .timeLimit(.minutes(3)))
struct DrainTests {
    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("restartix-core-api")
    }

    @Test("SIGTERM: the server stops accepting, the pools close, the process exits 0 within the grace")
    func sigterm() async throws {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build restartix-core-api first")
        let directory = try TemporaryDirectory("core-drain")
        defer { directory.remove() }
        // A port nobody listens on: a forwarder's, stopped.
        let probe = try TCPProxy(upstreamHost: "127.0.0.1", upstreamPort: 9)
        probe.stop()
        let port = probe.port
        let process = Process()
        process.executableURL = Self.binary
        var environment = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("DATABASE_") && !$0.key.hasPrefix("REDIS_") && !$0.key.hasPrefix("CLERK_") && !$0.key.hasPrefix("ENCRYPTION_KEYS")
        }
        environment.merge([
            "HOST": "127.0.0.1", "PORT": "\(port)", "APP_ENV": "development", "RESTARTIX_SQLITE_PATH": directory.path("data/restartix.sqlite"),
            "LOG_FORMAT": "json", "LOG_LEVEL": "info", "SHUTDOWN_GRACE_SECONDS": "5",
        ]) { $1 }
        process.environment = environment
        let log = directory.url.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let child = try ChildProcess(starting: process)

        let health = URL(string: "http://127.0.0.1:\(port)/health")!
        func answers() async -> Bool {
            var request = URLRequest(url: health)
            request.timeoutInterval = 1
            return (try? await URLSession.shared.data(for: request)).map { ($0.1 as? HTTPURLResponse)?.statusCode == 200 } ?? false
        }
        var up = false
        for _ in 0..<150 where !up {
            up = await answers()
            if !up { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(up, "the API never answered /health")

        let signalled = ContinuousClock.now
        kill(child.pid, SIGTERM)
        let exit = await child.exit()
        #expect(exit.reason == .exit && exit.status == 0, "\(exit)")
        #expect(ContinuousClock.now - signalled < .seconds(6), "drained within the grace")
        #expect(!(await answers()), "nothing listens after the drain")
        let lines = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        #expect(!lines.contains("\"level\":\"error\"") && !lines.contains("\"level\":\"critical\""), "\(lines.suffix(2000))")
    }
}
