public import RestartixKit
public import RestartixRedis
import Foundation
public import Logging
import Synchronization

/// "Have we seen this webhook delivery before?" across every instance: ``firstDelivery(provider:eventID:ttl:)``
/// is `true` exactly once per provider and event id (Svix's `svix-id`), however many times and
/// to however many instances the provider delivers it.
public protocol WebhookIdempotency: Sendable {
    /// `true` the first time `eventID` of `provider` is offered, `false` after. Throws only when
    /// neither Redis nor the database can answer: reply 5xx and the provider retries.
    func firstDelivery(provider: String, eventID: String, ttl: Duration) async throws -> Bool
}

/// Redis `SET NX` in front of the database's `inbound_webhook_events` (unique on provider and
/// event id).
///
/// - Redis says new: the database decides (`INSERT ... ON CONFLICT DO NOTHING`), so an event
///   first recorded while Redis was down, or after its key expired, is still seen once only.
///   When that insert fails, the Redis key is deleted again and the error is thrown.
/// - Redis says seen: the database is asked whether the event is recorded (one indexed read),
///   and it is recorded now if it is not: a claim left in Redis by an instance whose insert
///   failed (and whose delete failed too) never swallows the provider's retries.
/// - Redis down: the database alone decides, and `restartix_webhook_idempotency_fallback_total`
///   counts it.
public final class RedisWebhookIdempotency: WebhookIdempotency {
    private let redis: RedisClient
    private let database: Database
    private let prefix: String
    private let degradation: Degradation

    /// Idempotency on `redis` (keys `"\(prefix)\(provider):\(eventID)"`) and `database` (a
    /// role that may write `inbound_webhook_events`).
    public init(redis: RedisClient, database: Database, prefix: String = "webhook:", logger: Logger, logInterval: Duration = .seconds(60)) {
        self.redis = redis
        self.database = database
        self.prefix = prefix
        self.degradation = Degradation(
            logger: logger, metric: "restartix_webhook_idempotency_fallback_total",
            message: "Webhook idempotency falling back to the database: Redis could not be asked", interval: logInterval
        )
    }

    public func firstDelivery(provider: String, eventID: String, ttl: Duration) async throws -> Bool {
        try WebhookEvents.validate(provider: provider, eventID: eventID, ttl: ttl)
        let key = "\(prefix)\(provider):\(eventID)"
        let claimed: Bool
        do {
            claimed = try await redis.send("SET", key, "1", "NX", "PX", ttl.pxMilliseconds) != .null
        } catch {
            degradation.record(error)
            return try await WebhookEvents.record(provider: provider, eventID: eventID, in: database)
        }
        guard claimed else { return try await WebhookEvents.record(provider: provider, eventID: eventID, in: database) }
        do {
            return try await WebhookEvents.record(provider: provider, eventID: eventID, in: database)
        } catch {
            _ = try? await redis.send("DEL", key)
            throw error
        }
    }
}

/// `inbound_webhook_events` alone: exactly once across instances, one database write per
/// delivery. What ``RedisWebhookIdempotency`` falls back to.
public final class DatabaseWebhookIdempotency: WebhookIdempotency {
    private let database: Database

    /// Idempotency on `database`.
    public init(database: Database) { self.database = database }

    public func firstDelivery(provider: String, eventID: String, ttl: Duration) async throws -> Bool {
        try WebhookEvents.validate(provider: provider, eventID: eventID, ttl: ttl)
        return try await WebhookEvents.record(provider: provider, eventID: eventID, in: database)
    }
}

/// In this process's memory, for the embedded default without a database: one instance only,
/// and forgotten on restart.
public final class InProcessWebhookIdempotency: WebhookIdempotency {
    private let seen = Mutex(ExpiringMap<Void>(sweepAt: 100_000))

    /// An empty set of seen deliveries.
    public init() {}

    public func firstDelivery(provider: String, eventID: String, ttl: Duration) async throws -> Bool {
        try WebhookEvents.validate(provider: provider, eventID: eventID, ttl: ttl)
        let now = ContinuousClock.now, key = "\(provider):\(eventID)"
        return seen.withLock { seen in
            guard seen.value(key, now: now) == nil else { return false }
            seen.set(key, (), until: now + ttl, now: now)
            return true
        }
    }
}

enum WebhookEvents {
    static func validate(provider: String, eventID: String, ttl: Duration) throws(RedisError) {
        guard (1...64).contains(provider.utf8.count), (1...255).contains(eventID.utf8.count), ttl >= .milliseconds(1) else {
            throw RedisError(.invalidArgument, "a webhook event needs a provider (1-64 bytes), an event id (1-255 bytes) and a positive ttl")
        }
    }

    /// Inserts the event; `true` when this call inserted it.
    static func record(provider: String, eventID: String, in database: Database) async throws -> Bool {
        try await database.withConnection { connection in try await record(provider: provider, eventID: eventID, in: connection) }
    }

    /// Inserts the event on `executor`: a connection, or the transaction that applies the event
    /// (`processed`: stamped `processed_at`, and committed or rolled back with its effects, so a
    /// delivery is either applied and recorded or neither). `true` when this call inserted it.
    static func record(
        provider: String, eventID: String, eventType: String? = nil, processed: Bool = false, in executor: borrowing some SQLExecutor & ~Copyable
    ) async throws -> Bool {
        let processedAt: SQLQuery = processed ? executor.dialect.now : "NULL"
        return try await executor.execute("""
            INSERT INTO inbound_webhook_events (id, provider, event_id, event_type, processed_at) \
            VALUES (\(UUIDv7.generate()), \(provider), \(eventID), \(eventType), \(processedAt)) \
            ON CONFLICT (provider, event_id) DO NOTHING
            """) == 1
    }
}
