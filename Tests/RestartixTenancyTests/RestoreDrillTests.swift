import Crypto
import Foundation
import Logging
import RestartixAWS
import RestartixBackup
import RestartixCrypto
import RestartixKit
import RestartixPlatform
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// The restore drill: a database with a row in every table (sealed PII among them) is backed up
/// to a bucket with Object Lock on moto, restored into an empty database, and the restored one
/// must be the same, row for row, and still keep clinics apart.
///
/// Runs on the two drill databases Scripts/services makes (`RESTARTIX_DRILL_*`), which nothing
/// else uses: the source is emptied and migrated again, the target emptied, at the start.
@Suite("Restore drill: every table backed up to S3 and restored, isolation intact", .serialized, .timeLimit(.minutes(5)))
struct RestoreDrillTests {
    static let logger = Logger(label: "restartix.tests.drill")

    /// `restartix-jobs`, built beside the test binary.
    static var jobs: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("restartix-jobs")
    }

    /// The jobs binary's environment: this process's (the services' AWS variables) and `extra`.
    static func environment(_ extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for name in ["DATABASE_URL", "DATABASE_DIRECT_URL", "BACKUP_BUCKET", "BACKUP_DIRECTORY"] { environment.removeValue(forKey: name) }
        environment.merge(extra) { $1 }
        return environment
    }

    static func runJobs(_ arguments: [String], _ extra: [String: String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        try #require(FileManager.default.isExecutableFile(atPath: jobs.path), "build restartix-jobs first")
        return try await RestartixTestSupport.ChildProcess.capture(jobs, arguments, environment: environment(extra))
    }

    /// Starts the jobs binary without waiting for it (to watch it, or kill it half-way).
    static func startJobs(_ arguments: [String], _ extra: [String: String]) throws -> (Process, RestartixTestSupport.ChildProcess) {
        let process = Process()
        process.executableURL = jobs
        process.arguments = arguments
        process.environment = environment(extra)
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        return (process, try RestartixTestSupport.ChildProcess(starting: process))
    }

    static func lockedBucket(_ urls: URLs) async throws -> S3Client {
        let s3 = try S3Client(
            bucket: "restartix-drill-\(UUID().uuidString.prefix(8).lowercased())", region: "us-east-1",
            credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), endpoint: urls.s3, usePathStyle: true
        )
        try await s3.createBucket(objectLockEnabled: true)
        return s3
    }

    static func base64Key() -> (SymmetricKey, String) {
        let key = SymmetricKey(size: .bits256)
        return (key, key.withUnsafeBytes { Data($0).base64EncodedString() })
    }

    struct URLs {
        let source, sourceAdmin, sourceApp, target, targetAdmin, targetApp, s3: String

        static func load() throws -> URLs? {
            let names = [
                "RESTARTIX_DRILL_SOURCE_URL", "RESTARTIX_DRILL_SOURCE_ADMIN_URL", "RESTARTIX_DRILL_TARGET_URL",
                "RESTARTIX_DRILL_SOURCE_APP_URL",
                "RESTARTIX_DRILL_TARGET_ADMIN_URL", "RESTARTIX_DRILL_TARGET_APP_URL", "AWS_ENDPOINT_URL",
            ]
            guard RequiredServices.shouldRun(names[0]) else { return nil }
            let values = try names.map { try RequiredServices.require($0) }
            return URLs(
                source: values[0], sourceAdmin: values[1], sourceApp: values[3], target: values[2], targetAdmin: values[4], targetApp: values[5], s3: values[6]
            )
        }
    }

    /// Drops everything in `public` (the owner owns the schema) and makes it again, as
    /// Scripts/services left it.
    static func empty(_ url: String) async throws {
        let db = try Database(url: url, logger: logger)
        defer { Task { await db.shutdown() } }
        try await db.transaction { tx in
            try await tx.execute("DROP SCHEMA IF EXISTS audit_restore CASCADE")
            try await tx.execute("DROP SCHEMA public CASCADE")
            try await tx.execute("CREATE SCHEMA public")
            try await tx.execute("GRANT USAGE ON SCHEMA public TO restartix_admin, restartix_app")
        }
    }

    /// Every ordinary table (partitions one by one) and an MD5 of its rows in a fixed order, as
    /// the owner (who reads every row: migration 15).
    static func checksums(_ url: String) async throws -> [String: String] {
        let db = try Database(url: url, logger: logger)
        defer { Task { await db.shutdown() } }
        let tables = try await db.query("""
            SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1
            """).map { try $0.decode("name", as: String.self) }
        var sums: [String: String] = [:]
        for table in tables {
            let row = try await db.query("""
                SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS sum FROM \(identifier: table) t
                """).first
            sums[table] = "\(try row?.decode("n", as: Int.self) ?? -1):\(try row?.decode("sum", as: String.self) ?? "")"
        }
        return sums
    }

    @Test("seed every table, back up to a locked bucket, restore, compare every row, run the isolation matrix, open a sealed value")
    func drill() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        try await Self.empty(urls.target)

        // The source: migrated, the tenancy fixture (a row in every tenant table), the tables
        // outside it, and a patient name sealed under a keyring.
        let owner = try Database(url: urls.source, logger: Self.logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
        _ = try await PartitionRoller(database: owner).roll(monthsAhead: 1)
        await owner.shutdown()
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: urls.sourceAdmin), logger: Self.logger)
        let fixture = try await TenancyFixture.make(admin: admin)
        let keyring = try Keyring(keys: [(id: 7, status: .primary, key: SymmetricKey(size: .bits256))], blindIndexKey: SymmetricKey(size: .bits256))
        let cipher = ColumnCipher(keyring: keyring, logger: Self.logger)
        let place = ColumnPlace(table: "patients", column: "name", organizationID: fixture.a.id, rowID: fixture.a1.patient)
        let sealedName = try cipher.seal("Ana Drill-Patient", at: place)
        try await admin.unscoped(reason: "restore drill seed", actor: .system("restore-drill")) { tx in
            try await tx.execute("UPDATE patients SET name = \(sealedName) WHERE id = \(fixture.a1.patient)")
            try await DrillSeed.platformTables(tx, fixture: fixture, cipher: cipher)
        }
        await admin.shutdown()
        let before = try await Self.checksums(urls.source)
        // Ground truth before trusting the comparison: every table has rows, but the future
        // partitions nothing is dated into (and the empty ones below are named).
        let empty = before.filter { $0.value.hasPrefix("0:") }.keys.sorted()
        let futurePartitions = empty.filter { $0.range(of: #"_\d{4}_\d{2}$"#, options: .regularExpression) != nil }
        #expect(empty == futurePartitions, "tables the drill leaves empty: \(empty)")

        // Back up with the job to a bucket with Object Lock.
        let s3 = try await Self.lockedBucket(urls)
        let store = try S3ObjectStore(client: s3)
        let (envelope, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "BACKUP_BUCKET": s3.bucket]
        let backedUp = try await Self.runJobs(["backup", "--database-url", urls.source, "--retain-days", "1", "--json"], env)
        #expect(backedUp.status == 0, "\(backedUp.stderr)")
        let ids = try await EncryptedArchive.list(in: store, prefix: "postgres")
        #expect(ids.count == 1)
        let archive = try await EncryptedArchive.open(id: try #require(ids.first), prefix: "postgres", in: store, envelopeKey: envelope)
        let manifest = archive.manifest
        #expect(backedUp.stdout.contains(manifest.id))
        #expect(manifest.rowCounts.count == before.count)
        #expect(manifest.rowCounts.allSatisfy { before["\($0.key.dropFirst("public.".count))"]?.hasPrefix("\($0.value):") == true })
        #expect(manifest.source["migration_version"] == String(PlatformSchema.migrations(for: .postgres).migrations.last!.version))
        #expect(manifest.lock?.mode == .compliance)
        // Both objects are retained: neither can be deleted.
        for key in [manifest.object, "postgres/\(manifest.id)/manifest.json"] {
            let head = try #require(try await store.head(try ObjectKey(key)))
            #expect(head.lock?.mode == .compliance, "\(key)")
            await #expect(throws: ObjectStoreError.self, "\(key) deleted under Object Lock") { try await store.delete(try ObjectKey(key)) }
        }

        // Restore with the job into the empty target (it verifies, restores, counts, checks the
        // migrations and runs the tenancy boot check as the app and admin roles).
        let restoreArguments = [
            "restore", "--latest", "--target-url", urls.target, "--target-app-url", urls.targetApp, "--target-admin-url", urls.targetAdmin,
        ]
        let restored = try await Self.runJobs(restoreArguments, env)
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(restored.stdout.contains("tenancy boot check passed as app and admin"), "\(restored.stdout)")
        let after = try await Self.checksums(urls.target)
        #expect(after == before)

        // A second restore into the same (no longer empty) target is refused, changing nothing.
        let again = try await Self.runJobs(restoreArguments, env)
        #expect(again.status == 1 && again.stderr.contains("backup.targetNotEmpty"), "\(again.stderr)")
        #expect(try await Self.checksums(urls.target) == before)
        // Nothing secret in what the jobs printed.
        for output in [backedUp.stdout, backedUp.stderr, restored.stdout, restored.stderr, again.stderr] {
            #expect(!output.contains(envelopeText) && !output.contains("Ana Drill-Patient") && !output.contains("drill-secret"))
        }

        // The restored database keeps clinics apart: the matrix, cell by cell.
        var appConfiguration = try DatabaseConfiguration(url: urls.targetApp)
        appConfiguration.maximumConnections = 4
        let app = TenantDatabase(configuration: appConfiguration, tables: PlatformSchema.tenantTables, logger: Self.logger)
        let raw = Database(configuration: appConfiguration, logger: Self.logger)
        try await IsolationMatrixTests.assertMatrix(fixture: fixture, app: app, raw: raw, label: "restored")

        // The sealed name opens with the keyring, in its own clinic, as the patient's clinic sees it.
        let rows = try await app.query(fixture.context(staffOf: fixture.a), "SELECT name FROM patients WHERE id = \(fixture.a1.patient)")
        let restoredName: Data = try #require(try rows.first?.decode("name"))
        #expect(try cipher.openString(restoredName, at: place) == "Ana Drill-Patient")
        #expect(try await app.query(fixture.context(staffOf: fixture.b), "SELECT name FROM patients WHERE id = \(fixture.a1.patient)").isEmpty)
        await app.shutdown()
        await raw.shutdown()
    }

    @Test("a backup killed mid-upload leaves nothing restore would take; the next one works")
    func killedBackup() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        // About 30 MB of dump that does not compress away: several multipart parts.
        let owner = try Database(url: urls.source, logger: Self.logger)
        _ = try await owner.execute("""
            CREATE TABLE bulk AS SELECT g AS id, md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text) AS body
            FROM generate_series(1, 250000) g
            """)
        await owner.shutdown()
        let s3 = try await Self.lockedBucket(urls)
        let store = try S3ObjectStore(client: s3)
        let (_, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "BACKUP_BUCKET": s3.bucket]

        let (process, child) = try Self.startJobs(["backup", "--database-url", urls.source, "--retain-days", "1"], env)
        // Killed once a multipart upload is under way (its first part is going up).
        var uploading = false
        for _ in 0..<600 where !uploading {
            try await Task.sleep(for: .milliseconds(20))
            uploading = !(try await s3.listMultipartUploads(prefix: "postgres/")).isEmpty
        }
        #expect(uploading, "the backup never started its multipart upload")
        #expect(process.isRunning, "the backup must still be running when it is killed")
        kill(child.pid, SIGKILL)
        #expect(await child.exit().reason == .uncaughtSignal)

        // No manifest, no completed object: nothing listed, nothing to restore.
        #expect(try await EncryptedArchive.list(in: store, prefix: "postgres") == [])
        let orphan = try #require(try await s3.listMultipartUploads(prefix: "postgres/").first)
        #expect(try await s3.head(orphan.key) == nil, "the interrupted upload is not an object")
        let verify = try await Self.runJobs(["restore", "--latest", "--verify-only"], env)
        #expect(verify.status == 1 && verify.stderr.contains("there is no backup"), "\(verify.stderr)")
        let id = String(orphan.key.split(separator: "/")[1])
        let named = try await Self.runJobs(["restore", "--backup-id", id, "--verify-only"], env)
        #expect(named.status == 1 && named.stderr.contains("backup.notFound"), "\(named.stderr)")

        // The next run is not disturbed by the orphan, and its backup verifies.
        let next = try await Self.runJobs(["backup", "--database-url", urls.source, "--retain-days", "1"], env)
        #expect(next.status == 0, "\(next.stderr)")
        let verified = try await Self.runJobs(["restore", "--latest", "--verify-only"], env)
        #expect(verified.status == 0 && verified.stdout.contains("verified"), "\(verified.stderr)")
    }

    /// The memory bound of `restartix-jobs backup` (this build; a release build stays lower).
    static let memoryBound = 160 << 20

    @Test("backup of a 1 GB database: its peak RSS stays under a fixed bound (reported)")
    func memory() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        // 1 GB on disk: a million 1 KiB rows (they compress well, so the run stays short; the
        // pipeline's buffers are the same whatever goes through them, and Benchmarks/backup
        // measures 600 MB of dump that does not compress).
        let owner = try Database(url: urls.source, logger: Self.logger)
        _ = try await owner.execute("""
            CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 31) || md5(random()::text) AS body FROM generate_series(1, 1000000) g
            """)
        let size = try await owner.query("SELECT pg_database_size(current_database()) AS bytes").first?.decode("bytes", as: Int.self) ?? 0
        await owner.shutdown()
        #expect(size >= 1_000_000_000, "the database is \(size) bytes")
        // Through S3 (moto), whose upload buffers parts: a buffer that kept every part (it did,
        // once) shows here as a part's size per part.
        let s3 = try await Self.lockedBucket(urls)
        let (_, envelopeText) = Self.base64Key()

        let (process, child) = try Self.startJobs(["backup", "--database-url", urls.source, "--retain-days", "1"], ["BACKUP_ENCRYPTION_KEY": envelopeText, "BACKUP_BUCKET": s3.bucket])
        var peak = 0
        while process.isRunning {
            if let now = RestartixTestSupport.ChildProcess.peakResidentBytes(of: child.pid) { peak = max(peak, now) }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(await child.exit().status == 0)
        print("backup-memory: database \(size >> 20) MiB, peak RSS of restartix-jobs backup \(peak >> 20) MiB (bound \(Self.memoryBound >> 20) MiB)")
        #expect(peak > 0 && peak < Self.memoryBound, "peak RSS \(peak >> 20) MiB")
        try await Self.empty(urls.source)
    }

    @Test("a table or an audit partition the owner cannot read whole is refused, not dumped or archived short")
    func unreadable() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        let owner = try Database(url: urls.source, logger: Self.logger)
        defer { Task { await owner.shutdown() } }
        _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
        try await owner.transaction { tx in
            try await tx.execute("CREATE TABLE hidden (x integer)")
            try await tx.execute("INSERT INTO hidden VALUES (1)")
            try await tx.execute("ALTER TABLE hidden ENABLE ROW LEVEL SECURITY")
            try await tx.execute("ALTER TABLE hidden FORCE ROW LEVEL SECURITY")
        }
        let directory = try TemporaryDirectory("unreadable")
        defer { directory.remove() }
        let (_, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "BACKUP_DIRECTORY": directory.url.path, "AUDIT_ARCHIVE_DIRECTORY": directory.url.path]
        let refused = try await Self.runJobs(["backup", "--database-url", urls.source], env)
        #expect(refused.status == 1 && refused.stderr.contains("cannot read every row of 1 tables (public.hidden)"), "\(refused.stderr)")
        #expect(try await EncryptedArchive.list(in: try LocalObjectStore(directory: directory.url), prefix: "postgres") == [])
        _ = try await owner.execute("CREATE POLICY backup_read ON hidden AS PERMISSIVE FOR SELECT TO restartix_owner USING (true)")
        let taken = try await Self.runJobs(["backup", "--database-url", urls.source], env)
        #expect(taken.status == 0 && taken.stdout.contains("rows in"), "\(taken.stderr)")

        // An audit partition without the owner's policy: its month fails and stays.
        let month = AuditArchive.Month(containing: Date()).adding(-30)
        try await Self.createPartition(owner, month)
        _ = try await owner.execute(SQLQuery(unsafeSQL: "DROP POLICY backup_read ON \(month.partition)"))
        let archived = try await Self.runJobs(["audit-archive", "--database-url", urls.source, "--month", "\(month)"], env)
        #expect(archived.status == 1 && archived.stderr.contains("cannot read every row of \(month.partition)"), "\(archived.stderr)")
        #expect(try await Self.partitionExists(owner, month))
    }

    // MARK: - The audit archive

    /// An `audit_log` partition for `month` as the roller makes them (RLS forced, the owner's
    /// backup_read policy), for a month the roller would not make (it makes the current one on).
    static func createPartition(_ db: Database, _ month: AuditArchive.Month) async throws {
        let next = month.adding(1)
        try await db.transaction { tx in
            try await tx.execute(SQLQuery(unsafeSQL: """
                CREATE TABLE \(month.partition) PARTITION OF audit_log FOR VALUES FROM ('\(month)-01 00:00:00+00') TO ('\(next)-01 00:00:00+00')
                """))
            try await tx.execute(SQLQuery(unsafeSQL: "ALTER TABLE \(month.partition) ENABLE ROW LEVEL SECURITY"))
            try await tx.execute(SQLQuery(unsafeSQL: "ALTER TABLE \(month.partition) FORCE ROW LEVEL SECURITY"))
            try await tx.execute(SQLQuery(unsafeSQL: "CREATE POLICY backup_read ON \(month.partition) AS PERMISSIVE FOR SELECT TO restartix_owner USING (true)"))
        }
    }

    /// Rows of a table as the owner reads them: count and MD5 of the ordered JSON rows.
    static func rows(_ db: Database, _ table: String, organization: UUID? = nil) async throws -> String {
        let filter: SQLQuery = organization.map { "WHERE organization_id = \($0)" } ?? ""
        let row = try await db.query("""
            SELECT count(*) AS n, md5(coalesce(string_agg(row_to_json(t)::text, E'\\n' ORDER BY created_at, id), '')) AS sum FROM \(unsafeRaw: table) t \(filter)
            """).first
        return "\(try row?.decode("n", as: Int.self) ?? -1):\(try row?.decode("sum", as: String.self) ?? "")"
    }

    static func partitionExists(_ db: Database, _ month: AuditArchive.Month) async throws -> Bool {
        try await db.query("SELECT to_regclass(\(month.partition)) IS NOT NULL AS present").first?.decode("present", as: Bool.self) ?? false
    }

    @Test("audit-archive: old months exported, verified, then dropped; resumable; refuses the hot window and a damaged archive; audit-restore brings a month back, one clinic's too")
    func auditArchive() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        let owner = try Database(url: urls.source, logger: Self.logger)
        defer { Task { await owner.shutdown() } }
        _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
        let current = AuditArchive.Month(containing: Date())
        let (old1, old2, hot) = (current.adding(-14), current.adding(-13), current.adding(-11))
        for month in [old1, old2, hot] { try await Self.createPartition(owner, month) }
        let (clinicA, clinicB) = (UUIDv7.generate(), UUIDv7.generate())
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: urls.sourceAdmin), logger: Self.logger)
        try await admin.unscoped(reason: "audit archive drill seed", actor: .system("restore-drill")) { tx in
            for (month, count) in [(old1, 1500), (old2, 700), (hot, 10)] {
                // Clinic A, clinic B and platform rows; every row's metadata names clinic B, so a
                // filter that read the metadata instead of the column would be caught.
                try await tx.execute("""
                    INSERT INTO audit_log (id, organization_id, actor_kind, action, metadata, created_at)
                    SELECT gen_random_uuid(), CASE g % 3 WHEN 0 THEN \(clinicA)::uuid WHEN 1 THEN \(clinicB)::uuid END, 'system', 'drill.event',
                           jsonb_build_object('n', g, 'note', 'a "quote", ünïcode and a \\ backslash', 'organization_id', \(clinicB.lowercasedString)::text),
                           \("\(month)-01 00:00:00+00")::timestamptz + g * interval '1 second'
                    FROM generate_series(1, \(count)) g
                    """)
            }
        }
        await admin.shutdown()
        var before: [AuditArchive.Month: String] = [:]
        for month in [old1, old2, hot] { before[month] = try await Self.rows(owner, month.partition) }
        let beforeA = try await Self.rows(owner, old1.partition, organization: clinicA)
        #expect(before[old1]?.hasPrefix("1500:") == true && beforeA.hasPrefix("500:"))

        let directory = try TemporaryDirectory("audit-archive")
        defer { directory.remove() }
        let (_, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "AUDIT_ARCHIVE_DIRECTORY": directory.url.path, "DATABASE_DIRECT_URL": urls.source]
        let store = try LocalObjectStore(directory: directory.url)

        // A month inside the hot window, and a bad month: refused, nothing done.
        let inHot = try await Self.runJobs(["audit-archive", "--month", "\(hot)"], env)
        #expect(inHot.status == 1 && inHot.stderr.contains("inside the hot window"), "\(inHot.stderr)")
        #expect(try await Self.runJobs(["audit-archive", "--month", "2025-13"], env).status != 0)

        // Export only: both old months archived and verified, no partition dropped.
        let exported = try await Self.runJobs(["audit-archive", "--export-only", "--json"], env)
        #expect(exported.status == 0, "\(exported.stderr)")
        #expect(exported.stdout.components(separatedBy: "\"exported\"").count == 3, "\(exported.stdout)")
        for month in [old1, old2] { #expect(try await Self.partitionExists(owner, month)) }
        let archives = try await EncryptedArchive.list(in: store, prefix: "audit")
        #expect(archives.count == 2 && archives[0].hasPrefix("\(old1)-") && archives[1].hasPrefix("\(old2)-"), "\(archives)")

        // A damaged archive of old2: the next run drops old1 (its archive checks out) and fails
        // old2, keeping its partition.
        let damagedKey = try EncryptedArchive.objectKey(prefix: "audit", id: archives[1])
        var damaged = try #require(try await store.get(damagedKey))
        damaged[damaged.count / 2] ^= 0x04
        try await store.put(damaged, at: damagedKey)
        let refused = try await Self.runJobs(["audit-archive"], env)
        #expect(refused.status == 1 && refused.stderr.contains("backup.authenticationFailed"), "\(refused.stderr)")
        #expect(try await !Self.partitionExists(owner, old1))
        #expect(try await Self.rows(owner, old2.partition) == before[old2], "nothing of old2 lost")

        // A new export of old2 past the damaged one (--fresh), then the run resumes from it.
        let freshRun = try await Self.runJobs(["audit-archive", "--month", "\(old2)", "--fresh", "--export-only", "--json"], env)
        #expect(freshRun.status == 0 && freshRun.stdout.contains("\"exported\""), "\(freshRun.stderr)")
        let resumed = try await Self.runJobs(["audit-archive", "--json"], env)
        #expect(resumed.status == 0 && resumed.stdout.contains("\"resumed\""), "\(resumed.stderr) \(resumed.stdout)")
        #expect(try await !Self.partitionExists(owner, old2))
        #expect(try await Self.rows(owner, hot.partition) == before[hot], "the hot window untouched")
        let again = try await Self.runJobs(["audit-archive", "--month", "\(old1)", "--json"], env)
        #expect(again.status == 0 && again.stdout.contains("\"alreadyArchived\""), "\(again.stdout)")

        // Back for an investigation: the whole month, and clinic A's rows alone.
        let whole = try await Self.runJobs(["audit-restore", "--month", "\(old1)"], env)
        #expect(whole.status == 0 && whole.stdout.contains("1500 rows"), "\(whole.stderr)")
        #expect(try await Self.rows(owner, "audit_restore.\(old1.partition)") == before[old1])
        let onlyA = try await Self.runJobs(["audit-restore", "--month", "\(old1)", "--organization", clinicA.lowercasedString], env)
        #expect(onlyA.status == 0, "\(onlyA.stderr)")
        let sideA = "audit_restore.\(old1.partition)_org_\(clinicA.lowercasedString.replacingOccurrences(of: "-", with: ""))"
        #expect(try await Self.rows(owner, sideA) == beforeA)
        let twice = try await Self.runJobs(["audit-restore", "--month", "\(old1)"], env)
        #expect(twice.status == 1 && twice.stderr.contains("backup.targetNotEmpty"), "\(twice.stderr)")
        #expect(try await Self.runJobs(["audit-restore", "--month", "\(hot)"], env).stderr.contains("backup.notFound"))
        // The platform schema is as the migrations left it (the side tables live in a schema of
        // their own, dropped partitions are not in the baseline): the boot checks still pass.
        let app = TenantDatabase(configuration: try DatabaseConfiguration(url: urls.sourceApp), tables: PlatformSchema.tenantTables, logger: Self.logger)
        try await app.verifyIsolation()
        await app.shutdown()
        let checkAdmin = AdminDatabase(configuration: try DatabaseConfiguration(url: urls.sourceAdmin), logger: Self.logger)
        try await checkAdmin.verifyIsolation()
        await checkAdmin.shutdown()
    }

    @Test("audit-archive: audit_log held by a long reader (a backup) leaves the month skippedBusy, whole; the next run drops it")
    func auditArchiveBusy() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        let owner = try Database(url: urls.source, logger: Self.logger)
        defer { Task { await owner.shutdown() } }
        _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
        let month = AuditArchive.Month(containing: Date()).adding(-25)
        try await Self.createPartition(owner, month)
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: urls.sourceAdmin), logger: Self.logger)
        try await admin.unscoped(reason: "audit archive drill seed", actor: .system("restore-drill")) { tx in
            try await tx.execute("""
                INSERT INTO audit_log (id, actor_kind, action, created_at)
                SELECT gen_random_uuid(), 'system', 'drill.busy', \("\(month)-01 00:00:00+00")::timestamptz + g * interval '1 minute'
                FROM generate_series(1, 50) g
                """)
        }
        await admin.shutdown()
        let before = try await Self.rows(owner, month.partition)
        let directory = try TemporaryDirectory("audit-archive-busy")
        defer { directory.remove() }
        let (_, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "AUDIT_ARCHIVE_DIRECTORY": directory.url.path, "DATABASE_DIRECT_URL": urls.source]

        // A reader of audit_log (as pg_dump is for a whole backup) while the job runs.
        let reader = try Database(url: urls.source, logger: Self.logger)
        let started = AsyncStream<Void>.makeStream()
        let holding = Task {
            try await reader.transaction { tx in
                _ = try await tx.query("SELECT count(*) AS n FROM audit_log")
                started.continuation.yield()
                try await Task.sleep(for: .seconds(8))
            }
        }
        for await _ in started.stream { break }
        let busy = try await Self.runJobs(["audit-archive", "--json"], env)
        #expect(busy.status == 0 && busy.stdout.contains("\"skippedBusy\""), "\(busy.stdout) \(busy.stderr)")
        #expect(try await Self.rows(owner, month.partition) == before)
        try await holding.value
        await reader.shutdown()

        let next = try await Self.runJobs(["audit-archive", "--json"], env)
        #expect(next.status == 0 && next.stdout.contains("\"resumed\""), "\(next.stdout) \(next.stderr)")
        #expect(try await !Self.partitionExists(owner, month))
    }

    @Test("audit-archive: a month another run holds is skipped; a run killed mid-export, or once its archive is written but before the drop, loses nothing; the next one checks that archive again and drops the month")
    func auditArchiveConcurrentAndKilled() async throws {
        guard let urls = try URLs.load() else { return }
        try await Self.empty(urls.source)
        let owner = try Database(url: urls.source, logger: Self.logger)
        defer { Task { await owner.shutdown() } }
        _ = try await Migrator(platformSchemaOn: owner, logger: Self.logger).migrate()
        let month = AuditArchive.Month(containing: Date()).adding(-20)
        try await Self.createPartition(owner, month)
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: urls.sourceAdmin), logger: Self.logger)
        try await admin.unscoped(reason: "audit archive drill seed", actor: .system("restore-drill")) { tx in
            try await tx.execute("""
                INSERT INTO audit_log (id, organization_id, actor_kind, action, metadata, created_at)
                SELECT gen_random_uuid(), NULL, 'system', 'drill.bulk', jsonb_build_object('n', g, 'pad', repeat(md5(g::text), 4)),
                       \("\(month)-01 00:00:00+00")::timestamptz + g * interval '10 millisecond'
                FROM generate_series(1, 60000) g
                """)
        }
        await admin.shutdown()
        let before = try await Self.rows(owner, month.partition)
        let directory = try TemporaryDirectory("audit-archive-kill")
        defer { directory.remove() }
        let (_, envelopeText) = Self.base64Key()
        let env = ["BACKUP_ENCRYPTION_KEY": envelopeText, "AUDIT_ARCHIVE_DIRECTORY": directory.url.path, "DATABASE_DIRECT_URL": urls.source]
        let store = try LocalObjectStore(directory: directory.url)

        // Another run holds the month (its advisory lock, from another connection): skipped.
        let holder = try Database(url: urls.source, logger: Self.logger)
        _ = try await holder.query("SELECT pg_advisory_lock(hashtext('restartix_audit_archive'), hashtext(\(month.partition)))")
        let skipped = try await Self.runJobs(["audit-archive", "--json"], env)
        #expect(skipped.status == 0 && skipped.stdout.contains("\"skippedInProgress\""), "\(skipped.stdout) \(skipped.stderr)")
        await holder.shutdown()
        #expect(try await Self.partitionExists(owner, month))

        // Killed once its upload has begun: the partition is whole, no archive is listed.
        let (process, child) = try Self.startJobs(["audit-archive"], env)
        let uploads = directory.url.appendingPathComponent("uploads")
        var uploading = false
        for _ in 0..<1500 where !uploading {
            try await Task.sleep(for: .milliseconds(10))
            uploading = !((try? FileManager.default.contentsOfDirectory(atPath: uploads.path)) ?? []).isEmpty
        }
        #expect(uploading, "the export never began its upload")
        #expect(process.isRunning, "the run must still be exporting when it is killed")
        kill(child.pid, SIGKILL)
        #expect(await child.exit().reason == .uncaughtSignal)
        #expect(try await Self.rows(owner, month.partition) == before)
        #expect(try await EncryptedArchive.list(in: store, prefix: "audit") == [])

        // Killed after its archive is written and read back, while it waits (two seconds at
        // most) to detach the partition, which a reader here holds: the partition is whole and
        // the archive listed; the next run checks that archive against the partition again
        // and only then drops it ("resumed").
        let reader = try Database(url: urls.source, logger: Self.logger)
        try await reader.transaction { tx in
            _ = try await tx.execute("LOCK TABLE \(identifier: month.partition) IN ACCESS SHARE MODE")
            let (process, child) = try Self.startJobs(["audit-archive"], env)
            var listed = false
            for _ in 0..<3000 where !listed {
                try await Task.sleep(for: .milliseconds(10))
                listed = try await !EncryptedArchive.list(in: store, prefix: "audit").isEmpty
            }
            #expect(listed, "the archive was never written")
            // Killed while it waits; a machine stalled past its two seconds of waiting sees it
            // give up by itself instead (skippedBusy, status 0): the same state either way.
            if process.isRunning { kill(child.pid, SIGKILL) }
            let exit = await child.exit()
            #expect(exit.reason == .uncaughtSignal || exit.status == 0, "\(exit)")
        }
        await reader.shutdown()
        #expect(try await Self.partitionExists(owner, month))
        #expect(try await Self.rows(owner, month.partition) == before)
        #expect(try await EncryptedArchive.list(in: store, prefix: "audit").count == 1)

        let finished = try await Self.runJobs(["audit-archive", "--json"], env)
        #expect(finished.status == 0 && finished.stdout.contains("\"resumed\""), "\(finished.stdout) \(finished.stderr)")
        #expect(try await !Self.partitionExists(owner, month))
        let restored = try await Self.runJobs(["audit-restore", "--month", "\(month)"], env)
        #expect(restored.status == 0, "\(restored.stderr)")
        #expect(try await Self.rows(owner, "audit_restore.\(month.partition)") == before)
    }
}

