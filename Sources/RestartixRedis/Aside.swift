import RestartixKit
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
        let entries = Mutex(ExpiringMap<Data>())
    }

    /// One load in flight for a key; `invalidated` is set when the key is invalidated meanwhile.
    private final class Flight: Sendable {
        let task: Task<Data, any Error>
        let invalidated = Atomic<Bool>(false)
        init(task: Task<Data, any Error>) { self.task = task }
    }

    private let store: Store
    private let prefix: String
    private let degradation: Degradation
    private let flights = Mutex<[String: Flight]>([:])

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
        let data = try await singleFlight(key, ttl: ttl, usable: { (try? JSONDecoder().decode(Value.self, from: $0)) != nil }) {
            try JSONEncoder().encode(try await load())
        }
        return try JSONDecoder().decode(Value.self, from: data)
    }

    /// Drops `key` from the cache (after the database row changed).
    public func invalidate(_ key: String) async {
        flights.withLock { $0.removeValue(forKey: key) }?.invalidated.store(true, ordering: .releasing)
        switch store {
        case .redis(let redis):
            do { try await redis.send("DEL", prefix + key) } catch { degradation.record(error) }
        case .memory(let memory):
            memory.entries.withLock { $0.remove(key) }
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
            return memory.entries.withLock { $0.value(key, now: now) }
        }
    }

    private func write(_ key: String, _ value: Data, ttl: Duration) async {
        switch store {
        case .redis(let redis):
            do { try await redis.send("SET", prefix + key, [UInt8](value), "PX", ttl.pxMilliseconds) } catch { degradation.record(error) }
        case .memory(let memory):
            let now = ContinuousClock.now
            memory.entries.withLock { $0.set(key, value, until: now + ttl, now: now) }
        }
    }

    /// Runs `load` once for all concurrent callers of `key`. The run stores its result unless
    /// the key was invalidated meanwhile (and deletes it again if that happened while storing),
    /// and only then leaves the flight, so a caller arriving meanwhile joins it rather than
    /// loading again; a new flight looks in the cache once more before it loads, for the caller
    /// whose miss came just before the previous flight stored and whose flight just after it
    /// ended.
    private func singleFlight(
        _ key: String, ttl: Duration, usable: @escaping @Sendable (Data) -> Bool, _ load: @escaping @Sendable () async throws -> Data
    ) async throws -> Data {
        let flight = flights.withLock { running -> Flight in
            if let flight = running[key] { return flight }
            let box = FlightBox()
            let flight = Flight(task: Task { [self] in
                // Read under the lock: it was set in the critical section that made this task.
                let current = { self.flights.withLock { _ in box.flight } }
                do {
                    // A caller that missed just before the previous flight stored its value, and
                    // came here just after that flight ended, finds the value now: no second load.
                    // (A value that no longer decodes, written by an older version, is a miss.)
                    if let cached = await read(key), usable(cached) {
                        current().map { finish(key, $0) }
                        return cached
                    }
                    let data = try await load()
                    if let flight = current(), !flight.invalidated.load(ordering: .acquiring) {
                        await write(key, data, ttl: ttl)
                        if flight.invalidated.load(ordering: .acquiring) { await delete(key) }
                    }
                    current().map { finish(key, $0) }
                    return data
                } catch {
                    current().map { finish(key, $0) }
                    throw error
                }
            })
            box.flight = flight
            running[key] = flight
            return flight
        }
        return try await flight.task.value
    }

    /// Lets the task see its own flight; written and read only under `flights`' lock.
    private final class FlightBox: @unchecked Sendable {
        var flight: Flight?
    }

    private func finish(_ key: String, _ flight: Flight) {
        flights.withLock { running in
            if running[key] === flight { running[key] = nil }
        }
    }

    private func delete(_ key: String) async {
        switch store {
        case .redis(let redis): _ = try? await redis.send("DEL", prefix + key)
        case .memory(let memory): memory.entries.withLock { $0.remove(key) }
        }
    }
}
