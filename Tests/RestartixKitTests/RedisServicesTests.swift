import Foundation
import InMemoryLogging
import Logging
import RestartixPlatform
@testable import RestartixRedis
@testable import RestartixKit
import Synchronization
import RestartixTestSupport
import Testing

/// The Redis-backed services against real redis-server processes, each beside its in-process
/// twin: the same model, the same answers; and each degrading as the platform requires.
@Suite("Redis services", .timeLimit(.minutes(3)))
struct RedisServicesTests {
    static let logger = Logger(label: "restartix.tests.redis-services")

    /// A virtual clock in microseconds, moved by the test.
    final class VirtualClock: Sendable {
        private let now = Atomic<Int64>(1_700_000_000_000_000)
        var read: @Sendable () -> Int64 { { self.now.load(ordering: .relaxed) } }
        func advance(_ duration: Duration) {
            now.add(duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000, ordering: .relaxed)
        }
    }

    /// The limiters to check against the model on one virtual clock: Redis (shared server) when
    /// configured, and the in-process one always.
    static func limiters(_ clock: VirtualClock) throws -> [(String, any RateLimiter, RedisClient?)] {
        var limiters: [(String, any RateLimiter, RedisClient?)] = [("in-process", InProcessRateLimiter(clock: clock.read), nil)]
        // A long command timeout: on a loaded machine a slow answer must not fail open here.
        if let redis = try RedisClientTests.shared({ $0.commandTimeout = .seconds(20) }) {
            limiters.append(("redis", RedisRateLimiter(redis: redis, prefix: "ratelimit:", logger: logger, logInterval: .seconds(60), clock: clock.read), redis))
        }
        return limiters
    }

    @Test("rate limiter: several limits at once, all or nothing — a refusal by one counts against none", arguments: ["in-process", "redis"])
    func severalLimits(kind: String) async throws {
        let clock = VirtualClock()
        guard let (name, limiter, redis) = try Self.limiters(clock).first(where: { $0.0 == kind }) else { return }
        defer { redis?.shutdown() }
        let address = "address:\(UUID().uuidString)", first = "user:\(UUID().uuidString)", second = "user:\(UUID().uuidString)"
        let perAddress = RateLimit(10, per: .seconds(1), burst: 3), perUser = RateLimit(10, per: .seconds(1), burst: 2)
        func both(_ user: String) async -> [RateLimitDecision] {
            await limiter.check([
                RateCheck(principal: address, endpoint: "address", rate: perAddress), RateCheck(principal: user, endpoint: "v1", rate: perUser),
            ])
        }
        // The first user's two-request burst: both limits count each.
        for expected in [(2, 1), (1, 0)] {
            let decisions = await both(first)
            #expect(decisions.map(\.allowed) == [true, true] && decisions.map(\.remaining) == [expected.0, expected.1], "\(name): \(decisions)")
        }
        // The third: the user's limit refuses, so the address's is not counted either...
        let refused = await both(first)
        #expect(refused.map(\.allowed) == [true, false] && refused[1].retryAfter == .milliseconds(100), "\(name): \(refused)")
        // ...and the address still has the one request left for another user, then none.
        #expect(await both(second).map(\.allowed) == [true, true], "\(name)")
        let full = await both(second)
        #expect(full.map(\.allowed) == [false, true] && full.allSatisfy { !$0.failedOpen }, "\(name): \(full)")
        let after = await limiter.check([RateCheck(principal: second, endpoint: "v1", rate: perUser)])
        #expect(after.first?.allowed == true && after.first?.remaining == 0, "\(name): the address's refusal did not count against the user")
        #expect(await limiter.check([]).isEmpty)
    }

