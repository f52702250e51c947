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
        /// The TTL is multiplied by a random factor in [1 − jitter, 1 + jitter]. Default 0.1.
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

        init(_ record: ProviderRecord?, expires: ContinuousClock.Instant, staleUntil: ContinuousClock.Instant) {
            self.record = record
            self.expires = expires
            self.staleUntil = staleUntil
        }
    }

    struct Entry: Sendable {
        var cached: Cached?
        var loading: Task<Result<ProviderRecord, ProviderError>, Never>?
        /// Serving stale since (for the one log line per episode).
        var staleSince: ContinuousClock.Instant?
    }

    struct State: Sendable {
        var entries: [Key: Entry] = [:]
        /// Bumped by every invalidation of a capability ("" for all), so an in-flight load
        /// started before it does not refill the cache.
        var generations: [String: UInt64] = [:]
        var allGeneration: UInt64 = 0
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
            case wait(Task<Result<ProviderRecord, ProviderError>, Never>)
        }
        let step = state.withLock { state -> Step in
            if let cached = state.entries[key]?.cached, instant < cached.expires { return .cached(cached) }
            var entry = state.entries[key] ?? Entry()
            if let loading = entry.loading { return .wait(loading) }
            let generation = (state.generations[key.capability] ?? 0, state.allGeneration)
            let task = Task { await self.load(key, capability: capability, generation: generation) }
            entry.loading = task
            state.entries[key] = entry
            return .wait(task)
        }
        switch step {
        case .cached(let cached):
            guard let record = cached.record else {
                counters.negativeHits.add(1, ordering: .relaxed)
                negatives.increment()
                throw Self.notFound(capability, organization)
            }
            counters.hits.add(1, ordering: .relaxed)
            hits.increment()
            return record
        case .wait(let task):
            counters.misses.add(1, ordering: .relaxed)
            misses.increment()
            return try await task.value.get()
        }
    }

    static func notFound(_ capability: ProviderCapability, _ organization: UUID?) -> ProviderError {
        ProviderError(.notFound, "no \(capability) provider is configured (no row for the capability\(organization == nil ? "" : ", the clinic's or the platform default"))")
    }

    /// One database read for `key`, then the cache updated (unless invalidated meanwhile).
    private func load(_ key: Key, capability: ProviderCapability, generation: (UInt64, UInt64)) async -> Result<ProviderRecord, ProviderError> {
        let outcome: Result<ProviderRecord?, any Error>
        do { outcome = .success(try await registry.lookup(capability, organization: key.organization)) } catch { outcome = .failure(error) }
        let instant = now()
        let configuration = self.configuration
        enum Report { case none, staleStarted, staleEnded }
        var report = Report.none
        let result = state.withLock { state -> Result<ProviderRecord, ProviderError> in
            var entry = state.entries[key] ?? Entry()
            entry.loading = nil
            let current = generation == (state.generations[key.capability] ?? 0, state.allGeneration)
            defer { state.entries[key] = entry }
            switch outcome {
            case .success(let record?):
                if entry.staleSince != nil { report = .staleEnded }
                entry.staleSince = nil
                if current {
                    let factor = 1 + Double.random(in: -configuration.jitter...configuration.jitter)
                    let expires = instant + configuration.ttl * factor
                    entry.cached = Cached(record, expires: expires, staleUntil: expires + configuration.staleIfError)
                }
                return .success(record)
            case .success(nil):
                entry.staleSince = nil
                if current { entry.cached = Cached(nil, expires: instant + configuration.negativeTTL, staleUntil: instant + configuration.negativeTTL) }
                return .failure(Self.notFound(capability, key.organization))
            case .failure(let error):
                if let providerError = error as? ProviderError, providerError.code != .unavailable {
                    // The row is there but unusable (does not decrypt, does not decode): not an outage.
                    return .failure(providerError)
                }
                if let cached = entry.cached, let record = cached.record, instant < cached.staleUntil {
                    if entry.staleSince == nil { report = .staleStarted }
                    entry.staleSince = entry.staleSince ?? instant
                    // Serve it without asking the database again for a little while.
                    let retry = min(instant + configuration.retryInterval, cached.staleUntil)
                    entry.cached = Cached(record, expires: retry, staleUntil: cached.staleUntil)
                    return .success(record)
                }
                return .failure(ProviderError(.unavailable, "the \(capability) provider cannot be loaded: the database is unreachable (\(Self.reason(error)))"))
            }
        }
        counters.loads.add(1, ordering: .relaxed)
        switch (outcome, result) {
        case (.success(.some), _): loadsOK.increment()
        case (.success(.none), _): loadsMissing.increment()
        case (.failure, .success):
            loadsFailed.increment()
            stales.increment()
            counters.loadFailures.add(1, ordering: .relaxed)
            counters.staleServes.add(1, ordering: .relaxed)
        case (.failure, .failure):
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
        return result
    }

    /// A database error's code only (its text can quote SQL).
    static func reason(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return "\(error.code)" }
        return "\(type(of: error))"
    }

    /// Drops every cached entry of `capability` in this process.
    public func invalidate(_ capability: ProviderCapability) {
        state.withLock { state in
            state.generations[capability.name, default: 0] &+= 1
            for key in state.entries.keys where key.capability == capability.name { state.entries[key]?.cached = nil }
        }
    }

    /// Drops every cached entry in this process.
    public func invalidateAll() {
        state.withLock { state in
            state.allGeneration &+= 1
            for key in state.entries.keys { state.entries[key]?.cached = nil }
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
