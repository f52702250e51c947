import Foundation
import Metrics
import MetricsTestKit
import RestartixKit
import RestartixTestSupport
import Testing

/// The pool's gauges: connections in use and idle, and acquires waiting, per role and pool,
/// as they change.
@Suite("Pool gauges")
struct PoolMetricsTests {
    func value(_ label: String, role: String, pool: String, state: String? = nil) throws -> Double? {
        var dimensions = [("role", role), ("pool", pool)]
        if let state { dimensions.append(("state", state)) }
        return try TestMetricsSupport.metrics.expectGauge(label, dimensions).lastValue
    }

    @Test("in use, idle and waiting follow the pool", arguments: TestBackend.all)
    func gauges(backend: TestBackend) async throws {
        _ = TestMetricsSupport.metrics  // bootstrapped before the pool makes its gauges
        let role = "test-\(UUID().uuidString.prefix(8))"
        let db = try backend.makeDatabase(maximumConnections: 1) { $0.metricsRole = role }
        defer { Task { await db.shutdown() } }
        // The pool that serves writes: Postgres has one, SQLite a writer beside its readers.
        let pool = backend == .sqlite ? "sqlite-writer" : "postgres"
        _ = try await db.execute("SELECT 1")
        #expect(try value("restartix_db_pool_connections", role: role, pool: pool, state: "in_use") == 0)
        #expect(try value("restartix_db_pool_connections", role: role, pool: pool, state: "idle") == 1)

        let holding = AsyncStream<Void>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        async let holder: Void = db.transaction { _ in
            holding.continuation.yield()
            for await _ in release.stream { break }
        }
        for await _ in holding.stream { break }
        #expect(try value("restartix_db_pool_connections", role: role, pool: pool, state: "in_use") == 1)
        #expect(try value("restartix_db_pool_connections", role: role, pool: pool, state: "idle") == 0)
        async let waiter = db.transaction { tx in try await tx.execute("SELECT 1") }
        // The second acquire queues behind the first.
        var waiting: Double?
        for _ in 0..<200 {
            waiting = try value("restartix_db_pool_waiting", role: role, pool: pool)
            if waiting == 1 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(waiting == 1)
        release.continuation.yield()
        try await holder
        _ = try await waiter
        #expect(try value("restartix_db_pool_waiting", role: role, pool: pool) == 0)
        #expect(try value("restartix_db_pool_connections", role: role, pool: pool, state: "in_use") == 0)
    }

}
