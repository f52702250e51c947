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

/// The debounce in Redis, shared by every instance, with what this process has learnt in front
/// of it.
///
/// One script round trip sets the principal's key for the interval when it is absent (this
/// request writes) and otherwise answers how long the key has left. Either way the process then
/// knows the key stands until a moment it can name, and answers `false` itself until then:
/// Redis could not answer anything else. So a busy user costs one Redis round trip per interval
/// per instance, not one per request, with the same answers. (The local expiry is measured from
/// before the round trip, so it never outlasts the key; a key deleted by hand is noticed at the
/// next expiry.)
public final class RedisActivityDebounce: ActivityDebounce {
    /// KEYS[1] the key, ARGV[1] the interval in milliseconds. Returns -1 when it set the key
    /// (write now), else the key's time left in milliseconds (`PTTL`: -2 if it has just gone).
    public static let script = RedisScript("""
        if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return -1 end
        return redis.call('PTTL', KEYS[1])
        """)

    private let redis: RedisClient
    private let prefix: String
    private let degradation: Degradation
    /// Principals whose key this process knows to stand, until when.
    private let standing = Mutex(ExpiringMap<Void>(sweepAt: 100_000))
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
        let now = ContinuousClock.now
        if standing.withLock({ $0.value(principal, now: now) != nil }) { return false }
        do {
            let answer = try await redis.evaluate(Self.script, keys: ["\(prefix)\(principal)"], arguments: [interval.pxMilliseconds])
            let write: Bool
            let left: Duration
            switch answer {
            case .integer(-1): (write, left) = (true, interval)
            case .integer(let milliseconds) where milliseconds > 0: (write, left) = (false, .milliseconds(milliseconds))
            default: (write, left) = (false, .zero)  // gone meanwhile, or a key without expiry
            }
            if left > .zero { standing.withLock { $0.set(principal, (), until: now + left, now: now) } }
            return write
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