    @Test("rate limiter: exactly GCRA — a burst, then one request per emission interval; retry, reset and headers", arguments: ["in-process", "redis"])
    func rateLimitModel(kind: String) async throws {
        let clock = VirtualClock()
        guard let (name, limiter, redis) = try Self.limiters(clock).first(where: { $0.0 == kind }) else { return }
        defer { redis?.shutdown() }
        let principal = UUID().uuidString
        // 4 per second (T = 250 ms), bursts of 5, all at one instant.
        let rate = RateLimit(4, per: .seconds(1), burst: 5)
        var decisions: [RateLimitDecision] = []
        for _ in 0..<8 { decisions.append(await limiter.check(principal: principal, endpoint: "GET /v1/patients", rate: rate)) }
        #expect(decisions.map(\.allowed) == [true, true, true, true, true, false, false, false], "\(name)")
        #expect(decisions.prefix(5).map(\.remaining) == [4, 3, 2, 1, 0], "\(name)")
        #expect(decisions.allSatisfy { !$0.failedOpen })
        #expect(decisions[5].retryAfter == .milliseconds(250), "\(name): one interval")
        #expect(decisions[5].resetAfter == .milliseconds(1250), "\(name): five intervals to a full burst")
        #expect(decisions[5].headers.map(\.name) == ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"])
        #expect(decisions[5].headers.first { $0.name == "Retry-After" }?.value == "1", "seconds, rounded up")
        #expect(decisions[5].headers.first { $0.name == "RateLimit-Reset" }?.value == "2")
        clock.advance(.milliseconds(250))
        #expect(await limiter.check(principal: principal, endpoint: "GET /v1/patients", rate: rate).allowed, "\(name): after one interval")
        #expect(await !limiter.check(principal: principal, endpoint: "GET /v1/patients", rate: rate).allowed, "\(name): and only one")
        // Another endpoint or principal has its own budget; a cost of 3 takes three.
        #expect(await limiter.check(principal: principal, endpoint: "POST /v1/patients", rate: rate).allowed)
        #expect(await limiter.check(principal: UUID().uuidString, endpoint: "GET /v1/patients", rate: rate).allowed)
        let heavy = UUID().uuidString
        #expect(await limiter.check(principal: heavy, endpoint: "export", rate: rate, cost: 3).remaining == 2)
        #expect(await !limiter.check(principal: heavy, endpoint: "export", rate: rate, cost: 3).allowed)

        // 20 per second, bursts of 3, a check every 2 ms for 600 ms: allowed at 0, 2 and 4 ms
        // (the burst), then at 50, 100, ... 550 ms: 14, the same as GCRA computed here.
        let steady = RateLimit(20, per: .seconds(1), burst: 3)
        let hammer = UUID().uuidString
        var allowedAt: [Int] = []
        for millisecond in stride(from: 0, to: 600, by: 2) {
            let decision = await limiter.check(principal: hammer, endpoint: "GET /v1/patients", rate: steady)
            #expect(!decision.failedOpen, "\(name): Redis answered")
            if decision.allowed { allowedAt.append(millisecond) }
            clock.advance(.milliseconds(2))
        }
        #expect(allowedAt == [0, 2, 4] + Array(stride(from: 50, to: 600, by: 50)), "\(name): \(allowedAt)")
        // A quiet spell refills the burst, and no more than the burst.
        clock.advance(.seconds(10))
        var refill = 0
        for _ in 0..<6 where await limiter.check(principal: hammer, endpoint: "GET /v1/patients", rate: steady).allowed { refill += 1 }
        #expect(refill == 3, "\(name)")
    }

    @Test("rate limiter on Redis's own clock: a burst of 2 a minute allows 2, then refuses")
    func rateLimitServerClock() async throws {
        guard let redis = try RedisClientTests.shared() else { return }
        defer { redis.shutdown() }
        let limiter = RedisRateLimiter(redis: redis, logger: Self.logger)
        let rate = RateLimit(1, per: .seconds(60), burst: 2), principal = UUID().uuidString
        var allowed: [Bool] = []
        for _ in 0..<3 { allowed.append(await limiter.check(principal: principal, endpoint: "e", rate: rate).allowed) }
        #expect(allowed == [true, true, false])
    }

