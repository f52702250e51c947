public import Foundation
import Testing

/// A private `redis-server` for tests that stop, pause or reconfigure their server (timeouts,
/// reconnects, passwords, TLS), on a free loopback port, without persistence. Stopped and its
/// folder removed by ``stop()``.
///
/// Starting and killing wait with `Task.sleep`, never `usleep`: a test that blocks one of the
/// cooperative pool's threads (two on a two-core runner) stalls every other test of the run.
public final class RedisServer: @unchecked Sendable {
    public let port: Int
    public let directory: URL
    private let arguments: [String]
    private var process: Process?

    /// `redis-server` is on the machine; under CI its absence fails the test.
    public static var available: Bool {
        let found = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].contains { FileManager.default.isExecutableFile(atPath: $0) }
        if !found && RequiredServices.areRequired { Issue.record("redis-server is not installed: run the tests with Scripts/test-all") }
        return found
    }

    public static var binary: String {
        ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "redis-server"
    }

    /// A server with `extra` arguments (`--requirepass`); with `tls` (certificate, key and CA
    /// files) it listens for TLS only, on ``port``.
    public init(extra: [String] = [], tls: (certificate: String, key: String, ca: String)? = nil) async throws {
        let port = try Self.freePort()
        self.port = port
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-redis-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let listen = tls.map {
            ["--port", "0", "--tls-port", "\(port)", "--tls-cert-file", $0.certificate, "--tls-key-file", $0.key, "--tls-ca-cert-file", $0.ca, "--tls-auth-clients", "no"]
        } ?? ["--port", "\(port)"]
        arguments = ["--bind", "127.0.0.1"] + listen + ["--save", "", "--appendonly", "no", "--dir", directory.path] + extra
        try await start()
    }

    /// Starts (or restarts) the server on the same port and waits until it accepts connections.
    public func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        try await Self.waitUntilListening(port: port)
        // Something answering on the port is not proof that it is this server: one that could
        // not bind has exited by now (another process's listener answered the check).
        try await Task.sleep(for: .milliseconds(20))
        var status: Int32 = 0
        if waitpid(process.processIdentifier, &status, WNOHANG) == process.processIdentifier {
            self.process = nil
            throw POSIXError(.EADDRINUSE)
        }
    }

    /// Stops the server at once (SIGKILL: a crash, nothing to save) and waits until it is gone.
    /// SIGKILL because a child of the test process may inherit a signal mask that blocks
    /// SIGTERM; `waitpid` rather than `Process.waitUntilExit`, which spins a run loop.
    public func kill() async {
        guard let process else { return }
        let pid = process.processIdentifier
        Foundation.kill(pid, SIGKILL)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result == -1 && errno == ECHILD) || Foundation.kill(pid, 0) != 0 { break }
            try? await Task.sleep(for: .milliseconds(5))
        }
        self.process = nil
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    public func pause() { if let process { Foundation.kill(process.processIdentifier, SIGSTOP) } }

    /// Unfreezes it (SIGCONT).
    public func resume() { if let process { Foundation.kill(process.processIdentifier, SIGCONT) } }

    /// Kills the server and removes its folder; synchronous, for `defer`. The exited process
    /// is reaped on a dispatch thread, not waited for here.
    public func stop() {
        resume()
        if let process {
            let pid = process.processIdentifier
            Foundation.kill(pid, SIGKILL)
            DispatchQueue.global().async {
                var status: Int32 = 0
                _ = waitpid(pid, &status, 0)
            }
            self.process = nil
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// A free loopback port below the ephemeral range (see ``LoopbackPorts``), so that a
    /// server killed and started again on it does not find it taken by a client socket.
    public static func freePort() throws -> Int { try LoopbackPorts.free() }

    public static func waitUntilListening(port: Int, timeout: TimeInterval = 10) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            let connected = withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if connected { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw POSIXError(.ETIMEDOUT)
    }
}
