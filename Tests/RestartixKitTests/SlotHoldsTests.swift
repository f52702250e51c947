import Foundation
import Logging
import RestartixPlatform
import RestartixRedis
import RestartixKit
import RestartixTestSupport
import Testing

/// Appointment holds in every store — Redis, the database reservation (SQLite, Postgres through
/// PgBouncer) and memory — with the same semantics: one holder out of many racing, expiry,
/// fencing, bearer-only release; and Redis down falling back to the database.
@Suite("Slot holds", .timeLimit(.minutes(3)))
struct SlotHoldsTests {
    static let logger = Logger(label: "restartix.tests.holds")

    /// A migrated database of `backend` for the reservation table.
    static func database(_ backend: TestBackend) async throws -> Database {
        if backend.isPostgres {
            let owner = try Database(url: TestBackend.require("DATABASE_DIRECT_URL"), logger: logger)
            _ = try await Migrator(platformSchemaOn: owner, logger: logger).migrate()
            await owner.shutdown()
        }
        // 100 holders race through one SQLite writer: on a loaded 2-core CI machine the last of
        // them can wait longer than the default 5 s for it (a pool timeout once failed this
        // suite there). The semantics are what is tested here, not the latency.
        let database = try backend.makeDatabase(acquireTimeout: .seconds(30))
        if !backend.isPostgres { _ = try await Migrator(platformSchemaOn: database, logger: logger).migrate() }
        return database
    }

    /// The semantics every store must have.
    static func check(_ holds: any SlotHolds, store: SlotHold.Store, _ name: String) async throws {
        let slot = "slot-\(UUID().uuidString)"
        // 100 tasks race for one slot: exactly one holds it.
        let winners = try await withThrowingTaskGroup(of: SlotHold?.self) { group in
            for i in 0..<100 { group.addTask { try await holds.hold(slot: slot, holder: "patient-\(i)", ttl: .seconds(30)) } }
            return try await group.reduce(into: [SlotHold]()) { if let hold = $1 { $0.append(hold) } }
        }
        try #require(winners.count == 1, "\(name): \(winners.count) holders")
        let first = winners[0]
        #expect(first.store == store, "\(name)")
        // Only the bearer ends it.
        let forged = SlotHold(slot: slot, holder: first.holder, token: "forged", fence: first.fence, expiresAt: first.expiresAt, store: store)
        #expect(try await !holds.release(forged), "\(name): a wrong token ends nothing")
        #expect(try await holds.hold(slot: slot, holder: "late", ttl: .seconds(30)) == nil, "\(name): still held")
        #expect(try await holds.release(first), "\(name)")
        #expect(try await !holds.release(first), "\(name): released once")
        // Expiry, and fencing: a holder that outlived its hold cannot confirm; the next one can,
        // with a greater fence.
        // Five seconds: the next hold (a database write, or a Redis timeout before one) must come
        // while it stands, on a loaded machine too.
        let brief = try #require(try await holds.hold(slot: slot, holder: "slow-patient", ttl: .seconds(5)))
        #expect(brief.fence > first.fence, "\(name): fences grow")
        #expect(try await holds.hold(slot: slot, holder: "other", ttl: .seconds(30)) == nil)
        try await Task.sleep(for: .milliseconds(5300))
        let next = try #require(try await holds.hold(slot: slot, holder: "quick-patient", ttl: .seconds(30)), "\(name): free after expiry")
        #expect(next.fence > brief.fence, "\(name)")
        #expect(try await holds.confirm(brief) == nil, "\(name): the lapsed holder cannot confirm")
        // A fence of the client's own is not the one granted: nothing is confirmed.
        let raised = SlotHold(slot: slot, holder: next.holder, token: next.token, fence: next.fence + 1_000_000, expiresAt: next.expiresAt, store: store)
        #expect(try await holds.confirm(raised) == nil, "\(name): a forged fence confirms nothing")
        let lapses = try #require(try await holds.confirm(next), "\(name)")
        // It lapses when the hold does (clocks of the store and this process, read a round trip
        // apart: seconds at most on a loaded machine, against a 30 s hold).
        #expect(abs(lapses.timeIntervalSince(next.expiresAt)) < 5, "\(name): \(lapses) vs \(next.expiresAt)")
        #expect(try await holds.confirm(next) == nil, "\(name): confirmed once")
        // Once its booking is written, the bearer frees the confirmed hold: the slot is free.
        #expect(try await holds.release(next), "\(name): a confirmed hold is released by its bearer")
        #expect(try await !holds.release(next), "\(name): released once")
        let again = try #require(try await holds.hold(slot: slot, holder: "rebooking-patient", ttl: .seconds(30)), "\(name): free after release")
        #expect(again.fence > next.fence, "\(name)")
        await #expect(throws: RedisError.self) { try await holds.hold(slot: "", holder: "x", ttl: .seconds(1)) }
    }

    @Test("in memory and in Redis")
    func memoryAndRedis() async throws {
        try await Self.check(InProcessSlotHolds(), store: .memory, "memory")
        guard let redis = try RedisClientTests.shared() else { return }
        defer { redis.shutdown() }
        let database = try await Self.database(.sqlite)
        try await Self.check(RedisSlotHolds(redis: redis, database: database, logger: Self.logger), store: .redis, "redis")
        await database.shutdown()
    }

    @Test("the database reservation", arguments: [TestBackend.sqlite, .pgbouncer].filter { TestBackend.all.contains($0) })
    func database(backend: TestBackend) async throws {
        let database = try await Self.database(backend)
        try await Self.check(DatabaseSlotHolds(database: database), store: .database, "\(backend)")
        await database.shutdown()
    }

    @Test("Redis down: holds fail closed to the database reservation, one holder still")
    func fallback() async throws {
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        let redis = try RedisClientTests.quickClient(server, commandTimeout: .milliseconds(300))
        defer { redis.shutdown() }
        let database = try await Self.database(.sqlite)
        await server.kill()
        try await Self.check(RedisSlotHolds(redis: redis, database: database, logger: Self.logger), store: .database, "redis down")
        await database.shutdown()
    }
}
