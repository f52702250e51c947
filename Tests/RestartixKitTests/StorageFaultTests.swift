import Foundation
@testable import RestartixKit
import Synchronization
import Testing

/// Faults as an operator sees them: the server's own reason survives a connection that closes
/// right after sending it, on every path (one statement, a pipeline, a transaction).
@Suite("Storage under faults", .timeLimit(.minutes(1)))
struct StorageFaultTests {
    /// Runs `body` on a backend's connection while another session terminates that backend
    /// (`pg_terminate_backend`, as an operator or a failover does) `after` into the statement.
    func terminated(
        _ backend: TestBackend,
        after delay: Duration = .milliseconds(300),
        _ body: @escaping @Sendable (MarkedDatabase) async throws -> Void
    ) async throws -> DatabaseError? {
        let db = try backend.makeDatabase(maximumConnections: 1)
        // The victim's own role, direct: a role sees (and may end) its own backends' queries.
        let killer = try Database(
            url: TestBackend.require(backend == .pgbouncer ? "DATABASE_ADMIN_DIRECT_URL" : "DATABASE_DIRECT_URL"), logger: TestBackend.logger
        )
        defer { Task { await db.shutdown(); await killer.shutdown() } }
        // Whoever runs `pg_sleep` for this test is the victim (its query text names a marker).
        let marker = "fault-\(UUID().uuidString.prefix(8))"
        async let kill: Void = {
            try await Task.sleep(for: delay)
            for _ in 0..<50 {
                let killed = try await killer.query("""
                    SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity \
                    WHERE query LIKE \("%" + marker + "%") AND pid <> pg_backend_pid()
                    """)
                if !killed.isEmpty { return }
                try await Task.sleep(for: .milliseconds(50))
            }
        }()
        var caught: DatabaseError?
        do {
            try await body(db.withMarker(marker))
        } catch let error as DatabaseError {
            caught = error
        }
        try await kill
        return caught
    }

    @Test("a backend terminated mid-statement: the error carries 57P01 and the server's reason", arguments: TestBackend.postgres)
    func terminatedStatement(backend: TestBackend) async throws {
        for shape in ["statement", "pipeline", "transaction"] {
            let error = try await terminated(backend) { db in
                let sleep = SQLQuery(unsafeSQL: "SELECT pg_sleep(5) /* \(db.marker) */")
                switch shape {
                case "statement": _ = try await db.database.query(sleep)
                case "pipeline": _ = try await db.database.transaction { tx in _ = try await tx.query(sleep) }
                default: try await db.database.transaction { tx in
                    _ = try await tx.query("SELECT 1")
                    _ = try await tx.query(sleep)
                }
                }
            }
            let failure = try #require(error, "\(backend) \(shape): no error")
            #expect(failure.code == .connectionLost, "\(backend) \(shape): \(failure)")
            #expect(failure.sqlState == "57P01", "\(backend) \(shape): \(failure)")
            #expect(failure.isTransient)
            #expect(failure.serverMessage?.contains("terminating connection due to administrator command") == true, "\(backend) \(shape): \(failure)")
            // The server's words about its connection carry no data: they are in the description too.
            #expect(failure.description.contains("administrator command"), "\(backend) \(shape): \(failure)")
        }
    }
}

