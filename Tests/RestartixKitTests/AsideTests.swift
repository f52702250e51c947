import Foundation
import Logging
import RestartixRedis
import RestartixKit
import Synchronization
import RestartixTestSupport
import Testing

/// Cache-aside in Redis (shared by instances) and in memory: hits, misses, TTL, single flight,
/// invalidation, and Redis down -> every read from the database.
@Suite("Cache-aside", .timeLimit(.minutes(3)))
struct AsideTests {
    static let logger = Logger(label: "restartix.tests.aside")

    struct Clinic: Codable, Sendable, Equatable {
        let slug: String
        let name: String
    }

    /// Counts loads, the stand-in for database reads.
    final class Loads: Sendable {
        private let count = Atomic<Int>(0)
        var value: Int { count.load(ordering: .relaxed) }
        func load(_ name: String, delay: Duration = .zero) async throws -> Clinic {
            count.add(1, ordering: .relaxed)
            if delay > .zero { try await Task.sleep(for: delay) }
            return Clinic(slug: "c", name: name)
        }
    }

    static func caches() throws -> [(String, Aside, RedisClient?)] {
        var caches: [(String, Aside, RedisClient?)] = [("memory", Aside(logger: logger), nil)]
        if let redis = try RedisClientTests.shared({ $0.commandTimeout = .seconds(10) }) {
            caches.append(("redis", Aside(redis: redis, prefix: "aside:\(UUID().uuidString):", logger: logger), redis))
        }
        return caches
    }

    @Test("get-or-load: a hit until the ttl, invalidate drops it, 1,000 concurrent cold reads load once")
    func getOrLoad() async throws {
        for (name, aside, redis) in try Self.caches() {
            defer { redis?.shutdown() }
            let loads = Loads()
            let first = try await aside.get("clinic:1", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("One") }
            #expect(first == Clinic(slug: "c", name: "One"))
            #expect(try await aside.get("clinic:1", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Two") } == first, "\(name): a hit")
            #expect(loads.value == 1, "\(name)")
            await aside.invalidate("clinic:1")
            #expect(try await aside.get("clinic:1", as: Clinic.self, ttl: .seconds(2)) { try await loads.load("Two") }.name == "Two", "\(name)")
            #expect(loads.value == 2)
            try await Task.sleep(for: .milliseconds(2300))
            #expect(try await aside.get("clinic:1", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Three") }.name == "Three", "\(name): after the ttl")

            let cold = Loads()
            let names = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<1000 {
                    group.addTask { try await aside.get("clinic:cold", as: Clinic.self, ttl: .seconds(30)) { try await cold.load("Cold", delay: .milliseconds(200)) }.name }
                }
                return try await group.reduce(into: Set<String>()) { $0.insert($1) }
            }
            #expect(names == ["Cold"])
            #expect(cold.value == 1, "\(name): single flight, \(cold.value) loads")
            // A failing load is the caller's error and caches nothing.
            struct Unreachable: Error {}
            await #expect(throws: Unreachable.self) { try await aside.get("clinic:broken", as: Clinic.self, ttl: .seconds(30)) { throw Unreachable() } }
            #expect(try await aside.get("clinic:broken", as: Clinic.self, ttl: .seconds(30)) { try await cold.load("Fixed") }.name == "Fixed")
        }
    }

    @Test("two instances share the Redis cache; an invalidation during a load keeps the stale result out")
    func sharedAndInvalidatedDuringLoad() async throws {
        guard let a = try RedisClientTests.shared(), let b = try RedisClientTests.shared() else { return }
        defer { a.shutdown(); b.shutdown() }
        let prefix = "aside:\(UUID().uuidString):"
        let one = Aside(redis: a, prefix: prefix, logger: Self.logger), two = Aside(redis: b, prefix: prefix, logger: Self.logger)
        let loads = Loads()
        _ = try await one.get("clinic:2", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Shared") }
        #expect(try await two.get("clinic:2", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Other") }.name == "Shared")
        #expect(loads.value == 1, "the second instance read the first one's value")
        // Invalidated while a slow load runs: the load's answer is returned but not cached.
        async let slow = one.get("clinic:3", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Before the change", delay: .seconds(3)) }
        #expect(try await RedisClientTests.eventually { loads.value == 2 }, "the slow load started")
        await one.invalidate("clinic:3")
        #expect(try await slow.name == "Before the change")
        #expect(try await one.get("clinic:3", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("After the change") }.name == "After the change")
    }

    @Test("Redis down: every read goes to the database, and never fails because of Redis")
    func redisDown() async throws {
        guard RedisServer.available else { return }
        let server = try await RedisServer()
        defer { server.stop() }
        let redis = try RedisClientTests.quickClient(server, commandTimeout: .seconds(1))
        defer { redis.shutdown() }
        await server.kill()
        let aside = Aside(redis: redis, logger: Self.logger)
        let loads = Loads()
        for _ in 0..<5 { #expect(try await aside.get("clinic:4", as: Clinic.self, ttl: .seconds(30)) { try await loads.load("Fresh") }.name == "Fresh") }
        #expect(loads.value == 5)
        await aside.invalidate("clinic:4")
    }
}
