import Foundation
import Logging
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
        let environment = ProcessInfo.processInfo.environment
        guard let direct = environment["DATABASE_DIRECT_URL"], !direct.isEmpty else {
            fail("DATABASE_DIRECT_URL is not set: run `Scripts/services up && eval \"$(Scripts/services env)\"` first")
        }
        let seconds = Int(environment["BENCH_SECONDS"] ?? "10") ?? 10
        let clients = (environment["BENCH_CLIENTS"] ?? "1,8,32").split(separator: ",").compactMap { Int($0) }
        let pgbench = findPgbench()

        say("storage-benchmark: initializing pgbench_accounts (scale 1, 100000 rows)")
        try run(pgbench, ["-i", "-s", "1", "-q", direct])
        var targets: [(name: String, url: String)] = [("direct", direct)]
        if let bouncer = environment["DATABASE_URL"], !bouncer.isEmpty {
            // pgbench -S also reads pgbench_branches to find the scale.
            try run("psql", ["-q", "-c", "GRANT SELECT ON pgbench_accounts, pgbench_branches TO restartix_admin", direct])
            targets.append(("pgbouncer", bouncer))
        }

        say("limit: pgbench -S -M extended, same SQL, same client count, same server, same run; \(seconds) s each")
        say("kit: tasks on Swift's global executor (the default); kit+exec: tasks that prefer db.taskExecutor")
        say("cpu_us: user+system time per query of the client process alone (the server's is not counted)")
        say("target     clients  pgbench_tps    kit_tps  kit/pgbench  kit+exec_tps  kit+exec/pgbench  pgbench_cpu_us  kit_cpu_us  kit+exec_cpu_us")
        for target in targets {
            for n in clients {
                let childrenBefore = cpuSeconds(RUSAGE_CHILDREN)
                let limit = try pgbenchTPS(pgbench, url: target.url, clients: n, seconds: seconds)
                let pgbenchCPU = (cpuSeconds(RUSAGE_CHILDREN) - childrenBefore) / (limit * Double(seconds)) * 1e6
                var selfBefore = cpuSeconds(RUSAGE_SELF)
                let kit = try await kitTPS(url: target.url, clients: n, seconds: seconds, preferIOExecutor: false)
                let kitCPU = (cpuSeconds(RUSAGE_SELF) - selfBefore) / (kit * Double(seconds)) * 1e6
                selfBefore = cpuSeconds(RUSAGE_SELF)
                let pinned = try await kitTPS(url: target.url, clients: n, seconds: seconds, preferIOExecutor: true)
                let pinnedCPU = (cpuSeconds(RUSAGE_SELF) - selfBefore) / (pinned * Double(seconds)) * 1e6
                let line = String(
                    format: "%-9@ %8d %12.0f %10.0f %12.3f %13.0f %17.3f %15.1f %11.1f %16.1f",
                    target.name as NSString, n, limit, kit, kit / limit, pinned, pinned / limit, pgbenchCPU, kitCPU, pinnedCPU
                )
                say(line)
            }
        }
    }

    static func cpuSeconds(_ who: __rusage_who) -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(who.rawValue), &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = "

    static func kitTPS(url: String, clients: Int, seconds: Int, preferIOExecutor: Bool) async throws -> Double {
        var configuration = try DatabaseConfiguration(url: url)
        configuration.maximumConnections = clients
        var logger = Logger(label: "benchmark")
        logger.logLevel = .error
        let database = Database(configuration: configuration, logger: logger)
        // Open every connection before timing, as pgbench excludes connection time.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<clients { group.addTask { try await database.withConnection { _ = try await $0.query("SELECT 1") } } }
            try await group.waitForAll()
        }
        let deadline = ContinuousClock.now + .seconds(seconds)
        let started = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            let executor = preferIOExecutor ? database.taskExecutor : nil
            for _ in 0..<clients {
                group.addTask(executorPreference: executor) {
                    var count = 0
                    // A cheap generator, as pgbench's own: SystemRandomNumberGenerator would make
                    // a getrandom system call per query and charge it to the kit.
                    var random = SplitMix64(seed: UInt64.random(in: 1...UInt64.max))
                    while ContinuousClock.now < deadline {
                        let aid = Int.random(in: 1...100_000, using: &random)
                        let rows = try await database.query("SELECT abalance FROM pgbench_accounts WHERE aid = \(aid)")
                        precondition(rows.count == 1)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - started
        await database.shutdown()
        return Double(total) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    static func pgbenchTPS(_ pgbench: String, url: String, clients: Int, seconds: Int) throws -> Double {
        let output = try run(pgbench, ["-S", "-M", "extended", "-n", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)", url])
        // "tps = 12345.678901 (without initial connection time)"
        for line in output.split(separator: "\n") where line.hasPrefix("tps = ") {
            let number = line.dropFirst(6).prefix { $0.isNumber || $0 == "." }
            if let tps = Double(number) { return tps }
        }
        fail("could not read tps from pgbench output:\n\(output)")
    }

    static func findPgbench() -> String {
        for candidate in ["/usr/lib/postgresql/15/bin/pgbench", "/usr/bin/pgbench", "/usr/local/bin/pgbench"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return "pgbench"
    }

    /// Runs a tool and returns its output. Spawned with `posix_spawn` and an empty signal
    /// mask: Foundation's `Process` passes on the blocked signals of the Swift thread that
    /// starts it, and pgbench's `-T` timer (SIGALRM) then never fires.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { fail("pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, tool, &actions, &attributes, argv, environ)
        posix_spawn_file_actions_destroy(&actions)
        posix_spawnattr_destroy(&attributes)
        close(fds[1])
        guard rc == 0 else { fail("could not start \(tool) (error \(rc))") }
        let output = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile()
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        guard status == 0 else {
            // pgbench and psql echo connection strings in some errors: print only our own words.
            fail("\((tool as NSString).lastPathComponent) exited with status \(status)")
        }
        return String(decoding: output, as: UTF8.self)
    }

    /// Prints a line unbuffered, so progress shows when stdout is a pipe.
    static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("storage-benchmark: \(message)\n".utf8))
        exit(1)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): fast, good enough to pick rows.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
