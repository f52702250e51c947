import Foundation
@testable import RestartixKit
import Synchronization
import RestartixTestSupport
import Testing

/// Faults as an operator sees them: the server's own reason survives a connection that closes
/// right after sending it, on every path (one statement, a pipeline, a transaction).
@Suite("Storage under faults", .timeLimit(.minutes(3)))
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
            // Until the victim's statement shows up: a loaded machine can take seconds to send it.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
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
                let sleep = SQLQuery(unsafeSQL: "SELECT pg_sleep(60) /* \(db.marker) */")
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

/// Every wait bounded: the call's deadline on the client, the statement timeout on the server.
@Suite("Deadlines and statement timeouts", .timeLimit(.minutes(3)))
struct DeadlineTests {
    /// Whether a statement carrying `marker` still runs on the server.
    static func stillRunning(_ marker: String, on observer: Database) async throws -> Bool {
        try await !observer.query("""
            SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE \("%" + marker + "%") AND pid <> pg_backend_pid()
            """).isEmpty
    }

    @Test("a statement outside a transaction that outlives its scope's deadline: timedOut in time, canceled on the server, connection replaced", arguments: TestBackend.postgres)
    func clientDeadline(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1)
        let observer = try Database(url: TestBackend.require("DATABASE_DIRECT_URL"), logger: TestBackend.logger)
        defer { Task { await db.shutdown(); await observer.shutdown() } }
        let marker = "deadline-\(UUID().uuidString.prefix(8))"
        // Connect first: on a loaded machine the connect alone can outlast 300 ms, and this test
        // is about a statement that does (CI once saw connectionFailed here instead).
        _ = try await db.query("SELECT 1")
        let started = ContinuousClock.now
        let error = await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.milliseconds(300)) {
                try await db.query(SQLQuery(unsafeSQL: "SELECT pg_sleep(60) /* \(marker) */"))
            }
        }
        let took = ContinuousClock.now - started
        #expect(error?.code == .timedOut && error?.isTransient == true, "\(String(describing: error))")
        // 300 ms by design. The bound only has to stay well short of the 60 s sleep: the full
        // suite on a loaded 2-core machine once stalled every timer here for about 1.7 s.
        #expect(took < .seconds(15), "took \(took)")
        // The cancel request reaches the server (through PgBouncer too): the sleep stops.
        var running = true
        let deadline = ContinuousClock.now + .seconds(20)
        while running, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            running = try await Self.stillRunning(marker, on: observer)
        }
        #expect(!running, "the abandoned statement still runs on the server")
        // The connection was not reused: the next call gets a fresh, working one.
        #expect(try await db.query("SELECT 1 AS one").first?.decode("one", as: Int.self) == 1)
    }

    @Test("a transaction inside a scope sends the time left as its statement_timeout: the server cancels it (57014)", arguments: TestBackend.postgres)
    func scopedStatementTimeout(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1)
        defer { Task { await db.shutdown() } }
        _ = try await db.query("SELECT 1")  // connected before the clock starts, as above
        let started = ContinuousClock.now
        let error = await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.milliseconds(400)) {
                try await db.transaction { tx in try await tx.query("SELECT pg_sleep(60)") }
            }
        }
        #expect(ContinuousClock.now - started < .seconds(15))  // 400 ms, and a loaded machine's margin, well short of 60 s
        // The server's cancel comes before the client's deadline; either way, in time.
        #expect(error?.sqlState == "57014" || error?.code == .timedOut, "\(String(describing: error))")
        // Transaction-local: the pooled connection keeps no timeout.
        let timeout = try await db.transaction { tx in try await tx.query("SELECT current_setting('statement_timeout') AS t").first?.decode("t", as: String.self) }
        #expect(timeout == "0", "\(String(describing: timeout))")
    }

    @Test("the configured statement timeout is sent with BEGIN, transaction-locally", arguments: TestBackend.postgres)
    func configuredStatementTimeout(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1) { $0.statementTimeout = .milliseconds(250) }
        defer { Task { await db.shutdown() } }
        #expect(db.configuration.effectiveCallTimeout == .milliseconds(1250))
        let error = await #expect(throws: DatabaseError.self) {
            try await db.transaction { tx in try await tx.query("SELECT pg_sleep(2)") }
        }
        #expect(error?.code == .queryCanceled && error?.sqlState == "57014", "\(String(describing: error))")
        // Inside a transaction the setting holds; outside one the server default is back.
        let inside = try await db.transaction { tx in try await tx.query("SELECT current_setting('statement_timeout') AS t").first?.decode("t", as: String.self) }
        #expect(inside == "250ms")
        let outside = try await db.query("SELECT current_setting('statement_timeout') AS t").first?.decode("t", as: String.self)
        #expect(outside == "0")
    }

    @Test("a scope's deadline bounds the wait for a pooled connection, and one already passed sends nothing", arguments: TestBackend.all)
    func poolWaitAndPassedDeadline(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1, acquireTimeout: .seconds(10))
        defer { Task { await db.shutdown() } }
        let holding = AsyncStream<Void>.makeStream()
        async let holder: Void = db.withConnection { _ in
            holding.continuation.yield()
            try await Task.sleep(for: .seconds(6))
        }
        for await _ in holding.stream { break }
        let started = ContinuousClock.now
        let waited = await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.milliseconds(200)) { try await db.query("SELECT 1") }
        }
        #expect(waited?.code == .timedOut, "\(String(describing: waited))")
        // 200 ms by design. The error above already shows the call did not wait for the holder
        // (it would have succeeded after 6 s); the bound only keeps it well short of that, with
        // room for a loaded machine (the full suite once took 1.75 s here on 2 cores).
        #expect(ContinuousClock.now - started < .seconds(4))
        try await holder
        // A deadline already past: nothing is sent, and the connection stays good for the next call.
        let passed = await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.zero) { try await db.query("SELECT 1") }
        }
        #expect(passed?.code == .timedOut && passed?.detail?.contains("nothing was sent") == true, "\(String(describing: passed))")
        #expect(try await db.query("SELECT 1 AS one").count == 1)
        // Nested scopes: the earlier deadline wins.
        let nested = await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.zero) { try await Database.withDeadline(.seconds(30)) { try await db.query("SELECT 1") } }
        }
        #expect(nested?.code == .timedOut)
    }
}

/// Which failed connects are worth another try, and the bounded retry helper built on it.
@Suite("Connect failures and retries", .timeLimit(.minutes(3)))
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
        // Inside a deadline scope, no attempt starts after the deadline.
        let scoped = Counter()
        let slow = RetryPolicy(attempts: 5, initialBackoff: .milliseconds(300), maximumBackoff: .seconds(1))
        await #expect(throws: DatabaseError.self) {
            try await Database.withDeadline(.milliseconds(100)) {
                try await retryingTransientErrors(slow) { () async throws -> Int in
                    scoped.value.add(1, ordering: .relaxed)
                    throw lost
                }
            }
        }
        #expect(scoped.value.load(ordering: .relaxed) == 1)
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
