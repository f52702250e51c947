public import RestartixRedis
public import Foundation
public import Logging
import Metrics
public import RestartixKit
public import RestartixTenancy
public import ServiceLifecycle
import Synchronization

/// Resolves the provider for a capability: the clinic's override or the platform default,
/// decrypted, from a per-process cache.
///
/// - **TTL.** An entry lives 5 minutes (``Configuration/ttl``), jittered ±10% so a fleet that
///   booted together does not reload in lockstep.
/// - **Single flight.** However many callers ask for a key that is not cached, one database
///   read runs; the others wait for it.
/// - **Negative cache.** A capability with no row is remembered for 30 seconds
///   (``Configuration/negativeTTL``) and reported as ``ProviderError/Code/notFound``.
/// - **Stale if error.** When the database cannot be reached, the last good value is served for
///   up to ``Configuration/staleIfError`` past its expiry (counted, and logged once per
///   episode); after that, or with nothing cached, calls fail with ``ProviderError/Code/unavailable``.
///   While stale, the database is retried at most every ``Configuration/retryInterval``.
/// - **Invalidation.** ``invalidate(_:)`` drops a capability's entries here;
///   ``publishInvalidation(_:)`` also tells other instances over Redis pub/sub (they drop theirs
///   within milliseconds while ``run()`` is running). When Redis is down the TTL is the
///   guarantee. A load that was in flight when its capability was invalidated returns to its
///   callers but is not cached.
/// - **Metrics.** `restartix_provider_resolutions_total{result=hit|miss|negative|stale}` and
///   `restartix_provider_loads_total{result=ok|missing|error}`.
public final class ProviderResolver: Sendable, Service {
    /// Cache timing.
    public struct Configuration: Sendable {
        /// How long a loaded value is served before it is loaded again. Default 5 minutes.
        public var ttl: Duration = .seconds(300)
        /// The TTL is multiplied by a random factor in [1 − jitter, 1 + jitter]. Default 0.1;
        /// clamped to [0, 0.5].
        public var jitter: Double = 0.1
        /// How long "no such provider" is remembered. Default 30 seconds.
        public var negativeTTL: Duration = .seconds(30)
        /// How long past its expiry the last good value may be served while the database fails.
        /// Default 10 minutes; zero turns stale serving off.
        public var staleIfError: Duration = .seconds(600)
        /// While serving stale, how often a call tries the database again. Default 5 seconds.
        public var retryInterval: Duration = .seconds(5)
        /// The Redis channel carrying invalidations.
        public var invalidationChannel = "restartix:providers:invalidate"

        /// The defaults.
        public init() {}
    }

    struct Key: Hashable, Sendable {
        let capability: String
        let organization: UUID?
    }

    /// A cached answer: the record, or nil for "no such provider". A class, so the hit path
    /// copies one reference out of the lock, not the record.
    final class Cached: Sendable {
        let record: ProviderRecord?
        let expires: ContinuousClock.Instant
        let staleUntil: ContinuousClock.Instant
        /// Served past its TTL because the database failed (each serve counts as stale).
        let stale: Bool

        init(_ record: ProviderRecord?, expires: ContinuousClock.Instant, staleUntil: ContinuousClock.Instant, stale: Bool = false) {
            self.record = record
            self.expires = expires
            self.staleUntil = staleUntil
            self.stale = stale
        }
    }

    /// What a load gives its waiters: the value (or error), and whether it is a stale one.
    typealias Loaded = (result: Result<ProviderRecord, ProviderError>, stale: Bool)

    struct Entry: Sendable {
        var cached: Cached?
        var loading: Task<Loaded, Never>?
        /// Identifies the load in `loading`: a load that finishes after an invalidation detached
        /// it leaves the entry alone.
        var loadToken: UInt64 = 0
        /// Serving stale since (for the one log line per episode).
        var staleSince: ContinuousClock.Instant?
    }

    struct State: Sendable {
        var entries: [Key: Entry] = [:]
        /// Bumped by every invalidation of a capability ("" for all), so an in-flight load
        /// started before it does not refill the cache.
        var generations: [String: UInt64] = [:]
        var allGeneration: UInt64 = 0
        var nextToken: UInt64 = 0
    }

