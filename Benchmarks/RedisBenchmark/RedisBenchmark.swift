import BenchmarkSupport
import Foundation
import Logging
import RestartixRedis
import RestartixKit

/// Rate-limit checks per second from 50 concurrent tasks (`RedisRateLimiter.check`, one EVALSHA
/// of the GCRA script each), beside `redis-benchmark` running the same script by EVALSHA with the
/// same arguments and 50 clients against the same server in the same run. Keys are spread over
/// 100,000 principals on both sides. Target >= 0.8.
@main
struct RedisBenchmark {
    static func main() async throws {
        Bench.name = "redis-services-benchmark"
        let environment = ProcessInfo.processInfo.environment
        guard let url = environment["REDIS_URL"], !url.isEmpty else {
            Bench.fail("REDIS_URL is not set: Scripts/services up && eval \"$(Scripts/services env)\"")
        }
        let seconds = Int(environment["BENCH_SECONDS"] ?? "5") ?? 5
        let clients = Int(environment["BENCH_CLIENTS"] ?? "50") ?? 50
        var configuration = try RedisConfiguration(url: url)
        configuration.connectionCount = Int(environment["BENCH_CONNECTIONS"] ?? "2") ?? 2
        let redis = try RedisClient(configuration: configuration, logger: Logger(label: "bench"))
        defer { redis.shutdown() }
        let limiter = RedisRateLimiter(redis: redis, logger: Logger(label: "bench"))
        // 1,000 per second per key, bursts of a million: the allowed path (GET, SET) every time.
        let rate = RateLimit(1000, per: .seconds(1), burst: 1_000_000)
        let sha = try await redis.send("SCRIPT", "LOAD", RedisRateLimiter.script.source).string ?? ""

        Bench.say("redis-services-benchmark: \(clients) clients, \(seconds) s per side, \(configuration.connectionCount) kit connections; limit = redis-benchmark EVALSHA, same script and arguments, same run")
        let tool = try Bench.run(findRedisBenchmark(), [
            "-h", configuration.host, "-p", "\(configuration.port)", "-c", "\(clients)", "-n", "\(clients * 2000 * seconds)",
            "-r", "100000", "--csv", "EVALSHA", sha, "1", "ratelimit:bench:e:__rand_int__", "\(rate.emissionIntervalMicros)", "\(rate.burst)", "1",
        ])
        guard let limit = parseRequestsPerSecond(tool) else { Bench.fail("could not read redis-benchmark's output:\n\(tool)") }

        // Warm up: every pooled connection open, the script cached.
        try await Bench.concurrently(clients) { _ = await limiter.check(principal: "warm", endpoint: "e", rate: rate) }
        let cpuBefore = Bench.cpuSeconds(RUSAGE_SELF)
        let started = ContinuousClock.now
        let kit = try await Bench.throughput(clients: clients, seconds: seconds, executor: nil) { random in
            let decision = await limiter.check(principal: "\(random.next() % 100_000)", endpoint: "bench:e", rate: rate)
            precondition(!decision.failedOpen, "the benchmark failed open: Redis is unreachable")
        }
        let elapsed = ContinuousClock.now - started
        let cpu = Bench.cpuSeconds(RUSAGE_SELF) - cpuBefore
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        Bench.say("  redis_benchmark_evalsha/s  kit_checks/s  kit/redis_benchmark  kit_cpu_us/check")
        Bench.say(String(format: "  %25.0f %13.0f %20.3f %17.1f", limit, kit, kit / limit, cpu / (kit * wall) * 1e6))
    }

    static func findRedisBenchmark() -> String {
        ["/usr/bin/redis-benchmark", "/usr/local/bin/redis-benchmark"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "redis-benchmark"
    }

    /// The rps column of `redis-benchmark --csv` (`"test","rps",...`).
    static func parseRequestsPerSecond(_ output: String) -> Double? {
        for line in output.split(separator: "\n") where line.hasPrefix("\"EVALSHA") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if fields.count > 1, let rps = Double(fields[1]) { return rps }
        }
        return nil
    }
}

extension RateLimit {
    /// The emission interval in microseconds, as the script takes it.
    var emissionIntervalMicros: Int {
        let (seconds, attoseconds) = period.components
        return Int((seconds * 1_000_000 + attoseconds / 1_000_000_000_000) / Int64(limit))
    }
}
