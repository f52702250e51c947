import RestartixKit
public import Logging
import Metrics
import Synchronization

/// A rate: `limit` requests per `period`, with bursts of up to `burst` requests at once.
public struct RateLimit: Sendable, Hashable {
    /// Requests per period on average.
    public var limit: Int
    /// The period.
    public var period: Duration
    /// Requests that may arrive at once after a quiet spell. Default: `limit`.
    public var burst: Int

    /// `limit` requests per `period`, bursts up to `burst` (default `limit`).
    public init(_ limit: Int, per period: Duration, burst: Int? = nil) {
        self.limit = limit
        self.period = period
        self.burst = burst ?? limit
    }

    /// The emission interval T = period / limit, in microseconds (at least 1).
    var emissionInterval: Int64 {
        max(1, period.microseconds / Int64(max(limit, 1)))
    }

    func validated() throws(RedisError) -> RateLimit {
        guard limit >= 1, burst >= 1, period >= .milliseconds(1), period <= .seconds(86_400 * 366) else {
            throw RedisError(.invalidArgument, "a rate limit needs limit >= 1, burst >= 1 and a period of 1 ms to a year")
        }
        return self
    }
}

/// The answer to one rate-limit check, with what the `RateLimit-*` and `Retry-After` headers
/// need.
public struct RateLimitDecision: Sendable, Hashable {
    /// Whether the request may go ahead.
    public let allowed: Bool
    /// The rate's burst: the most requests allowed at once.
    public let limit: Int
    /// Requests that could still go ahead right now.
    public let remaining: Int
    /// When denied, how long until this request would be allowed.
    public let retryAfter: Duration?
    /// How long until the limiter is back to a full burst.
    public let resetAfter: Duration
    /// The limiter could not be asked (Redis down) and allowed the request: fail open.
    public let failedOpen: Bool

    /// A decision (for other ``RateLimiter`` implementations and test doubles).
    public init(allowed: Bool, limit: Int, remaining: Int, retryAfter: Duration?, resetAfter: Duration, failedOpen: Bool) {
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.retryAfter = retryAfter
        self.resetAfter = resetAfter
        self.failedOpen = failedOpen
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds, rounded up) and,
    /// when denied, `Retry-After` (seconds, rounded up). Nothing when the check failed open.
    public var headers: [(name: String, value: String)] {
        guard !failedOpen else { return [] }
        func seconds(_ duration: Duration) -> String {
            let (whole, fraction) = duration.components
            return "\(max(0, whole + (fraction > 0 ? 1 : 0)))"
        }
        var headers = [("RateLimit-Limit", "\(limit)"), ("RateLimit-Remaining", "\(remaining)"), ("RateLimit-Reset", seconds(resetAfter))]
        if let retryAfter { headers.append(("Retry-After", seconds(retryAfter))) }
        return headers.map { (name: $0.0, value: $0.1) }
    }
}

/// Rate limiting keyed by principal and endpoint.
///
/// The model is GCRA, the generic cell rate algorithm (as redis-cell and redis_rate use it):
/// each key keeps one number, its theoretical arrival time (TAT). A request of cost c at time
/// `now` is allowed when `max(TAT, now) + c*T - now <= burst*T`, with T = period / limit, and
/// then moves TAT to `max(TAT, now) + c*T`. So after a quiet spell `burst` requests pass at
/// once, then one every T, exactly: over any window of length W a key gets at most
/// `burst + W/T` requests, with no window-boundary doubling as fixed windows have. Times are
/// whole microseconds of the Redis server's clock, so every instance shares one clock.
public protocol RateLimiter: Sendable {
    /// Checks (and, when allowed, counts) one request of `cost` (1...burst) by `principal` on
    /// `endpoint`. Never throws: when the limiter cannot be asked, or the rate or cost is out of
    /// range, the request is allowed and the decision says `failedOpen`.
    func check(principal: String, endpoint: String, rate: RateLimit, cost: Int) async -> RateLimitDecision
}

extension RateLimiter {
    /// Checks one request of cost 1.
    public func check(principal: String, endpoint: String, rate: RateLimit) async -> RateLimitDecision {
        await check(principal: principal, endpoint: endpoint, rate: rate, cost: 1)
    }
}

/// GCRA in Redis: one `EVALSHA` round trip per check, atomic across every instance.
///
/// Redis down (or any error): the request is allowed, `restartix_ratelimit_fail_open_total` is
/// incremented, and a warning is logged at most once per `logInterval`.
public final class RedisRateLimiter: RateLimiter {
    /// The script: KEYS[1] the key; ARGV emission interval (µs), burst, cost, and optionally
    /// the time in µs (tests; otherwise the server's clock). Returns {allowed, remaining,
    /// retry_after_us, reset_after_us}.
    public static let script = RedisScript("""
        local now = tonumber(ARGV[4])
        if not now then
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        end
        local interval = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local tat = tonumber(redis.call('GET', KEYS[1])) or now
        if tat < now then tat = now end
        local new_tat = tat + cost * interval
        local allow_at = new_tat - burst * interval
        if now < allow_at then
          return {0, 0, allow_at - now, tat - now}
        end
        local ttl = math.ceil((new_tat - now) / 1000) + 1
        -- A caller's clock (tests) is not the server's expiry clock: keep such keys longer.
        if ARGV[4] then ttl = ttl + 600000 end
        redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
        return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
        """)

    private let redis: RedisClient
    private let prefix: String
    private let logger: Logger
    private let degradation: Degradation
    private let misconfigured: Degradation
    private let clock: (@Sendable () -> Int64)?

    /// A limiter on `redis`, keys `"\(prefix)\(endpoint):\(principal)"`, on Redis's clock.
    public convenience init(redis: RedisClient, prefix: String = "ratelimit:", logger: Logger, logInterval: Duration = .seconds(60)) {
        self.init(redis: redis, prefix: prefix, logger: logger, logInterval: logInterval, clock: nil)
    }

