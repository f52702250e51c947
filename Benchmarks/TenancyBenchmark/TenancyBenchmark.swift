import BenchmarkSupport
import Foundation
import Logging
import RestartixPlatform
import RestartixKit
import RestartixTenancy
import Synchronization

/// A tenant-scoped primary-key read transaction through PgBouncer, beside pgbench running the
/// identical transaction (the kit's own BEGIN and context statement, rendered; SELECT; COMMIT) in the same run, with
/// the same client count, as the same app role, under the same row-level security: once naive
/// (4 round trips) and once inside `\startpipeline` / `\endpipeline` (1 round trip).
///
///     Scripts/services up && eval "$(Scripts/services env)"
///     RESTARTIX_BENCHMARKS=1 swift run -c release tenancy-benchmark
///
/// Environment: DATABASE_DIRECT_URL (owner: migrations), DATABASE_ADMIN_DIRECT_URL (fixture),
/// DATABASE_APP_URL (app role through PgBouncer: the measured path); BENCH_SECONDS (default 10),
/// BENCH_CLIENTS (default "1,8,32").
@main
struct TenancyBenchmark {
    static let organization = "00000000-0000-7000-8000-0000000b0000"
    static let user = "00000000-0000-7000-8000-0000000b0001"
    static let rows = 100_000
    /// pgbench's `-D` arguments for the context statement's binds.
    nonisolated(unsafe) static var contextBinds: [String] = []

    /// The body statement, shared by both sides; `$1` is a row number.
    static let select = "SELECT name FROM patients WHERE id = ('00000000-0000-7000-8000-' || lpad(to_hex("
    static let selectTail = "::integer), 12, '0'))::uuid"

    static func main() async throws {
        Bench.name = "tenancy-benchmark"
        let environment = ProcessInfo.processInfo.environment
        func require(_ name: String) -> String {
            guard let value = environment[name], !value.isEmpty else {
                Bench.fail("\(name) is not set: run `Scripts/services up && eval \"$(Scripts/services env)\"` first")
            }
            return value
        }
        let owner = require("DATABASE_DIRECT_URL")
        let admin = require("DATABASE_ADMIN_DIRECT_URL")
        let appURL = require("DATABASE_APP_URL")
        let seconds = Int(environment["BENCH_SECONDS"] ?? "10") ?? 10
        let clients = (environment["BENCH_CLIENTS"] ?? "1,8,32").split(separator: ",").compactMap { Int($0) }
        let pgbench = Bench.findPgbench()
        var logger = Logger(label: "benchmark")
        logger.logLevel = .error

        Bench.say("tenancy-benchmark: migrating and seeding one clinic with \(rows) patients")
        let ownerDB = try Database(url: owner, logger: logger)
        _ = try await Migrator(platformSchemaOn: ownerDB, logger: logger).migrate()
        await ownerDB.shutdown()
        try Bench.run("psql", ["-q", "-v", "ON_ERROR_STOP=1", "-c", """
            BEGIN;
            SELECT set_config('app.unscoped', 'on', true);
            INSERT INTO organizations (id, slug, name) VALUES ('\(organization)', 'bench-clinic', 'Benchmark clinic') ON CONFLICT DO NOTHING;
            INSERT INTO users (id) VALUES ('\(user)') ON CONFLICT DO NOTHING;
            INSERT INTO patients (id, organization_id, name)
                SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, '\(organization)', '\\x00'::bytea
                FROM generate_series(1, \(rows)) AS i
                ON CONFLICT DO NOTHING;
            COMMIT;
            ANALYZE patients;
            """, admin])

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenancy-benchmark-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // The kit's own opening statements, rendered: pgbench sends the same SQL with the same
        // binds (`$k` becomes the pgbench variable `:pk`, given with -D).
        let context = try TenantContext(organizationID: organization, userID: user, role: "specialist")
        var configuration = try DatabaseConfiguration(url: appURL)
        configuration.maximumConnections = 1
        let opening = TenantDatabase(configuration: configuration, tables: PlatformSchema.tenantTables, logger: logger).openingStatements(context)
        // pgbench's -D takes no empty value: an empty bind ('' clears a setting) is written as
        // the literal ''.
        var contextSQL = opening.context.sql
        for k in stride(from: opening.context.binds.count, through: 1, by: -1) {
            let value = opening.context.binds[k - 1].textValue ?? ""
            contextSQL = contextSQL.replacingOccurrences(of: "$\(k)", with: value.isEmpty ? "''" : ":p\(k)")
            if !value.isEmpty { contextBinds += ["-D", "p\(k)=\(value)"] }
        }
        let transaction = """
            \(opening.begin);
            \(contextSQL);
            \(select):n\(selectTail);
            END;
            """
        let naive = directory.appendingPathComponent("naive.sql")
        let pipelined = directory.appendingPathComponent("pipelined.sql")
        try "\\set n random(1, \(rows))\n\(transaction)\n".write(to: naive, atomically: true, encoding: .utf8)
        try "\\set n random(1, \(rows))\n\\startpipeline\n\(transaction)\n\\endpipeline\n".write(to: pipelined, atomically: true, encoding: .utf8)

        Bench.say("limit: pgbench -M extended through PgBouncer, app role, same transaction, same clients, same run; \(seconds) s each")
        Bench.say("naive = 4 round trips per transaction; pipelined = \\startpipeline ... \\endpipeline, 1 round trip")
        Bench.say("kit: TenantDatabase.query(context, sql) (BEGIN, context, SELECT, COMMIT pipelined); kit+exec: tasks prefer the I/O executor")
        Bench.say("kit_cpu_us = the kit process's own CPU time per transaction, µs (the server's share is the same as pgbench's: the same four statements)")
        Bench.say("clients  naive_tps  pipelined_tps   kit_tps  kit/pipelined  kit/naive  kit_round_trips  kit+exec_tps  kit+exec/pipelined  kit+exec/naive  kit_cpu_us  kit+exec_cpu_us")
        for n in clients {
            let naiveTPS = try pgbenchTPS(pgbench, script: naive.path, url: appURL, clients: n, seconds: seconds)
            let pipelinedTPS = try pgbenchTPS(pgbench, script: pipelined.path, url: appURL, clients: n, seconds: seconds)
            let kit = try await kitTPS(url: appURL, clients: n, seconds: seconds, preferIOExecutor: false, logger: logger)
            let pinned = try await kitTPS(url: appURL, clients: n, seconds: seconds, preferIOExecutor: true, logger: logger)
            Bench.say(String(
                format: "%7d %10.0f %14.0f %9.0f %14.3f %10.3f %16.2f %13.0f %19.3f %15.3f %11.1f %16.1f",
                n, naiveTPS, pipelinedTPS, kit.tps, kit.tps / pipelinedTPS, kit.tps / naiveTPS, kit.roundTrips,
                pinned.tps, pinned.tps / pipelinedTPS, pinned.tps / naiveTPS, kit.cpu, pinned.cpu
            ))
        }
    }