    @Test("rate limiter: Redis stopped -> every request allowed, marked failed open, one warning per interval")
    func rateLimitFailsOpen() async throws {
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        // A generous timeout: while Redis is up its answers must count (a killed server refuses at
        // once, so the outage below is not slowed by it).
        let redis = try RedisClientTests.quickClient(server, commandTimeout: .seconds(10))
        defer { redis.shutdown() }
        let logs = InMemoryLogHandler()
        _ = TestMetricsSupport.metrics  // before the limiter makes its counter
        let limiter = RedisRateLimiter(redis: redis, logger: Logger(label: "test") { _ in logs }, logInterval: .seconds(60))
        let rate = RateLimit(1, per: .seconds(60))
        #expect(await limiter.check(principal: "p", endpoint: "e", rate: rate).allowed)
        #expect(await !limiter.check(principal: "p", endpoint: "e", rate: rate).allowed, "limited while Redis is up")
        await server.kill()
        let before = TestMetricsSupport.total("restartix_ratelimit_fail_open_total")
        for _ in 0..<50 {
            let decision = await limiter.check(principal: "p", endpoint: "e", rate: rate)
            #expect(decision.allowed && decision.failedOpen)
            #expect(decision.headers.isEmpty)
        }
        #expect(logs.entries.filter { $0.level == .warning }.count == 1, "one warning, not fifty")
        #expect(TestMetricsSupport.total("restartix_ratelimit_fail_open_total") - before >= 50, "every fail-open counted")
        try await server.start()
        #expect(try await RedisClientTests.eventually { await !limiter.check(principal: "p", endpoint: "e", rate: rate).failedOpen },
                "limits again once Redis is back")
    }

    @Test("activity debounce: once per interval per principal; Redis down -> once per interval per instance, counted")
    func debounce() async throws {
        var debounces: [(String, any ActivityDebounce)] = [("in-process", InProcessActivityDebounce())]
        let redis = try RedisClientTests.shared()
        defer { redis?.shutdown() }
        if let redis { debounces.append(("redis", RedisActivityDebounce(redis: redis, logger: Self.logger))) }
        for (name, debounce) in debounces {
            let principal = UUID().uuidString, brief = UUID().uuidString
            #expect(await debounce.shouldWrite(principal: principal, every: .seconds(30)), "\(name)")
            #expect(await !debounce.shouldWrite(principal: principal, every: .seconds(30)), "\(name)")
            #expect(await debounce.shouldWrite(principal: UUID().uuidString, every: .seconds(30)), "\(name): another principal")
            #expect(await debounce.shouldWrite(principal: brief, every: .milliseconds(100)), "\(name)")
            try await Task.sleep(for: .milliseconds(250))
            #expect(await debounce.shouldWrite(principal: brief, every: .milliseconds(100)), "\(name): the next interval")
        }
        if let redis {
            // Two instances on one Redis: the second learns from Redis how long the first's key
            // stands; from then on both answer from memory, without a round trip (shown by
            // deleting the key behind their backs: neither notices before its time is up), and
            // an instance that has learnt nothing asks Redis.
            let (first, second, third) = (
                RedisActivityDebounce(redis: redis, logger: Self.logger), RedisActivityDebounce(redis: redis, logger: Self.logger),
                RedisActivityDebounce(redis: redis, logger: Self.logger)
            )
            let principal = UUID().uuidString
            #expect(await first.shouldWrite(principal: principal, every: .seconds(30)))
            #expect(await !second.shouldWrite(principal: principal, every: .seconds(30)))
            try await redis.send("DEL", "activity:\(principal)")
            #expect(await !first.shouldWrite(principal: principal, every: .seconds(30)))
            #expect(await !second.shouldWrite(principal: principal, every: .seconds(30)))
            #expect(await third.shouldWrite(principal: principal, every: .seconds(30)))
            // What the second learnt ends with the key: then it asks again, and writes.
            let brief = UUID().uuidString
            #expect(await first.shouldWrite(principal: brief, every: .seconds(3)))
            #expect(await !second.shouldWrite(principal: brief, every: .seconds(3)))
            try await Task.sleep(for: .milliseconds(3200))
            #expect(await second.shouldWrite(principal: brief, every: .seconds(3)))
        }
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        let down = try RedisClientTests.quickClient(server, commandTimeout: .milliseconds(200))
        defer { down.shutdown() }
        await server.kill()
        _ = TestMetricsSupport.metrics
        let debounce = RedisActivityDebounce(redis: down, logger: Self.logger)
        let before = TestMetricsSupport.total("restartix_activity_debounce_unavailable_total")
        var writes = 0
        for _ in 0..<5 where await debounce.shouldWrite(principal: "p", every: .seconds(60)) { writes += 1 }
        #expect(writes == 1, "Redis down: this process's own debounce, not a write per request")
        #expect(TestMetricsSupport.total("restartix_activity_debounce_unavailable_total") - before >= 5)
    }

    /// A migrated SQLite database in a temporary file.
    static func database() async throws -> (Database, String) {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-webhooks-\(UUID().uuidString).sqlite").path
        var configuration = DatabaseConfiguration(sqlitePath: path)
        // A hundred deliveries queue for SQLite's one writer while Redis is down: on a machine
        // busy with the rest of the suite that queue can outlast the default 10 s wait, and
        // what this checks is exactly-once, not how fast.
        configuration.acquireTimeout = .seconds(60)
        let database = Database(configuration: configuration, logger: logger)
        _ = try await Migrator(platformSchemaOn: database, logger: logger).migrate()
        return (database, path)
    }

    @Test("webhook idempotency: exactly once across two instances, with Redis, without it, and across an outage")
    func webhookIdempotency() async throws {
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        let (database, path) = try await Self.database()
        defer {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let a = try RedisClientTests.quickClient(server, commandTimeout: .seconds(10))
        let b = try RedisClientTests.quickClient(server, commandTimeout: .seconds(10))
        defer { a.shutdown(); b.shutdown() }
        let instances: [any WebhookIdempotency] = [
            RedisWebhookIdempotency(redis: a, database: database, logger: Self.logger),
            RedisWebhookIdempotency(redis: b, database: database, logger: Self.logger),
        ]
        func deliver(_ event: String, times: Int) async throws -> Int {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<times { group.addTask { try await instances[i % 2].firstDelivery(provider: "clerk", eventID: event, ttl: .seconds(60)) } }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
        }
        #expect(try await deliver("msg_redis", times: 100) == 1, "Redis up: one first delivery out of 100")
        await server.kill()
        #expect(try await deliver("msg_outage", times: 100) == 1, "Redis down: the database decides, still once")
        try await server.start()
        _ = try await RedisClientTests.eventually { try await a.send("PING") == .simpleString("PONG") }
        _ = try await RedisClientTests.eventually { try await b.send("PING") == .simpleString("PONG") }
        #expect(try await deliver("msg_outage", times: 10) == 0, "recorded during the outage: Redis is new to it, the database is not")
        #expect(try await deliver("msg_after", times: 50) == 1)
        let rows = try await database.query("SELECT count(*) AS n FROM inbound_webhook_events WHERE provider = 'clerk'")
        #expect(try rows[0].decode("n", as: Int.self) == 3)
        await #expect(throws: RedisError.self) { try await instances[0].firstDelivery(provider: "clerk", eventID: "", ttl: .seconds(1)) }
        // In process: once within the ttl, and again after it.
        let local = InProcessWebhookIdempotency()
        #expect(try await local.firstDelivery(provider: "clerk", eventID: "e", ttl: .seconds(60)))
        #expect(try await !local.firstDelivery(provider: "clerk", eventID: "e", ttl: .seconds(60)))
        #expect(try await local.firstDelivery(provider: "clerk", eventID: "brief", ttl: .milliseconds(100)))
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await local.firstDelivery(provider: "clerk", eventID: "brief", ttl: .milliseconds(100)), "again after the ttl")
        await database.shutdown()
    }
}