    /// What the resolver has done since it was made (the same events as its metrics).
    public struct Statistics: Sendable, Hashable {
        /// Calls answered from the cache.
        public var hits = 0
        /// Calls that waited for a load (their own or one in flight).
        public var misses = 0
        /// Calls answered "not found" from the negative cache.
        public var negativeHits = 0
        /// Calls answered with a value past its TTL because the database failed.
        public var staleServes = 0
        /// Database reads.
        public var loads = 0
        /// Database reads that failed.
        public var loadFailures = 0
        /// Invalidations received from other instances (Redis).
        public var invalidationsReceived = 0
    }

    /// The registry read on a miss.
    public let registry: ProviderRegistry
    /// The timing.
    public let configuration: Configuration
    private let redis: RedisClient?
    private let logger: Logger
    private let now: @Sendable () -> ContinuousClock.Instant
    private let state = Mutex(State())
    private final class Tallies: Sendable {
        let hits = Atomic<Int>(0), misses = Atomic<Int>(0), negativeHits = Atomic<Int>(0), staleServes = Atomic<Int>(0)
        let loads = Atomic<Int>(0), loadFailures = Atomic<Int>(0), invalidationsReceived = Atomic<Int>(0)
    }
    private let counters = Tallies()

    /// A snapshot of ``Statistics``.
    public var statistics: Statistics {
        Statistics(
            hits: counters.hits.load(ordering: .relaxed), misses: counters.misses.load(ordering: .relaxed),
            negativeHits: counters.negativeHits.load(ordering: .relaxed), staleServes: counters.staleServes.load(ordering: .relaxed),
            loads: counters.loads.load(ordering: .relaxed), loadFailures: counters.loadFailures.load(ordering: .relaxed),
            invalidationsReceived: counters.invalidationsReceived.load(ordering: .relaxed)
        )
    }
    private let hits = Counter(label: "restartix_provider_resolutions_total", dimensions: [("result", "hit")])
    private let misses = Counter(label: "restartix_provider_resolutions_total", dimensions: [("result", "miss")])
    private let negatives = Counter(label: "restartix_provider_resolutions_total", dimensions: [("result", "negative")])
    private let stales = Counter(label: "restartix_provider_resolutions_total", dimensions: [("result", "stale")])
    private let loadsOK = Counter(label: "restartix_provider_loads_total", dimensions: [("result", "ok")])
    private let loadsMissing = Counter(label: "restartix_provider_loads_total", dimensions: [("result", "missing")])
    private let loadsFailed = Counter(label: "restartix_provider_loads_total", dimensions: [("result", "error")])

    /// A resolver over `registry`; with `redis`, invalidations travel between instances (call
    /// ``run()``, or add the resolver to a service group, to receive them). `now` is the clock
    /// (tests inject one).
    public init(
        registry: ProviderRegistry,
        configuration: Configuration = Configuration(),
        redis: RedisClient? = nil,
        logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.registry = registry
        self.configuration = configuration
        self.redis = redis
        self.logger = logger
        self.now = now
    }

    /// The provider for `capability` as `organization` sees it (its override, else the platform
    /// default; nil asks for the platform default itself).
    public func provider(for capability: ProviderCapability, organization: UUID? = nil) async throws(ProviderError) -> ProviderRecord {
        let key = Key(capability: capability.name, organization: organization)
        let instant = now()
        enum Step {
            case cached(Cached)
            case wait(Task<Loaded, Never>)
        }
        let step = state.withLock { state -> Step in
            if let cached = state.entries[key]?.cached, instant < cached.expires { return .cached(cached) }
            var entry = state.entries[key] ?? Entry()
            defer { state.entries[key] = entry }
            // In an outage, a value still within its stale bound is served at once; the
            // database is tried again in the background, not by the callers.
            let staleServe = entry.staleSince != nil ? entry.cached.flatMap { $0.record != nil && instant < $0.staleUntil ? $0 : nil } : nil
            if let loading = entry.loading {
                return staleServe.map { .cached(Cached($0.record, expires: $0.expires, staleUntil: $0.staleUntil, stale: true)) } ?? .wait(loading)
            }
            state.nextToken &+= 1
            let token = state.nextToken
            let generation = (state.generations[key.capability] ?? 0, state.allGeneration)
            let task = Task { await self.load(key, capability: capability, generation: generation, token: token) }
            entry.loading = task
            entry.loadToken = token
            return staleServe.map { .cached(Cached($0.record, expires: $0.expires, staleUntil: $0.staleUntil, stale: true)) } ?? .wait(task)
        }
        switch step {
        case .cached(let cached):
            guard let record = cached.record else {
                counters.negativeHits.add(1, ordering: .relaxed)
                negatives.increment()
                throw Self.notFound(capability, organization)
            }
            if cached.stale {
                counters.staleServes.add(1, ordering: .relaxed)
                stales.increment()
            } else {
                counters.hits.add(1, ordering: .relaxed)
                hits.increment()
            }
            return record
        case .wait(let task):
            counters.misses.add(1, ordering: .relaxed)
            misses.increment()
            let loaded = await task.value
            if loaded.stale {
                counters.staleServes.add(1, ordering: .relaxed)
                stales.increment()
            }
            return try loaded.result.get()
        }
    }

