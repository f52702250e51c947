import RestartixKit
public import Logging
import Synchronization

/// "Write `last_activity` at most once per interval per principal": ``shouldWrite(principal:every:)``
/// answers `true` for the first request of each interval, `false` for the rest.
///
/// When Redis cannot be asked, ``RedisActivityDebounce`` answers from this process's memory
/// instead: each instance writes at most once per interval per user, so an outage costs a
/// write per instance, not one per request.
public protocol ActivityDebounce: Sendable {
    /// Whether this request should write the principal's activity now.
    func shouldWrite(principal: String, every interval: Duration) async -> Bool
}

/// The debounce in Redis: `SET key 1 NX PX interval`, one round trip, shared by every instance.
public final class RedisActivityDebounce: ActivityDebounce {
    private let redis: RedisClient
    private let prefix: String
    private let degradation: Degradation
    /// Answers while Redis cannot be asked.
    private let fallback = InProcessActivityDebounce()

    /// A debounce on `redis`, keys `"\(prefix)\(principal)"`.
    public init(redis: RedisClient, prefix: String = "activity:", logger: Logger, logInterval: Duration = .seconds(60)) {
        self.redis = redis
        self.prefix = prefix
        self.degradation = Degradation(
            logger: logger, metric: "restartix_activity_debounce_unavailable_total",
            message: "Activity debounce unavailable: every request writes its activity", interval: logInterval
        )
    }

    public func shouldWrite(principal: String, every interval: Duration) async -> Bool {
        do {
            return try await redis.send("SET", "\(prefix)\(principal)", "1", "NX", "PX", interval.pxMilliseconds) != .null
        } catch {
            degradation.record(error)
            return await fallback.shouldWrite(principal: principal, every: interval)
        }
    }
}

/// The debounce in this process's memory, for the embedded default: one instance only.
public final class InProcessActivityDebounce: ActivityDebounce {
    private let recent = Mutex(ExpiringMap<Void>(sweepAt: 100_000))

    /// An empty debounce.
    public init() {}

    public func shouldWrite(principal: String, every interval: Duration) async -> Bool {
        let now = ContinuousClock.now
        return recent.withLock { recent in
            guard recent.value(principal, now: now) == nil else { return false }
            recent.set(principal, (), until: now + interval, now: now)
            return true
        }
    }
}