    /// `clock` (microseconds) replaces the server's clock: for tests of the model.
    init(redis: RedisClient, prefix: String, logger: Logger, logInterval: Duration, clock: (@Sendable () -> Int64)?) {
        self.clock = clock
        self.redis = redis
        self.prefix = prefix
        self.logger = logger
        self.degradation = Degradation(
            logger: logger, metric: "restartix_ratelimit_fail_open_total",
            message: "Rate limiting failed open: Redis could not be asked", interval: logInterval
        )
        self.misconfigured = Degradation(
            logger: logger, metric: "restartix_ratelimit_misconfigured_total",
            message: "Rate limit misconfigured (allowing): limit, burst and period must be positive and cost 1...burst", interval: logInterval
        )
    }

    public func check(principal: String, endpoint: String, rate: RateLimit, cost: Int = 1) async -> RateLimitDecision {
        guard let rate = try? rate.validated(), (1...rate.burst).contains(cost) else {
            misconfigured.record(RedisError(.invalidArgument, "limit, burst and period must be positive and cost 1...burst"), metadata: ["endpoint": "\(endpoint)"])
            return .failedOpen(rate)
        }
        let interval = rate.emissionInterval
        do {
            let reply = try await redis.evaluate(
                Self.script, keys: ["\(prefix)\(endpoint):\(principal)"],
                arguments: [Int(interval), rate.burst, cost] + (clock.map { [Int($0())] } ?? [])
            )
            guard let values = reply.array?.compactMap(\.int), values.count == 4 else {
                throw RedisError(.protocolError, "the rate-limit script answered another shape")
            }
            return RateLimitDecision(
                allowed: values[0] == 1, limit: rate.burst, remaining: values[1],
                retryAfter: values[0] == 1 ? nil : .microseconds(values[2]), resetAfter: .microseconds(values[3]), failedOpen: false
            )
        } catch {
            degradation.record(error, metadata: ["endpoint": "\(endpoint)"])
            return .failedOpen(rate)
        }
    }
}

/// GCRA in this process's memory, for the embedded default (no Redis configured): the same
/// model and answers as ``RedisRateLimiter``, for one instance only — every instance would
/// count on its own. Idle keys are dropped once they are back to a full burst.
public final class InProcessRateLimiter: RateLimiter {
    private struct State {
        var tats: [String: Int64] = [:]
        var checks = 0
    }

    private let state = Mutex(State())
    private let clock: @Sendable () -> Int64

    /// A limiter on the process's monotonic clock, or on `clock` (microseconds) in tests.
    public init(clock: (@Sendable () -> Int64)? = nil) {
        self.clock = clock ?? {
            (ContinuousClock.now - ContinuousClock.Instant.zeroReference).microseconds
        }
    }

    public func check(principal: String, endpoint: String, rate: RateLimit, cost: Int = 1) async -> RateLimitDecision {
        guard let rate = try? rate.validated(), (1...rate.burst).contains(cost) else { return .failedOpen(rate) }
        let interval = rate.emissionInterval, burst = Int64(rate.burst), cost = Int64(cost)
        let key = "\(endpoint):\(principal)"
        let now = clock()
        return state.withLock { state in
            state.checks += 1
            if state.checks % 10_000 == 0 { state.tats = state.tats.filter { $0.value > now } }
            let tat = max(state.tats[key] ?? now, now)
            let newTAT = tat + cost * interval
            let allowAt = newTAT - burst * interval
            guard now >= allowAt else {
                return RateLimitDecision(
                    allowed: false, limit: rate.burst, remaining: 0, retryAfter: .microseconds(allowAt - now),
                    resetAfter: .microseconds(tat - now), failedOpen: false
                )
            }
            state.tats[key] = newTAT
            return RateLimitDecision(
                allowed: true, limit: rate.burst, remaining: Int((now - allowAt) / interval), retryAfter: nil,
                resetAfter: .microseconds(newTAT - now), failedOpen: false
            )
        }
    }
}

extension ContinuousClock.Instant {
    /// A fixed instant to measure the in-process clock from.
    fileprivate static let zeroReference = ContinuousClock.now
}

extension RateLimitDecision {
    static func failedOpen(_ rate: RateLimit) -> RateLimitDecision {
        RateLimitDecision(allowed: true, limit: rate.burst, remaining: rate.burst, retryAfter: nil, resetAfter: .zero, failedOpen: true)
    }
}

/// What a Redis-backed service does each time Redis cannot be asked and it degrades: counts it
/// in `metric`, and logs `message` as a warning at most once per interval (a degraded
/// dependency must not flood the logs).
package struct Degradation: Sendable {
    private let logger: Logger
    private let counter: Counter
    private let throttle: LogThrottle
    private let message: String

    package init(logger: Logger, metric: String, message: String, interval: Duration) {
        self.logger = logger
        self.counter = Counter(label: metric)
        self.throttle = LogThrottle(interval: interval)
        self.message = message
    }

    package func record(_ error: any Error, metadata: Logger.Metadata = [:]) {
        counter.increment()
        if throttle.shouldLog() { logger.warning("\(message)", metadata: metadata.merging(["error": "\(error)"]) { $1 }) }
    }
}

/// Allows one log line per interval.
final class LogThrottle: Sendable {
    private let interval: Duration
    private let last = Mutex<ContinuousClock.Instant?>(nil)

    init(interval: Duration) { self.interval = interval }

    func shouldLog(now: ContinuousClock.Instant = .now) -> Bool {
        last.withLock { last in
            if let previous = last, now - previous < interval { return false }
            last = now
            return true
        }
    }
}