    static func notFound(_ capability: ProviderCapability, _ organization: UUID?) -> ProviderError {
        ProviderError(.notFound, "no \(capability) provider is configured (no row for the capability\(organization == nil ? "" : ", the clinic's or the platform default"))")
    }

    /// One database read for `key`, then the cache updated (unless invalidated meanwhile).
    private func load(_ key: Key, capability: ProviderCapability, generation: (UInt64, UInt64), token: UInt64) async -> Loaded {
        let outcome: Result<ProviderRecord?, any Error>
        do { outcome = .success(try await registry.lookup(capability, organization: key.organization)) } catch { outcome = .failure(error) }
        let instant = now()
        let configuration = self.configuration
        enum Report { case none, staleStarted, staleEnded }
        var report = Report.none
        // What the read says, before any cache rule (a stale value) applies.
        let answer: Result<ProviderRecord, ProviderError>
        switch outcome {
        case .success(let record?): answer = .success(record)
        case .success(nil): answer = .failure(Self.notFound(capability, key.organization))
        case .failure(let error): answer = .failure(Self.failure(capability, error))
        }
        let loaded = state.withLock { state -> Loaded in
            var entry = state.entries[key] ?? Entry()
            // Detached by an invalidation: answer the callers that waited, touch nothing.
            guard entry.loadToken == token, entry.loading != nil else { return (answer, false) }
            entry.loading = nil
            let current = generation == (state.generations[key.capability] ?? 0, state.allGeneration)
            defer { state.entries[key] = entry }
            switch outcome {
            case .success(let record?):
                if entry.staleSince != nil { report = .staleEnded }
                entry.staleSince = nil
                if current {
                    let jitter = configuration.jitter.isFinite ? min(max(configuration.jitter, 0), 0.5) : 0
                    let factor = 1 + Double.random(in: -jitter...jitter)
                    let expires = instant + configuration.ttl * factor
                    entry.cached = Cached(record, expires: expires, staleUntil: expires + configuration.staleIfError)
                }
                return (answer, false)
            case .success(nil):
                entry.staleSince = nil
                if current { entry.cached = Cached(nil, expires: instant + configuration.negativeTTL, staleUntil: instant + configuration.negativeTTL) }
                return (answer, false)
            case .failure(let error):
                guard Self.isOutage(error) else {
                    // The row is there but unusable, or the database refused the read for a
                    // reason waiting will not fix: not an outage, never served stale.
                    return (answer, false)
                }
                if let cached = entry.cached, let record = cached.record, instant < cached.staleUntil {
                    if entry.staleSince == nil { report = .staleStarted }
                    entry.staleSince = entry.staleSince ?? instant
                    // Served without asking the database again for a little while.
                    let retry = min(instant + configuration.retryInterval, cached.staleUntil)
                    entry.cached = Cached(record, expires: retry, staleUntil: cached.staleUntil, stale: true)
                    return (.success(record), true)
                }
                return (answer, false)
            }
        }
        counters.loads.add(1, ordering: .relaxed)
        switch outcome {
        case .success(.some): loadsOK.increment()
        case .success(.none): loadsMissing.increment()
        case .failure:
            loadsFailed.increment()
            counters.loadFailures.add(1, ordering: .relaxed)
        }
        switch report {
        case .staleStarted:
            logger.warning("Provider registry unreachable: serving the cached provider", metadata: [
                "provider.capability": "\(capability)", "staleIfError": "\(configuration.staleIfError)",
            ])
        case .staleEnded:
            logger.notice("Provider registry reachable again", metadata: ["provider.capability": "\(capability)"])
        case .none:
            break
        }
        return loaded
    }

    /// Whether a failed read is the database being unreachable (served stale) rather than a
    /// refusal that waiting will not fix (a privilege, a row that does not decode).
    static func isOutage(_ error: any Error) -> Bool {
        if error is ProviderError { return false }
        guard let error = error as? DatabaseError else { return true }
        return [.connectionFailed, .connectionLost, .poolTimeout, .busy, .queryCanceled, .server].contains(error.code)
    }

    /// The typed error for a failed read.
    static func failure(_ capability: ProviderCapability, _ error: any Error) -> ProviderError {
        if let error = error as? ProviderError { return error }
        if isOutage(error) {
            return ProviderError(.unavailable, "the \(capability) provider cannot be loaded: the database is unreachable (\(reason(error)))")
        }
        return ProviderError(.unavailable, "the \(capability) provider cannot be loaded (\(reason(error)))")
    }

    /// A database error's code only (its text can quote SQL).
    static func reason(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return "\(error.code)" }
        return "\(type(of: error))"
    }

