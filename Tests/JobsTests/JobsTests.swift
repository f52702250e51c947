import ArgumentParser
import Crypto
import Foundation
import InMemoryLogging
@testable import Jobs
import Logging
import RestartixPlatform
import RestartixCrypto
import RestartixKit
import RestartixProviders
import RestartixTenancy
import RestartixTestSupport
import ServiceSupport
import Synchronization
import Testing

/// The jobs, called in process as the binary calls them (arguments parsed and validated by
/// ArgumentParser, then ``Job/perform(_:)``), their structured reports checked; the binary itself
/// is spawned only where the process matters: exit statuses and one line on standard error,
/// `--json` on standard output, a SIGKILL half-way, libpq's own `PGPASSWORD`.
@Suite("restartix-jobs", .timeLimit(.minutes(3)))
struct JobsTests {
    /// Everything a job run in process said: its logs (at trace), its progress lines, its
    /// report's text and JSON; for the "no key or PII in any output" checks.
    final class Output: Sendable {
        let logs = InMemoryLogHandler()
        let progress = Mutex<[String]>([])
        let printed = Mutex<[String]>([])
        var all: String {
            (logs.entries.map { "\($0.message) \($0.metadata)" } + progress.withLock { $0 } + printed.withLock { $0 }).joined(separator: "\n")
        }
    }

