import Foundation
import Logging
import BenchmarkSupport
import RestartixKit

/// Primary-key SELECT throughput through the kit's Postgres adapter, next to pgbench running the
/// identical SQL (`pgbench -S -M extended`: unnamed statements, as the kit sends) with the same
/// client count, in the same run, on the same server. Prints kit/pgbench ratios; absolute
/// figures on a shared 2-core machine are noise, the ratio is the result.
///
///     Scripts/services up && eval "$(Scripts/services env)"
///     RESTARTIX_BENCHMARKS=1 swift run -c release storage-benchmark
///
/// Environment: DATABASE_DIRECT_URL (owner role, direct; required), DATABASE_URL (admin role
/// through PgBouncer; optional, adds the PgBouncer rows), BENCH_SECONDS (default 10),
/// BENCH_CLIENTS (default "1,8,32").
@main
struct StorageBenchmark {
    static func main() async throws {
        Bench.name = "storage-benchmark"
        let environment = ProcessInfo.processInfo.environment
        guard let direct = environment["DATABASE_DIRECT_URL"], !direct.isEmpty else {
            Bench.fail("DATABASE_DIRECT_URL is not set: run `Scripts/services up && eval \"$(Scripts/services env)\"` first")
        }
        let seconds = Int(environment["BENCH_SECONDS"] ?? "10") ?? 10
        let clients = (environment["BENCH_CLIENTS"] ?? "1,8,32").split(separator: ",").compactMap { Int($0) }
        let pgbench = Bench.findPgbench()

        Bench.say("storage-benchmark: initializing pgbench_accounts (scale 1, 100000 rows)")
        try Bench.run(pgbench, ["-i", "-s", "1", "-q", direct])
        var targets: [(name: String, url: String)] = [("direct", direct)]
        if let bouncer = environment["DATABASE_URL"], !bouncer.isEmpty {
            // pgbench -S also reads pgbench_branches to find the scale.
            try Bench.run("psql", ["-q", "-c", "GRANT SELECT ON pgbench_accounts, pgbench_branches TO restartix_admin", direct])
            targets.append(("pgbouncer", bouncer))
        }

        Bench.say("limit: pgbench -S -M extended, same SQL, same client count, same server, same run; \(seconds) s each")
        Bench.say("kit: tasks on Swift's global executor (the default); kit+exec: tasks that prefer db.taskExecutor")
        Bench.say("cpu_us: user+system time per query of the client process alone (the server's is not counted)")
        Bench.say("target     clients  pgbench_tps    kit_tps  kit/pgbench  kit+exec_tps  kit+exec/pgbench  pgbench_cpu_us  kit_cpu_us  kit+exec_cpu_us")
        for target in targets {
            for n in clients {
                let childrenBefore = Bench.cpuSeconds(RUSAGE_CHILDREN)
                let limit = try pgbenchTPS(pgbench, url: target.url, clients: n, seconds: seconds)
                let pgbenchCPU = (Bench.cpuSeconds(RUSAGE_CHILDREN) - childrenBefore) / (limit * Double(seconds)) * 1e6
                var selfBefore = Bench.cpuSeconds(RUSAGE_SELF)
                let kit = try await kitTPS(url: target.url, clients: n, seconds: seconds, preferIOExecutor: false)
                let kitCPU = (Bench.cpuSeconds(RUSAGE_SELF) - selfBefore) / (kit * Double(seconds)) * 1e6
                selfBefore = Bench.cpuSeconds(RUSAGE_SELF)
                let pinned = try await kitTPS(url: target.url, clients: n, seconds: seconds, preferIOExecutor: true)
                let pinnedCPU = (Bench.cpuSeconds(RUSAGE_SELF) - selfBefore) / (pinned * Double(seconds)) * 1e6
                let line = String(
                    format: "%-9@ %8d %12.0f %10.0f %12.3f %13.0f %17.3f %15.1f %11.1f %16.1f",
                    target.name as NSString, n, limit, kit, kit / limit, pinned, pinned / limit, pgbenchCPU, kitCPU, pinnedCPU
                )
                Bench.say(line)
            }
        }
    }

    static let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = "

    static func kitTPS(url: String, clients: Int, seconds: Int, preferIOExecutor: Bool) async throws -> Double {
        var configuration = try DatabaseConfiguration(url: url)
        configuration.maximumConnections = clients
        var logger = Logger(label: "benchmark")
        logger.logLevel = .error
        let database = Database(configuration: configuration, logger: logger)
        try await Bench.concurrently(clients) { try await database.withConnection { _ = try await $0.query("SELECT 1") } }
        let tps = try await Bench.throughput(
            clients: clients,
            seconds: seconds,
            executor: preferIOExecutor ? database.taskExecutor : nil
        ) { random in
            let aid = Int.random(in: 1...100_000, using: &random)
            let rows = try await database.query("SELECT abalance FROM pgbench_accounts WHERE aid = \(aid)")
            precondition(rows.count == 1)
        }
        await database.shutdown()
        return tps
    }

    static func pgbenchTPS(_ pgbench: String, url: String, clients: Int, seconds: Int) throws -> Double {
        let output = try Bench.run(pgbench, ["-S", "-M", "extended", "-n", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)", url])
        // "tps = 12345.678901 (without initial connection time)"
        for line in output.split(separator: "\n") where line.hasPrefix("tps = ") {
            let number = line.dropFirst(6).prefix { $0.isNumber || $0 == "." }
            if let tps = Double(number) { return tps }
        }
        Bench.fail("could not read tps from pgbench output:\n\(output)")
    }
}