    /// Drops every cached entry of `capability` in this process.
    /// A load in flight is detached (its callers get its answer; later callers start a new
    /// read). The last good value stays only as the stale-if-error fallback.
    public func invalidate(_ capability: ProviderCapability) {
        let instant = now()
        state.withLock { state in
            state.generations[capability.name, default: 0] &+= 1
            for key in state.entries.keys where key.capability == capability.name { Self.expire(&state.entries[key]!, at: instant) }
        }
    }

    /// Drops every cached entry in this process (each kept only as a stale-if-error fallback).
    public func invalidateAll() {
        let instant = now()
        state.withLock { state in
            state.allGeneration &+= 1
            for key in state.entries.keys { Self.expire(&state.entries[key]!, at: instant) }
        }
    }

    private static func expire(_ entry: inout Entry, at instant: ContinuousClock.Instant) {
        entry.loading = nil
        if let cached = entry.cached, let record = cached.record {
            entry.cached = Cached(record, expires: instant, staleUntil: cached.staleUntil, stale: cached.stale)
        } else {
            entry.cached = nil
        }
    }

    /// Invalidates `capability` here and, over Redis, in every instance running ``run()``. A
    /// Redis failure is logged, not thrown: the TTL still bounds how long others serve the old
    /// value.
    public func publishInvalidation(_ capability: ProviderCapability) async {
        invalidate(capability)
        guard let redis else { return }
        do {
            _ = try await redis.send("PUBLISH", configuration.invalidationChannel, capability.name)
        } catch {
            logger.warning("Could not publish a provider invalidation; other instances converge within the TTL", metadata: [
                "provider.capability": "\(capability)", "error": "\(error.code)",
            ])
        }
    }

    /// Rotates a provider (``ProviderRegistry/rotate(_:organization:kind:config:secrets:expectedVersion:actor:admin:)``)
    /// and invalidates it everywhere.
    @discardableResult
    public func rotate(
        _ capability: ProviderCapability,
        organization: UUID?,
        kind: ProviderKind? = nil,
        config: [String: String]? = nil,
        secrets: ProviderSecrets? = nil,
        expectedVersion: Int? = nil,
        actor: PlatformActor,
        admin: AdminDatabase
    ) async throws -> ProviderRecord {
        let record = try await registry.rotate(
            capability, organization: organization, kind: kind, config: config, secrets: secrets,
            expectedVersion: expectedVersion, actor: actor, admin: admin
        )
        await publishInvalidation(capability)
        return record
    }

    /// Listens for invalidations from other instances until cancelled or graceful shutdown; a
    /// reconnect to Redis drops everything (messages in between are lost). Without Redis it just
    /// waits.
    public func run() async throws {
        guard let redis else {
            try? await gracefulShutdown()
            return
        }
        let subscription = try redis.subscribe(to: [configuration.invalidationChannel])
        await withGracefulShutdownHandler {
            for await event in subscription {
                switch event {
                case .message(_, let payload):
                    counters.invalidationsReceived.add(1, ordering: .relaxed)
                    let name = String(decoding: payload, as: UTF8.self)
                    if name == "*" {
                        invalidateAll()
                    } else if let capability = try? ProviderCapability(name) {
                        invalidate(capability)
                    }
                case .resubscribed:
                    invalidateAll()
                }
            }
        } onGracefulShutdown: {
            subscription.cancel()
        }
    }
}