    /// Parses `arguments` as the binary would (validation included) and performs the job with
    /// `environment` as its whole configuration.
    func job<J: Job>(_: J.Type, _ arguments: [String], environment: [String: String] = [:], output: Output = Output()) async throws -> J.Report {
        let command = try J.parse(arguments)
        let context = JobContext(
            service: ServiceEnvironment(environment),
            makeLogger: { label in
                var logger = Logger(label: label) { _ in output.logs }
                logger.logLevel = .trace
                return logger
            },
            progress: { line in output.progress.withLock { $0.append(line) } }
        )
        let report = try await command.perform(context)
        output.printed.withLock {
            $0 += command.lines(report)
            $0.append(String(decoding: (try? JobReportEncoding.encoder.encode(report)) ?? Data(), as: UTF8.self))
        }
        return report
    }

    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static var binary: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("restartix-jobs")
    }

    /// Runs the binary without blocking a cooperative thread: the test suite runs in parallel,
    /// and a job waiting on a database lock held by another test must not starve that test.
    func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> Outcome {
        try #require(FileManager.default.isExecutableFile(atPath: Self.binary.path), "build restartix-jobs first")
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "DATABASE_DIRECT_URL")
        env.merge(environment) { $1 }
        let (status, stdout, stderr) = try await ChildProcess.capture(Self.binary, arguments, environment: env)
        return Outcome(status: status, stdout: stdout, stderr: stderr)
    }

    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-jobs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("migrate applies once, then is a no-op; partition roll is a no-op on SQLite; the binary prints the report as text or one JSON object")
    func migrateSQLite() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = "sqlite://" + dir.appendingPathComponent("jobs.sqlite").path
        let versions = MigrationSet.platform(for: .sqlite).migrations.map(\.version)
        #expect(try await job(Migrate.self, ["--database-url", url]) == Migrate.Report(applied: versions, alreadyApplied: []))
        #expect(try await job(Migrate.self, ["--database-url", url]) == Migrate.Report(applied: [], alreadyApplied: versions))
        #expect(try await job(AuditPartitionRoll.self, ["--database-url", url]).created == nil)
        // The binary: the same report as a text line, or as JSON a scheduler reads.
        let text = try await run(["migrate", "--database-url", url])
        #expect(text.status == 0 && text.stdout == "migrate: applied 0 (), already applied \(versions.count)\n", "\(text.stdout)\(text.stderr)")
        let json = try await run(["migrate", "--database-url", url, "--json"])
        #expect(json.status == 0)
        let decoded = try JSONDecoder().decode(Migrate.Report.self, from: Data(json.stdout.utf8))
        #expect(decoded == Migrate.Report(applied: [], alreadyApplied: versions))
    }

    @Test("expired-sessions-sweep closes an expired session once and audits it; a second run closes nothing")
    func expiredSessionsSweep() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("jobs.sqlite").path
        _ = try await job(Migrate.self, ["--database-url", "sqlite://" + path])
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: Logger(label: "restartix.tests.jobs"))
        let org = UUIDv7.generate(), user = UUIDv7.generate(), expired = UUIDv7.generate(), open = UUIDv7.generate()
        try await db.transaction { tx in
            // A platform (non-app) connection sees every clinic with app.unscoped set.
            try await tx.execute("SELECT set_config('app.unscoped', 'on', true)")
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), 'sweep-clinic', 'Sweep clinic')")
            try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
            try await tx.execute("""
                INSERT INTO break_glass_sessions (id, organization_id, user_id, reason, opened_at, expires_at) VALUES \
                (\(expired), \(org), \(user), 'expired emergency access', \(Date().addingTimeInterval(-7200)), \(Date().addingTimeInterval(-3600))), \
                (\(open), \(org), \(user), 'current emergency access', \(Date().addingTimeInterval(-60)), \(Date().addingTimeInterval(3600)))
                """)
        }
        let first = try await job(ExpiredSessionsSweep.self, ["--database-url", "sqlite://" + path])
        #expect(first == ExpiredSessionsSweep.Report(breakGlass: 1, impersonation: 0))
        #expect(ExpiredSessionsSweep().lines(first) == ["expired-sessions-sweep: closed 1 break-glass and 0 impersonation sessions"])
        #expect(try await job(ExpiredSessionsSweep.self, ["--database-url", "sqlite://" + path]) == ExpiredSessionsSweep.Report(breakGlass: 0, impersonation: 0))
        let rows = try await db.transaction { tx in
            try await tx.execute("SELECT set_config('app.unscoped', 'on', true)")
            return try await tx.query("""
                SELECT s.id, s.closed_by, s.closed_at = s.expires_at AS at_expiry, \
                (SELECT count(*) FROM audit_log a WHERE a.resource_id = s.id AND a.action = 'break_glass.expire' AND a.actor_kind = 'system') AS audits \
                FROM break_glass_sessions s ORDER BY s.id
                """)
        }
        await db.shutdown()
        #expect(rows.count == 2)
        #expect(try rows[0].decode("id", as: UUID.self) == expired)
        #expect(try rows[0].decode("closed_by", as: String?.self) == "expiry")
        #expect(try rows[0].decode("at_expiry", as: Int.self) == 1)
        #expect(try rows[0].decode("audits", as: Int.self) == 1)
        #expect(try rows[1].decode("closed_by", as: String?.self) == nil, "an open session is left alone")
        #expect(try rows[1].decode("audits", as: Int.self) == 0)
    }

    /// A migrated SQLite file in a fresh folder with one clinic and its owner, for the jobs that
    /// work on patient data.
    func clinicDatabase(slug: String) async throws -> (dir: URL, path: String, url: String, context: TenantContext) {
        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("jobs.sqlite").path
        let url = "sqlite://" + path
        _ = try await job(Migrate.self, ["--database-url", url])
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: Logger(label: "restartix.tests.jobs"))
        let org = UUIDv7.generate(), user = UUIDv7.generate()
        try await admin.unscoped(reason: "jobs test: one clinic", actor: .system("jobs-tests")) { tx in
            try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), \(slug), 'Clinic')")
            try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
        }
        await admin.shutdown()
        return (dir, path, url, TenantContext(organizationID: org, userID: user, role: .owner))
    }

    /// Inserts patients under `keyring` and returns their ids.
    func insertPatients(_ names: [String], keyring: Keyring, path: String, context: TenantContext) async throws -> [UUID] {
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: PlatformSchema.tenantTables, logger: Logger(label: "restartix.tests.jobs"))
        let store = PatientStore(cipher: ColumnCipher(keyring: keyring))
        let ids = try await app.withTenant(context) { tx in
            var ids: [UUID] = []
            for name in names { ids.append(try await store.insert(PatientPII(name: name, email: name == "Ana" ? "ana@example.com" : nil), in: tx)) }
            return ids
        }
        await app.shutdown()
        return ids
    }

    /// The patients' names opened under `keyring`.
    func names(_ ids: [UUID], keyring: Keyring, path: String, context: TenantContext) async throws -> [String?] {
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: PlatformSchema.tenantTables, logger: Logger(label: "restartix.tests.jobs"))
        let store = PatientStore(cipher: ColumnCipher(keyring: keyring))
        let names = try await app.withTenant(context) { tx in try await ids.asyncMap { try await store.fetch($0, in: tx)?.pii.name } }
        await app.shutdown()
        return names
    }

    @Test("check-providers: a failing provider is recorded and the job still succeeds; its own failure (no database) exits 1 without secrets")
    func checkProviders() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = "sqlite://" + dir.appendingPathComponent("jobs.sqlite").path
        _ = try await job(Migrate.self, ["--database-url", url])
        let generated = Keyring.generate()
        let database = try Database(url: url, logger: Logger(label: "test"))
        let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: generated.keyring))
        try await registry.insertIfAbsent("video", kind: .daily, config: ["api_url": "http://127.0.0.1:9"], secrets: ProviderSecrets(["api_key": "daily-secret-key"]))
        await database.shutdown()
        let environment = ["ENCRYPTION_KEYS": generated.document]
        let output = Output()
        let first = try await job(CheckProviders.self, ["--database-url", url, "--timeout", "2"], environment: environment, output: output)
        let outcome = try #require(first.outcomes.first)
        #expect(first.outcomes.count == 1)
        #expect(outcome.capability == "video" && outcome.kind == "daily" && outcome.organizationID == nil && !outcome.skipped)
        #expect(outcome.failure?.hasPrefix("127.0.0.1 unreachable") == true && outcome.status == "degraded" && outcome.consecutiveFailures == 1, "\(outcome)")
        #expect(CheckProviders().lines(first).last == "check-providers: done, 1 rows, 1 failing")
        let second = try await job(CheckProviders.self, ["--database-url", url, "--timeout", "2", "--failures-to-down", "2"], environment: environment, output: output)
        #expect(second.outcomes.first?.status == "down" && second.outcomes.first?.consecutiveFailures == 2)
        #expect(!output.all.contains("daily-secret-key"), "no report, line or log carries the key")
        // The job's own failure: exit 1, one line, no password.
        let unreachable = try await run(["check-providers", "--database-url", "postgres://restartix_admin:hunter2-secret@127.0.0.1:1/restartix"], environment: environment)
        #expect(unreachable.status == 1)
        #expect(!unreachable.stderr.contains("hunter2-secret") && !unreachable.stdout.contains("hunter2-secret"))
        #expect(throws: (any Error).self) { try CheckProviders.parse(["--database-url", url, "--capability", "Not A Name"]) }
    }

    @Test("usage-quota-reset and usage-summary-rollup run twice at once: one reset, one closed summary; bad --month refused")
    func usageJobs() async throws {
        let (dir, path, url, context) = try await clinicDatabase(slug: "usage-clinic")
        defer { try? FileManager.default.removeItem(at: dir) }
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: Logger(label: "test"))
        let lastMonth = UsagePeriods.previousMonth(before: Date())
        let inLastMonth = lastMonth.start.addingTimeInterval(86_400 * 3)
        try await admin.withOrganization(context.organizationID, actor: .system("jobs-tests")) { tx in
            try await UsageMeter.setQuota(10, capability: .ai, organization: context.organizationID, now: inLastMonth, in: tx)
            try await tx.execute("UPDATE usage_quotas SET current_units = 9")
            for units in [5, 6] {
                try await tx.execute("INSERT INTO usage_records (id, organization_id, capability, units, recorded_at) VALUES (\(UUIDv7.generate()), \(context.organizationID), 'ai', \(units), \(inLastMonth))")
            }
        }
        async let one = job(UsageQuotaReset.self, ["--database-url", url])
        async let two = job(UsageQuotaReset.self, ["--database-url", url])
        let resets = try await [one, two]
        #expect(resets.map(\.reset).reduce(0, +) == 1, "one run resets it: \(resets)")
        async let three = job(UsageSummaryRollup.self, ["--database-url", url])
        async let four = job(UsageSummaryRollup.self, ["--database-url", url])
        let rollups = try await [three, four]
        #expect(rollups.map(\.closed).reduce(0, +) == 1, "one run closes it: \(rollups)")
        #expect(rollups.allSatisfy { $0.periodStart == lastMonth.start })
        let (quota, summary) = try await admin.withOrganization(context.organizationID, actor: .system("jobs-tests")) { tx in
            (try await tx.query("SELECT current_units, period_start_at FROM usage_quotas"), try await tx.query("SELECT total_units, closed_at FROM usage_summaries"))
        }
        #expect(try quota.first?.decode("current_units", as: Int.self) == 0)
        #expect(try quota.first?.decode("period_start_at", as: Date.self) == UsagePeriods.month(containing: Date()).start)
        #expect(summary.count == 1)
        #expect(try summary.first?.decode("total_units", as: Int.self) == 11)
        let month = #expect(throws: (any Error).self) { try UsageSummaryRollup.parse(["--database-url", url, "--month", "2026-13"]) }
        #expect(month.map { UsageSummaryRollup.message(for: $0) }?.contains("--month must be YYYY-MM") == true)
        await admin.shutdown()
    }

    @Test("keyring-usage and reencrypt: values move to the primary; a disabled key in use is refused without key bytes")
    func rotationJobs() async throws {
        let (dir, path, url, context) = try await clinicDatabase(slug: "rotation-clinic")
        defer { try? FileManager.default.removeItem(at: dir) }
        let k1 = Data(repeating: 1, count: 32).base64EncodedString(), k2 = Data(repeating: 2, count: 32).base64EncodedString()
        let blind = Data(repeating: 9, count: 32).base64EncodedString()
        func document(_ one: String, _ two: String?) -> String {
            let second = two.map { #",{"id":2,"status":"\#($0)","key":"\#(k2)"}"# } ?? ""
            return #"{"keys":[{"id":1,"status":"\#(one)","key":"\#(k1)"}\#(second)],"blind_index_key":"\#(blind)"}"#
        }
        // Two patients sealed under key 1 (three values: two names, one email).
        let ids = try await insertPatients(["Ana", "Ion"], keyring: try Keyring(json: Data(document("primary", nil).utf8)), path: path, context: context)

        let rotated = ["ENCRYPTION_KEYS": document("decrypt-only", "primary")]
        let output = Output()
        let before = try await job(KeyringUsageReport.self, ["--database-url", url], environment: rotated, output: output)
        #expect(before.counts["patients.name"] == ["1": 2] && before.totals == ["1": 3], "\(before)")
        // A disabled key still in use: refused, and the binary says so in one line, exit 1.
        let refused = await #expect(throws: (any Error).self) {
            try await job(Reencrypt.self, ["--database-url", url], environment: ["ENCRYPTION_KEYS": document("disabled", "primary")], output: output)
        }
        #expect(refused.map { "\($0)" }?.contains("key 1 is disabled") == true, "\(String(describing: refused))")
        let binary = try await run(["reencrypt", "--database-url", url], environment: ["ENCRYPTION_KEYS": document("disabled", "primary"), "LOG_LEVEL": "trace"])
        #expect(binary.status == 1 && binary.stderr.contains("key 1 is disabled"), "\(binary.stderr)")
        let reencrypt = try await job(Reencrypt.self, ["--database-url", url, "--batch-size", "1"], environment: rotated, output: output)
        #expect(reencrypt.rewritten.values.reduce(0, +) == 3 && reencrypt.remaining == 0 && reencrypt.failed.isEmpty && reencrypt.primaryKeyID == 2, "\(reencrypt)")
        #expect(Reencrypt().lines(reencrypt).first == "reencrypt: done, 3 values rewritten (platform primary: key 2), 0 changed meanwhile, 0 remaining")
        #expect(output.progress.withLock { $0 }.count >= 3, "a line per batch as it is done")
        #expect(try await job(KeyringUsageReport.self, ["--database-url", url], environment: rotated, output: output).totals == ["2": 3])
        let again = try await job(Reencrypt.self, ["--database-url", url], environment: rotated, output: output)
        #expect(again.rewritten.values.reduce(0, +) == 0, "idempotent")
        // At trace level, no log line, progress line or report of any run carries a key or a
        // patient's data; nor does the binary's output.
        for secret in [k1, k2, blind, "ana@example.com"] {
            #expect(!output.all.contains(secret) && !binary.stdout.contains(secret) && !binary.stderr.contains(secret), "a job's output carries a key or PII")
        }
        // The values still open, now under key 2 alone.
        #expect(try await names(ids, keyring: try Keyring(json: Data(document("disabled", "primary").utf8)), path: path, context: context) == ["Ana", "Ion"])
    }

    @Test("reencrypt killed with SIGKILL half-way resumes on the next run; nothing lost")
    func reencryptKilled() async throws {
        let (dir, path, url, context) = try await clinicDatabase(slug: "killed-clinic")
        defer { try? FileManager.default.removeItem(at: dir) }
        let v1 = Keyring.generate()
        let primary = SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() }
        // v2: the generated key 1 becomes decrypt-only, a new key 2 is primary.
        let old = try JSONSerialization.jsonObject(with: Data(v1.document.utf8)) as! [String: Any]
        var keys = old["keys"] as! [[String: Any]]
        keys[0]["status"] = "decrypt-only"
        keys.append(["id": 2, "status": "primary", "key": primary])
        let v2 = String(decoding: try JSONSerialization.data(withJSONObject: ["keys": keys, "blind_index_key": old["blind_index_key"]!]), as: UTF8.self)

        let expected = (0..<1500).map { "Patient \($0)" }
        let ids = try await insertPatients(expected, keyring: v1.keyring, path: path, context: context)

        // Start a run one row per transaction and kill it -9 once it has made progress.
        let out = dir.appendingPathComponent("out")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let process = Process()
        process.executableURL = Self.binary
        process.arguments = ["reencrypt", "--database-url", url, "--batch-size", "1"]
        var env = ProcessInfo.processInfo.environment
        env["ENCRYPTION_KEYS"] = v2
        env.removeValue(forKey: "DATABASE_URL")
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = FileHandle.nullDevice
        let child = try ChildProcess(starting: process)
        var progressed = false
        for _ in 0..<2000 where !progressed {
            try await Task.sleep(for: .milliseconds(5))
            progressed = ((try? String(contentsOf: out, encoding: .utf8)) ?? "").contains("rewritten")
        }
        #expect(progressed)
        #expect(process.isRunning, "the run must still be working when it is killed")
        kill(child.pid, SIGKILL)
        #expect(await child.exit().reason == .uncaughtSignal)

        let between = try await job(KeyringUsageReport.self, ["--database-url", url], environment: ["ENCRYPTION_KEYS": v2])
        #expect((between.totals["1"] ?? 0) > 0, "some values still under key 1 after the kill: \(between.totals)")
        let resumed = try await job(Reencrypt.self, ["--database-url", url], environment: ["ENCRYPTION_KEYS": v2])
        #expect(resumed.remaining == 0 && resumed.failed.isEmpty, "\(resumed)")
        #expect(try await job(KeyringUsageReport.self, ["--database-url", url], environment: ["ENCRYPTION_KEYS": v2]).totals == ["2": 1500])
        #expect(try await names(ids, keyring: try Keyring(json: Data(v2.utf8)), path: path, context: context) == expected)
    }

    @Test("migrate and partition roll on Postgres; the password may come from PGPASSWORD")
    func postgres() async throws {
        guard RequiredServices.shouldRun("DATABASE_DIRECT_URL") else { return }
        let owner = try RequiredServices.require("DATABASE_DIRECT_URL")
        // postgres://user:password@host:port/db?... -> the password, and the URL without it.
        let userinfo = try #require(owner.range(of: #"//[^:/@]+:[^@]+@"#, options: .regularExpression))
        let credentials = owner[userinfo].dropFirst(2).dropLast()
        let colon = try #require(credentials.firstIndex(of: ":"))
        let password = String(credentials[credentials.index(after: colon)...])
        let schema = "jobs_\(UUID().uuidString.prefix(8).lowercased())"
        let withoutPassword = owner.replacingCharacters(in: userinfo, with: "//" + credentials[..<colon] + "@")
            + "&options=-csearch_path%3D\(schema)"

        let admin = try Database(url: owner, logger: Logger(label: "jobs-test"))
        try await admin.execute(SQLQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
        do {
            try await checkPostgresJobs(url: withoutPassword, password: password)
        } catch {
            Issue.record(error)
        }
        try await admin.execute(SQLQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        await admin.shutdown()
    }

    func checkPostgresJobs(url withoutPassword: String, password: String) async throws {
        let noPassword = try await run(["migrate", "--database-url", withoutPassword], environment: ["PGPASSWORD": ""])
        #expect(noPassword.status != 0)
        #expect(noPassword.stderr.contains("authentication failed") || noPassword.stderr.contains("could not connect"))

        // libpq reads PGPASSWORD from its process's environment: the binary, with it set.
        let migrate = try await run(["migrate", "--database-url", withoutPassword, "--json"], environment: ["PGPASSWORD": password])
        #expect(migrate.status == 0, "\(migrate.stderr)")
        let versions = MigrationSet.platform(for: .postgres).migrations.map(\.version)
        #expect(try JSONDecoder().decode(Migrate.Report.self, from: Data(migrate.stdout.utf8)) == Migrate.Report(applied: versions, alreadyApplied: []))
        #expect(!(migrate.stdout + migrate.stderr).contains(password))
        // The rest in process, with the password in the URL.
        let url = withoutPassword.replacingOccurrences(of: "@", with: ":\(password)@")
        let first = try await job(AuditPartitionRoll.self, ["--database-url", url])
        #expect(first.created?.values.reduce(0, +) == 0, "migrate provisioned the months ahead: \(String(describing: first.created))")
        let wider = try await job(AuditPartitionRoll.self, ["--months-ahead", "4", "--database-url", url])
        #expect(wider.created?.values.reduce(0, +) == 4)
        #expect(try await job(AuditPartitionRoll.self, ["--months-ahead", "4", "--database-url", url]).created?.values.reduce(0, +) == 0)
    }

    @Test("dev-token: a demo person's token the Core API's issuer accepts; refused outside development; bad flags refused")
    func devToken() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sqlite = dir.appendingPathComponent("data/restartix.sqlite").path
        let report = try await job(DevToken.self, ["--as", "demo-patient", "--lifetime", "600"], environment: ["RESTARTIX_SQLITE_PATH": sqlite])
        let patient = try #require(DemoData.person("demo-patient"))
        #expect(report.userID == patient.userID && report.organizationID == patient.organizationID)
        // The secret it made is the one the Core API reads on the same embedded default.
        let secret = try PlatformBoot.localDevTokenSecret(in: dir.appendingPathComponent("data"))
        let mode = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("data/dev-token-secret").path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let principal = try await LocalDevIssuer(environment: .development, secret: secret).verify(report.token)
        #expect(principal.userID == patient.userID && principal.organizationID == patient.organizationID)
        #expect(DevToken().lines(report) == [report.token], "the token alone, for $(...)")
        let production = await #expect(throws: (any Error).self) {
            try await job(DevToken.self, ["--as", "demo-owner"], environment: ["RESTARTIX_SQLITE_PATH": sqlite, "APP_ENV": "production"])
        }
        #expect(production.map { "\($0)" }?.contains("refused in production") == true, "\(String(describing: production))")
        for bad in [["--as", "nobody"], ["--user", UUID().uuidString], ["--as", "demo-owner", "--lifetime", "0"], []] {
            #expect(throws: (any Error).self, "\(bad)") { try DevToken.parse(bad) }
        }
    }

    @Test("demo-data: the demo clinics and people on a migrated database, once; refused in staging and production before connecting")
    func demoData() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("jobs.sqlite").path
        _ = try await job(Migrate.self, ["--database-url", "sqlite://" + path])
        let first = try await job(DemoDataJob.self, ["--database-url", "sqlite://" + path])
        #expect(first.created && first.people == DemoData.people.map(\.handle))
        #expect(try await job(DemoDataJob.self, ["--database-url", "sqlite://" + path]).created == false, "a second run creates nothing")
        // The people are there as the tokens say: the owner is a member, the operator an administrator.
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: Logger(label: "restartix.tests.jobs"))
        let (members, operators) = try await admin.unscoped(reason: "jobs test: demo people", actor: .system("tests")) { tx in
            (
                try #require(try await tx.first("SELECT count(*) AS n FROM memberships")).decode("n", as: Int.self),
                try #require(try await tx.first("SELECT count(*) AS n FROM users WHERE is_platform_admin")).decode("n", as: Int.self)
            )
        }
        await admin.shutdown()
        #expect(members == DemoData.people.filter { $0.role != nil }.count && operators == 1)
        for environment in ["staging", "production"] {
            let refused = await #expect(throws: (any Error).self) {
                try await job(DemoDataJob.self, ["--database-url", "postgres://nobody@127.0.0.1:1/none"], environment: ["APP_ENV": environment])
            }
            #expect(refused.map { "\($0)" }?.contains("refused in \(environment)") == true, "\(String(describing: refused))")
        }
    }

    @Test("service-token: a token the Core API's verifier accepts for its audience and scopes; no secret or a short one is one clear line; bad flags refused")
    func serviceToken() async throws {
        let secret = "jobs-service-token-secret-0123456789abcdef"
        let report = try await job(
            ServiceToken.self, ["--service", "telemetry-api", "--scope", "b:write", "--scope", "a:read", "--lifetime", "120"],
            environment: ["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": secret]
        )
        let caller = try ServiceAccountTokens(secrets: [secret]).verify(report.token, audience: "restartix-core-api", requiring: "b:write")
        #expect(caller.service == "telemetry-api" && caller.scopes == ["a:read", "b:write"] && report.scopes == ["a:read", "b:write"])
        #expect((100...121).contains(caller.expiresAt.timeIntervalSinceNow))
        #expect(ServiceToken().lines(report) == [report.token], "the token alone, for $(...)")
        for (environment, named) in [([String: String](), "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN is not set"), (["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": "short-one"], "is 9 bytes")] {
            let error = await #expect(throws: (any Error).self) { try await job(ServiceToken.self, [], environment: environment) }
            #expect(error.map { "\($0)" }?.contains(named) == true, "\(String(describing: error))")
            #expect(error.map { "\($0)" }?.contains("short-one") == false)
        }
        let spaced = await #expect(throws: (any Error).self) {
            try await job(ServiceToken.self, ["--service", "two words"], environment: ["TELEMETRY_INTERNAL_SVC_ACCT_TOKEN": secret])
        }
        #expect(spaced.map { "\($0)" }?.contains("short names without spaces") == true)
        for bad in [["--lifetime", "0"], ["--lifetime", "86401"], ["--scope"]] {
            #expect(throws: (any Error).self, "\(bad)") { try ServiceToken.parse(bad) }
        }
    }

    @Test("provider-reseed: a row whose credentials no longer open is replaced from its seed (audited, version + 1); no seed, nothing changed; a missing row inserted")
    func providerReseed() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = "sqlite://" + dir.appendingPathComponent("jobs.sqlite").path
        _ = try await job(Migrate.self, ["--database-url", url])
        // The row sealed under a keyring that is gone.
        let lost = Keyring.generate()
        let database = try Database(url: url, logger: Logger(label: "test"))
        try await ProviderRegistry(database: database, cipher: ColumnCipher(keyring: lost.keyring))
            .insertIfAbsent("video", kind: .daily, config: ["api_url": "http://127.0.0.1:9"], secrets: ProviderSecrets(["api_key": "lost-daily-key"]))
        let current = Keyring.generate()
        let seed = ["ENCRYPTION_KEYS": current.document, "DAILY_API_KEY": "reseeded-daily-key", "DAILY_API_URL": "http://127.0.0.1:9"]

        let missing = await refusal(ProviderReseed.self, ["--database-url", url, "--capability", "video"], environment: ["ENCRYPTION_KEYS": current.document])
        #expect(missing.contains("there is no seed for video"), "\(missing)")
        #expect(await refusal(ProviderReseed.self, ["--database-url", url, "--capability", "Not A Name"]).contains("is not a capability name"))

        let output = Output()
        let replaced = try await job(ProviderReseed.self, ["--database-url", url, "--capability", "video"], environment: seed, output: output)
        #expect(replaced == ProviderReseed.Report(capability: "video", kind: "daily", action: "replaced", version: 2))
        let registry = ProviderRegistry(database: database, cipher: ColumnCipher(keyring: current.keyring))
        let record = try #require(try await registry.lookup("video", organization: nil))
        #expect(record.secrets.values["api_key"] == "reseeded-daily-key" && record.version == 2)
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: url), logger: Logger(label: "test"))
        let audit = try await admin.unscoped(reason: "provider-reseed test: audit rows", actor: .system("tests")) { tx in
            try await tx.query("SELECT CAST(metadata AS TEXT) AS metadata FROM audit_log WHERE action = 'provider.rotate'")
        }
        await admin.shutdown()
        let metadata = try audit.first?.decode("metadata", as: String.self)
        #expect(audit.count == 1 && metadata?.contains("secrets.api_key") == true, "\(metadata ?? "no audit row")")
        #expect(!output.all.contains("reseeded-daily-key") && !output.all.contains("lost-daily-key"))

        // No row: inserted.
        _ = try await database.execute("DELETE FROM platform_service_providers")
        let inserted = try await job(ProviderReseed.self, ["--database-url", url, "--capability", "video"], environment: seed)
        #expect(inserted.action == "inserted" && inserted.version == 1)
        await database.shutdown()
    }

    @Test("bad input: each a clear error, nothing applied, no password; the binary exits non-zero with one line")
    func badInput() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func refusal<J: Job>(_ type: J.Type, _ arguments: [String]) async -> String {
            do {
                _ = try await job(type, arguments)
                return "no error"
            } catch {
                return J.message(for: error)
            }
        }
        let scheme = await refusal(Migrate.self, ["--database-url", "mysql://root:hunter2@localhost/x"])
        #expect(scheme.contains("unsupported database URL scheme 'mysql'") && !scheme.contains("hunter2"), "\(scheme)")
        let malformed = await refusal(Migrate.self, ["--database-url", "postgres://root:hunter2@localhost:port/x"])
        #expect(malformed.contains("invalid port") && !malformed.contains("hunter2"), "\(malformed)")
        let refused = await refusal(Migrate.self, ["--database-url", "postgres://root:hunter2@127.0.0.1:1/x"])
        #expect(refused.contains("could not connect") && !refused.contains("hunter2"), "\(refused)")

        // A migration folder with a gap: refused before anything is applied.
        let folder = dir.appendingPathComponent("migrations")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "CREATE TABLE a (x INTEGER);".write(to: folder.appendingPathComponent("0001_a.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE c (x INTEGER);".write(to: folder.appendingPathComponent("0003_c.sql"), atomically: true, encoding: .utf8)
        let database = dir.appendingPathComponent("gap.sqlite").path
        #expect(await refusal(Migrate.self, ["--database-url", "sqlite://" + database, "--migrations-directory", folder.path]).contains("version 2 is missing"))
        #expect(await refusal(Migrate.self, ["--database-url", "sqlite://" + database, "--migrations-directory", dir.appendingPathComponent("none").path])
            .contains("cannot read the migration folder"))
        let check = try Database(url: "sqlite://" + database, logger: Logger(label: "test"))
        #expect(try await check.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('a', 'c')").isEmpty, "nothing applied")
        await check.shutdown()
        #expect(await refusal(AuditPartitionRoll.self, ["--months-ahead", "99", "--database-url", "sqlite::memory:"]).contains("--months-ahead must be between 0 and 36"))

        // The binary: status 1 and the one line on standard error, for an error of its own and
        // for bad arguments alike.
        let binary = try await run(["migrate", "--database-url", "mysql://root:hunter2@localhost/x"])
        #expect(binary.status == 1 && binary.stderr.contains("unsupported database URL scheme 'mysql'") && !binary.stderr.contains("hunter2"))
        let months = try await run(["audit-partition-roll", "--months-ahead", "99", "--database-url", "sqlite::memory:"])
        #expect(months.status != 0 && months.stderr.contains("--months-ahead must be between 0 and 36"))
        #expect(try await run(["no-such-job"]).status != 0)
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