/// Which failed connects are worth another try, and the bounded retry helper built on it.
@Suite("Connect failures and retries", .timeLimit(.minutes(1)))
struct ConnectFailureTests {
    @Test("connect failures are classified by cause: refused and pooler trouble are transient, credentials and names are not")
    func classification() async throws {
        let messages: [(String, DatabaseError.ConnectFailure)] = [
            (#"connection to server at "127.0.0.1", port 1 failed: Connection refused"#, .refused),
            ("ERROR:  server login has been failing, try again later (server_login_retry)", .poolerCannotReachServer),
            ("ERROR:  pgbouncer cannot connect to server", .poolerCannotReachServer),
            ("FATAL:  the database system is starting up", .serverNotReady),
            ("FATAL:  the database system is shutting down", .serverNotReady),
            ("FATAL:  sorry, too many clients already", .tooManyConnections),
            ("ERROR:  no more connections allowed (max_client_conn)", .tooManyConnections),
            ("timeout expired", .timedOut),
            (#"could not translate host name "db.internal" to address: Name or service not known"#, .unknownHost),
            ("root certificate file \"/x\" does not exist", .tls),
            ("something else entirely", .other),
        ]
        for (message, expected) in messages {
            #expect(DatabaseError.ConnectFailure.classify(message.lowercased()) == expected, "\(message)")
        }
        // Live: nothing listens on port 1; a wrong password is not a passing fault.
        let closed = Database(configuration: try DatabaseConfiguration(url: "postgres://u:p@127.0.0.1:1/db?connect_timeout=2"), logger: TestBackend.logger)
        let refused = await #expect(throws: DatabaseError.self) { try await closed.query("SELECT 1") }
        #expect(refused?.code == .connectionFailed && refused?.connectFailure == .refused && refused?.isTransient == true, "\(String(describing: refused))")
        await closed.shutdown()
        if TestBackend.postgres.contains(.postgresDirect) {
            var components = try #require(URLComponents(string: try TestBackend.require("DATABASE_APP_DIRECT_URL")))
            components.password = "certainly-wrong"
            let wrong = Database(configuration: try DatabaseConfiguration(url: try #require(components.string)), logger: TestBackend.logger)
            let denied = await #expect(throws: DatabaseError.self) { try await wrong.query("SELECT 1") }
            #expect(denied?.code == .authenticationFailed && denied?.isTransient == false)
            #expect(denied.map { !"\($0)".contains("certainly-wrong") } == true)
            await wrong.shutdown()
        }
    }

    final class Counter: Sendable { let value = Atomic<Int>(0) }

    @Test("retryingTransientErrors: retries transient errors up to the attempts, never others, and returns the first success")
    func retries() async throws {
        let policy = RetryPolicy(attempts: 4, initialBackoff: .milliseconds(1), maximumBackoff: .milliseconds(5))
        let lost = DatabaseError(code: .connectionLost, detail: "test")
        // Two transient failures, then a result.
        let calls = Counter()
        let value = try await retryingTransientErrors(policy) { () async throws -> Int in
            if calls.value.add(1, ordering: .relaxed).newValue < 3 { throw lost }
            return 42
        }
        #expect(value == 42 && calls.value.load(ordering: .relaxed) == 3)
        // Transient forever: exactly `attempts` calls, then the transient error.
        let forever = Counter()
        let last = await #expect(throws: DatabaseError.self) {
            try await retryingTransientErrors(policy) { () async throws -> Int in
                forever.value.add(1, ordering: .relaxed)
                throw lost
            }
        }
        #expect(last?.code == .connectionLost && forever.value.load(ordering: .relaxed) == 4)
        // Not transient: one call.
        let once = Counter()
        await #expect(throws: DatabaseError.self) {
            try await retryingTransientErrors(policy) { () async throws -> Int in
                once.value.add(1, ordering: .relaxed)
                throw DatabaseError(code: .uniqueViolation)
            }
        }
        #expect(once.value.load(ordering: .relaxed) == 1)
        // A refused connect is retried; a wrong configuration is not.
        let refusedCalls = Counter()
        await #expect(throws: DatabaseError.self) {
            try await retryingTransientErrors(policy) { () async throws -> Int in
                refusedCalls.value.add(1, ordering: .relaxed)
                throw DatabaseError(code: .connectionFailed, connectFailure: .refused)
            }
        }
        #expect(refusedCalls.value.load(ordering: .relaxed) == 4)
        #expect(RetryPolicy(attempts: 0).attempts == 1 && RetryPolicy(attempts: 99).attempts == 10)
    }
}

/// A database and the marker its victim statements carry.
struct MarkedDatabase: Sendable {
    let database: Database
    let marker: String
}

extension Database {
    func withMarker(_ marker: String) -> MarkedDatabase { MarkedDatabase(database: self, marker: marker) }
}