/// Rows for the tables the tenancy fixture does not write (those are not tenant tables).
enum DrillSeed {
    static func platformTables(_ tx: borrowing AdminTransaction, fixture: TenancyFixture, cipher: ColumnCipher) async throws {
        let provider = UUIDv7.generate()
        let credentials = try cipher.seal(Data(#"{"api_key":"drill-secret"}"#.utf8), at: ColumnPlace(table: "platform_service_providers", column: "credentials", organizationID: nil, rowID: provider))
        try await tx.execute("""
            INSERT INTO platform_service_providers (id, capability, provider_kind, config, credentials) \
            VALUES (\(provider), 'video', 'daily', '{"url": "https://api.daily.co/v1"}', \(credentials))
            """)
        try await tx.execute("INSERT INTO email_suppressions (address_index, reason, source) VALUES (\(Data(repeating: 7, count: 32)), 'bounce', 'drill')")
        try await tx.execute("INSERT INTO inbound_webhook_events (id, provider, event_id, event_type) VALUES (\(UUIDv7.generate()), 'clerk', 'evt_drill', 'user.created')")
        try await tx.execute("INSERT INTO clerk_sync_state (entity, clerk_id, event_at) VALUES ('user', 'user_drill', 1)")
        try await tx.execute("INSERT INTO user_activity (user_id, last_activity_at) VALUES (\(fixture.a.staffUser), now())")
        try await tx.execute("INSERT INTO slot_holds (slot_id, holder, token, fence, expires_at) VALUES ('drill-slot', 'drill-holder', 'drill-token', 1, now() + interval '1 hour')")
    }
}
