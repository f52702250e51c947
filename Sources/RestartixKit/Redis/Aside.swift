import Foundation
public import Logging
import Synchronization

/// Cache-aside reads (P45): ``get(_:as:ttl:load:)`` answers from the cache, or runs `load` (the
/// database read), stores its JSON for `ttl` and answers that. Within a process, concurrent
/// misses on one key run `load` once and share its result (single flight).
///
/// With Redis the cache is shared by every instance; without it (the embedded default) it is
/// this process's memory, with the same semantics for one instance. Redis down: every read
/// loads from the database — slower, always correct — counted in
/// `restartix_cache_aside_unavailable_total` and logged at most once per interval. A value
/// that no longer decodes (its type changed) counts as a miss.
///
/// ``invalidate(_:)`` deletes the key; a load already running in this process when it is
/// called does not store its (possibly stale) result. Other instances' in-flight loads can
/// still store a value read just before the change: `ttl` bounds how long it lives.
public final class Aside: Sendable {
    private enum Store: Sendable {
        case redis(RedisClient)
        case memory(Entries)
    }

    private final class Entries: Sendable {
        let entries = Mutex<[String: (value: Data, expiresAt: ContinuousClock.Instant)]>([:])
    }

    private final class Flight: Sendable {
        let task: Task<Data, any Error>
        let generation: Int
        init(task: Task<Data, any Error>, generation: Int) {
            self.task = task
            self.generation = generation
        }
    }

    private let store: Store
    private let prefix: String
    private let degradation: Degradation
    private let flights = Mutex<(running: [String: Flight], generations: [String: Int])>(([:], [:]))

    /// A cache in `redis` (keys `"\(prefix)\(key)"`), shared by every instance.
    public init(redis: RedisClient, prefix: String = "aside:", logger: Logger, logInterval: Duration = .seconds(60)) {
        self.store = .redis(redis)
        self.prefix = prefix
        self.degradation = Degradation(
            logger: logger, metric: "restartix_cache_aside_unavailable_total",
            message: "Cache-aside unavailable: reading from the database every time", interval: logInterval
        )
    }

    /// A cache in this process's memory (the embedded default): one instance only.
    public init(logger: Logger) {
        self.store = .memory(Entries())
        self.prefix = ""
        self.degradation = Degradation(logger: logger, metric: "restartix_cache_aside_unavailable_total", message: "", interval: .seconds(60))
    }

    /// The cached value of `key`, or `load()`'s, cached for `ttl`. Errors are `load`'s own.
    public func get<Value: Codable & Sendable>(
        _ key: String, as type: Value.Type = Value.self, ttl: Duration, load: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        if let cached = await read(key), let value = try? JSONDecoder().decode(Value.self, from: cached) { return value }
        let data = try await singleFlight(key, ttl: ttl) { try JSONEncoder().encode(try await load()) }
        return try JSONDecoder().decode(Value.self, from: data)
    }

    /// Drops `key` from the cache (after the database row changed).
    public func invalidate(_ key: String) async {
        flights.withLock { state in
            state.generations[key, default: 0] += 1
            state.running[key] = nil
        }
        switch store {
        case .redis(let redis):
            do { try await redis.send("DEL", prefix + key) } catch { degradation.record(error) }
        case .memory(let memory):
            _ = memory.entries.withLock { $0.removeValue(forKey: key) }
        }
    }

    // MARK: Internals

    private func read(_ key: String) async -> Data? {
        switch store {
        case .redis(let redis):
            do { return try await redis.send("GET", prefix + key).bytes.map { Data($0) } } catch {
                degradation.record(error)
                return nil
            }
        case .memory(let memory):
            let now = ContinuousClock.now
            return memory.entries.withLock { entries in
                guard let entry = entries[key] else { return nil }
                guard entry.expiresAt > now else {
                    entries[key] = nil
                    return nil
                }
                return entry.value
            }
        }
    }

    private func write(_ key: String, _ value: Data, ttl: Duration) async {
        switch store {
        case .redis(let redis):
            do { try await redis.send("SET", prefix + key, [UInt8](value), "PX", WebhookEvents.milliseconds(ttl)) } catch { degradation.record(error) }
        case .memory(let memory):
            let expiresAt = ContinuousClock.now + ttl
            memory.entries.withLock { entries in
                if entries.count > 10_000 {
                    let now = ContinuousClock.now
                    entries = entries.filter { $0.value.expiresAt > now }
                }
                entries[key] = (value, expiresAt)
            }
        }
    }

    /// Runs `load` once for all concurrent callers of `key`; the run stores its result unless
    /// the key was invalidated meanwhile.
    private func singleFlight(_ key: String, ttl: Duration, _ load: @escaping @Sendable () async throws -> Data) async throws -> Data {
        let flight = flights.withLock { state -> Flight in
            if let running = state.running[key] { return running }
            let generation = state.generations[key, default: 0]
            let task = Task { [self] in
                let data: Data
                do { data = try await load() } catch {
                    finish(key, generation: generation)
                    throw error
                }
                if finish(key, generation: generation) { await write(key, data, ttl: ttl) }
                return data
            }
            let flight = Flight(task: task, generation: generation)
            state.running[key] = flight
            return flight
        }
        return try await flight.task.value
    }

    /// Ends the flight of `key`; whether the key is still at `generation` (not invalidated).
    @discardableResult
    private func finish(_ key: String, generation: Int) -> Bool {
        flights.withLock { state in
            if state.running[key]?.generation == generation { state.running[key] = nil }
            return state.generations[key, default: 0] == generation
        }
    }
}
