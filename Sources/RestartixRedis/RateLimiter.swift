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

/// One check of ``RateLimiter/check(_:)``: a request of `cost` by `principal` on `endpoint`.
public struct RateCheck: Sendable, Hashable {
    public var principal: String
    public var endpoint: String
    public var rate: RateLimit
    public var cost: Int

    /// A check of one request (`cost` 1 by default).
    public init(principal: String, endpoint: String, rate: RateLimit, cost: Int = 1) {
        self.principal = principal
        self.endpoint = endpoint
        self.rate = rate
        self.cost = cost
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

    /// Checks one request against several limits at once (a client address's and a user's),
    /// all or nothing: it counts against every one when each allows it, and against none when
    /// any refuses. One decision per check, in order; a check that would have allowed while
    /// another refused reports what it would have counted. Never throws (fails open as
    /// ``check(principal:endpoint:rate:cost:)`` does).
    ///
    /// The default runs the checks one after another and stops at the first refusal (the ones
    /// before it stay counted); the kit's limiters do it atomically, in one Redis round trip.
    func check(_ checks: [RateCheck]) async -> [RateLimitDecision]
}

extension RateLimiter {
    /// Checks one request of cost 1.
    public func check(principal: String, endpoint: String, rate: RateLimit) async -> RateLimitDecision {
        await check(principal: principal, endpoint: endpoint, rate: rate, cost: 1)
    }

    public func check(_ checks: [RateCheck]) async -> [RateLimitDecision] {
        var decisions: [RateLimitDecision] = []
        for check in checks {
            let decision = await self.check(principal: check.principal, endpoint: check.endpoint, rate: check.rate, cost: check.cost)
            decisions.append(decision)
            if !decision.allowed { break }
        }
        return decisions
    }
}

/// GCRA in Redis: one `EVALSHA` round trip per check (or per ``check(_:)`` of several limits),
/// atomic across every instance.
///
/// Redis down (or any error): the request is allowed, `restartix_ratelimit_fail_open_total` is
/// incremented, and a warning is logged at most once per `logInterval`.
public final class RedisRateLimiter: RateLimiter {
    /// The script: KEYS the keys; ARGV an (emission interval in µs, burst, cost) triple per
    /// key, then optionally the time in µs (tests; otherwise the server's clock). Counts the
    /// request against every key only when each allows it. Returns {allowed, remaining,
    /// retry_after_us, reset_after_us} per key, flattened.
    public static let script = RedisScript("""
        local n = #KEYS
        local now = tonumber(ARGV[3 * n + 1])
        if not now then
          local t = redis.call('TIME')
          now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        end
        local out, new_tats, all = {}, {}, true
        for i = 1, n do
          local interval = tonumber(ARGV[3 * i - 2])
          local burst = tonumber(ARGV[3 * i - 1])
          local cost = tonumber(ARGV[3 * i])
          local tat = tonumber(redis.call('GET', KEYS[i])) or now
          if tat < now then tat = now end
          local new_tat = tat + cost * interval
          local allow_at = new_tat - burst * interval
          if now < allow_at then
            all = false
            table.insert(out, 0); table.insert(out, 0); table.insert(out, allow_at - now); table.insert(out, tat - now)
          else
            new_tats[i] = new_tat
            table.insert(out, 1); table.insert(out, math.floor((now - allow_at) / interval)); table.insert(out, 0); table.insert(out, new_tat - now)
          end
        end
        if all then
          for i = 1, n do
            local ttl = math.ceil((new_tats[i] - now) / 1000) + 1
            -- A caller's clock (tests) is not the server's expiry clock: keep such keys longer.
            if ARGV[3 * n + 1] then ttl = ttl + 600000 end
            redis.call('SET', KEYS[i], string.format('%.0f', new_tats[i]), 'PX', ttl)
          end
        end
        return out
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
        await check([RateCheck(principal: principal, endpoint: endpoint, rate: rate, cost: cost)])[0]
    }

    public func check(_ checks: [RateCheck]) async -> [RateLimitDecision] {
        guard !checks.isEmpty else { return [] }
        var arguments: [any RedisArgument] = []
        for check in checks {
            guard let rate = try? check.rate.validated(), (1...rate.burst).contains(check.cost) else {
                misconfigured.record(
                    RedisError(.invalidArgument, "limit, burst and period must be positive and cost 1...burst"), metadata: ["endpoint": "\(check.endpoint)"]
                )
                return checks.map { .failedOpen($0.rate) }
            }
            arguments += [Int(rate.emissionInterval), rate.burst, check.cost]
        }
        do {
            let reply = try await redis.evaluate(
                Self.script, keys: checks.map { "\(prefix)\($0.endpoint):\($0.principal)" }, arguments: arguments + (clock.map { [Int($0())] } ?? [])
            )
            guard let values = reply.array?.compactMap(\.int), values.count == 4 * checks.count else {
                throw RedisError(.protocolError, "the rate-limit script answered another shape")
            }
            return checks.indices.map { index in
                let allowed = values[4 * index] == 1
                return RateLimitDecision(
                    allowed: allowed, limit: checks[index].rate.burst, remaining: values[4 * index + 1],
                    retryAfter: allowed ? nil : .microseconds(values[4 * index + 2]), resetAfter: .microseconds(values[4 * index + 3]), failedOpen: false
                )
            }
        } catch {
            degradation.record(error, metadata: ["endpoint": "\(checks.map(\.endpoint).joined(separator: ","))"])
            return checks.map { .failedOpen($0.rate) }
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
        await check([RateCheck(principal: principal, endpoint: endpoint, rate: rate, cost: cost)])[0]
    }

    public func check(_ checks: [RateCheck]) async -> [RateLimitDecision] {
        var rates: [RateLimit] = []
        for check in checks {
            guard let rate = try? check.rate.validated(), (1...rate.burst).contains(check.cost) else { return checks.map { .failedOpen($0.rate) } }
            rates.append(rate)
        }
        let now = clock()
        return state.withLock { state in
            state.checks += 1
            if state.checks % 10_000 == 0 { state.tats = state.tats.filter { $0.value > now } }
            var decisions: [RateLimitDecision] = []
            var counted: [(String, Int64)] = []
            for (check, rate) in zip(checks, rates) {
                let interval = rate.emissionInterval, burst = Int64(rate.burst), cost = Int64(check.cost)
                let key = "\(check.endpoint):\(check.principal)"
                let tat = max(state.tats[key] ?? now, now)
                let newTAT = tat + cost * interval
                let allowAt = newTAT - burst * interval
                if now < allowAt {
                    decisions.append(RateLimitDecision(
                        allowed: false, limit: rate.burst, remaining: 0, retryAfter: .microseconds(allowAt - now),
                        resetAfter: .microseconds(tat - now), failedOpen: false
                    ))
                } else {
                    counted.append((key, newTAT))
                    decisions.append(RateLimitDecision(
                        allowed: true, limit: rate.burst, remaining: Int((now - allowAt) / interval), retryAfter: nil,
                        resetAfter: .microseconds(newTAT - now), failedOpen: false
                    ))
                }
            }
            if counted.count == checks.count {
                for (key, tat) in counted { state.tats[key] = tat }
            }
            return decisions
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
