import Foundation
import RestartixKit
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

/// A database and the marker its victim statements carry.
struct MarkedDatabase: Sendable {
    let database: Database
    let marker: String
}

extension Database {
    func withMarker(_ marker: String) -> MarkedDatabase { MarkedDatabase(database: self, marker: marker) }
}