    static func kitTPS(
        url: String, clients: Int, seconds: Int, preferIOExecutor: Bool, logger: Logger
    ) async throws -> (tps: Double, roundTrips: Double, cpu: Double) {
        var configuration = try DatabaseConfiguration(url: url)
        configuration.maximumConnections = clients
        let app = TenantDatabase(configuration: configuration, tables: PlatformSchema.tenantTables, logger: logger)
        let context = try TenantContext(organizationID: organization, userID: user, role: "specialist")
        try await Bench.concurrently(clients) { _ = try await app.query(context, "SELECT 1") }
        let waitsBefore = Database.postgresRoundTrips
        let cpuBefore = Bench.cpuSeconds(RUSAGE_SELF)
        let transactions = Atomic<Int>(0)
        let tps = try await Bench.throughput(
            clients: clients,
            seconds: seconds,
            executor: preferIOExecutor ? app.taskExecutor : nil
        ) { random in
            let n = Int.random(in: 1...rows, using: &random)
            let found = try await app.query(context, "\(unsafeRaw: select)\(n)\(unsafeRaw: selectTail)")
            precondition(found.count == 1, "row-level security hid a row of the context's own clinic")
            transactions.add(1, ordering: .relaxed)
        }
        let cpu = Bench.cpuSeconds(RUSAGE_SELF) - cpuBefore
        let waits = Database.postgresRoundTrips - waitsBefore
        let count = Double(max(transactions.load(ordering: .relaxed), 1))
        await app.shutdown()
        return (tps, Double(waits) / count, cpu * 1e6 / count)
    }

    static func pgbenchTPS(_ pgbench: String, script: String, url: String, clients: Int, seconds: Int) throws -> Double {
        let output = try Bench.run(pgbench, [
            "-M", "extended", "-n", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)",
            "-f", script,
        ] + contextBinds + [url])
        for line in output.split(separator: "\n") where line.hasPrefix("tps = ") {
            let number = line.dropFirst(6).prefix { $0.isNumber || $0 == "." }
            if let tps = Double(number) { return tps }
        }
        Bench.fail("could not read tps from pgbench output:\n\(output)")
    }
}
