public import Foundation

/// What every benchmark here shares: running the limit tool (pgbench) beside the kit in the
/// same run, process CPU time, a cheap random generator, and output.
public enum Bench {
    /// The benchmark's name, for messages.
    nonisolated(unsafe) public static var name = "benchmark"

    public static func cpuSeconds(_ who: __rusage_who) -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(who.rawValue), &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Runs `body` once in each of `clients` concurrent tasks: a warm-up that opens every pooled
    /// connection before timing, as pgbench excludes connection time.
    public static func concurrently(_ clients: Int, _ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<clients { group.addTask { try await body() } }
            try await group.waitForAll()
        }
    }

    /// Runs `clients` concurrent tasks for `seconds`, each calling `operation` in a loop (with its
    /// own cheap random generator), on `executor` when given. Returns operations per second.
    public static func throughput(
        clients: Int,
        seconds: Int,
        executor: (any TaskExecutor)?,
        _ operation: @escaping @Sendable (inout SplitMix64) async throws -> Void
    ) async throws -> Double {
        let started = ContinuousClock.now
        let deadline = started + .seconds(seconds)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<clients {
                group.addTask(executorPreference: executor) {
                    var count = 0
                    var random = SplitMix64(seed: UInt64.random(in: 1...UInt64.max))
                    while ContinuousClock.now < deadline {
                        try await operation(&random)
                        count += 1
                    }
                    return count
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = ContinuousClock.now - started
        return Double(total) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    public static func findPgbench() -> String {
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
    public static func run(_ tool: String, _ arguments: [String]) throws -> String {
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
    /// The environment variable `name`, or the run ends saying how to set the local services'.
    public static func environment(_ name: String) -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            fail("\(name) is not set: run `Scripts/services up && eval \"$(Scripts/services env)\"` first")
        }
        return value
    }

    /// pgbench's form of a statement rendered with binds `$1...$n`: each non-empty value a
    /// `-D pK=value` variable (`:pK` in the statement), an empty one `''` in place.
    public static func pgbenchVariables(_ sql: String, _ values: [String]) -> (sql: String, arguments: [String]) {
        var sql = sql
        var arguments: [String] = []
        for k in stride(from: values.count, through: 1, by: -1) {
            sql = sql.replacingOccurrences(of: "$\(k)", with: values[k - 1].isEmpty ? "''" : ":p\(k)")
            if !values[k - 1].isEmpty { arguments += ["-D", "p\(k)=\(values[k - 1])"] }
        }
        return (sql, arguments)
    }

    public static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("\(name): \(message)\n".utf8))
        exit(1)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): fast, good enough to pick rows. SystemRandomNumberGenerator
/// would make a getrandom system call per query and charge it to the kit.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
