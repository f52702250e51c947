import Foundation
import Logging
import RestartixPlatform
import RestartixKit
import RestartixTestSupport
import Testing

/// A database in its own namespace: a fresh SQLite file, or a fresh Postgres schema reached with
/// `search_path` (owner role, direct: migrations never go through PgBouncer).
struct MigrationSandbox {
    let backend: TestBackend
    let url: String
    /// The platform (admin) role on the same schema; the same database on SQLite.
    var platformURL: String? = nil
    let cleanup: @Sendable () async throws -> Void

    static func make(_ backend: TestBackend) async throws -> MigrationSandbox {
        if backend == .sqlite {
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-mig-\(UUID().uuidString).sqlite").path
            return MigrationSandbox(backend: backend, url: "sqlite://" + path) {
                for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
            }
        }
        let owner = try TestBackend.require("DATABASE_DIRECT_URL")
        let schema = "mig_\(UUID().uuidString.prefix(8).lowercased())"
        let admin = try Database(url: owner, logger: TestBackend.logger)
        try await admin.execute(SQLQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
        await admin.shutdown()
        let platform = try TestBackend.require("DATABASE_ADMIN_DIRECT_URL") + "&options=-csearch_path%3D\(schema)"
        return MigrationSandbox(backend: backend, url: owner + "&options=-csearch_path%3D\(schema)", platformURL: platform) {
            let admin = try Database(url: owner, logger: TestBackend.logger)
            try await admin.execute(SQLQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
            await admin.shutdown()
        }
    }

    /// A database on the sandbox. SQLite waits `busyTimeout` for a lock another connection holds
    /// (a concurrent migrator holds it for the whole migration, which a loaded CI machine can
    /// stretch past the 5 s default).
    func database(busyTimeout: Duration = .seconds(5)) throws -> Database {
        var configuration = try DatabaseConfiguration(url: url)
        configuration.sqlite.busyTimeout = busyTimeout
        return Database(configuration: configuration, logger: TestBackend.logger)
    }

    /// A connection for platform work on every clinic's rows: tenant tables show rows only
    /// under a context or `app.unscoped` (row-level security on Postgres, policy views on
    /// SQLite), so the setting is made for the whole session of this one test connection.
    func withUnscopedConnection<T>(_ body: (borrowing DatabaseConnection) async throws -> T) async throws -> T {
        var configuration = try DatabaseConfiguration(url: platformURL ?? url)
        configuration.maximumConnections = 1
        let db = Database(configuration: configuration, logger: TestBackend.logger)
        do {
            let result = try await db.withConnection { conn in
                try await conn.query("SELECT set_config('app.unscoped', 'on', false)")
                return try await body(conn)
            }
            await db.shutdown()
            return result
        } catch {
            await db.shutdown()
            throw error
        }
    }

    func run<T>(_ body: (MigrationSandbox) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            try await cleanup()
            return result
        } catch {
            try? await cleanup()
            throw error
        }
    }
}

@Suite("Migrations", .timeLimit(.minutes(3)))
struct MigrationTests {
    static let backends = TestBackend.all.filter { $0 != .pgbouncer }

    @Test("fresh apply, then re-apply is a no-op", arguments: backends)
    func applyAndReapply(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            let db = try sandbox.database()
            let migrator = Migrator(platformSchemaOn: db, logger: TestBackend.logger)
            let first = try await migrator.migrate()
            #expect(first.applied == MigrationSet.platform(for: db.dialect).migrations.map(\.version))
            let second = try await migrator.migrate()
            #expect(second.applied.isEmpty)
            #expect(second.alreadyApplied == first.applied)
            // The schema is usable: every table of the foundation exists.
            for table in ["organizations", "organization_domains", "users", "memberships", "patients",
                          "platform_service_providers", "audit_log", "usage_records", "usage_quotas",
                          "usage_summaries", "break_glass_sessions", "patient_impersonation_sessions",
                          "inbound_webhook_events", "pose_session_metrics", "pose_rep_metrics",
                          "media_session_metrics", "media_buffering_events"] {
                _ = try await db.query(SQLQuery(unsafeSQL: "SELECT count(*) FROM \(table)"))
            }
            let recorded = try await migrator.appliedChecksums()
            #expect(recorded[1] == MigrationSet.platform(for: db.dialect).migrations[0].checksum)
            await db.shutdown()
        }
    }

    @Test("the schema enforces its constraints", arguments: backends)
    func schemaConstraints(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            let db = try sandbox.database()
            try await Migrator(platformSchemaOn: db, logger: TestBackend.logger).migrate()
            await db.shutdown()
            try await sandbox.withUnscopedConnection { conn in
                let org = UUIDv7.generate()
                try await conn.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), \("clinic-a"), \("Clinic A"))")
                let duplicate = await #expect(throws: DatabaseError.self) {
                    try await conn.execute("INSERT INTO organizations (id, slug, name) VALUES (\(UUIDv7.generate()), \("clinic-a"), \("Again"))")
                }
                #expect(duplicate?.code == .uniqueViolation)
                let badSlug = await #expect(throws: DatabaseError.self) {
                    try await conn.execute("INSERT INTO organizations (id, slug, name) VALUES (\(UUIDv7.generate()), \("Bad Slug"), \("x"))")
                }
                #expect(badSlug?.code == .checkViolation)
                // One platform default per capability (NULL organization counts as one value).
                try await conn.execute("INSERT INTO platform_service_providers (id, capability, provider_kind) VALUES (\(UUIDv7.generate()), \("email"), \("ses"))")
                let second = await #expect(throws: DatabaseError.self) {
                    try await conn.execute("INSERT INTO platform_service_providers (id, capability, provider_kind) VALUES (\(UUIDv7.generate()), \("email"), \("ses"))")
                }
                #expect(second?.code == .uniqueViolation)
                try await conn.execute("INSERT INTO platform_service_providers (id, capability, organization_id, provider_kind) VALUES (\(UUIDv7.generate()), \("email"), \(org), \("ses"))")
                // Composite foreign keys: a metric row cannot point at another clinic's patient.
                let other = UUIDv7.generate()
                try await conn.execute("INSERT INTO organizations (id, slug, name) VALUES (\(other), \("clinic-b"), \("Clinic B"))")
                let patient = UUIDv7.generate()
                try await conn.execute("INSERT INTO patients (id, organization_id, name) VALUES (\(patient), \(org), \(Data([1, 2, 3])))")
                let crossClinic = await #expect(throws: DatabaseError.self) {
                    try await conn.execute(
                        """
                        INSERT INTO pose_session_metrics (id, organization_id, patient_id, exercise, started_at, ended_at, rep_count)
                        VALUES (\(UUIDv7.generate()), \(other), \(patient), \("squat"), \(Date()), \(Date()), \(0))
                        """
                    )
                }
                #expect(crossClinic?.code == .foreignKeyViolation)
                // Partitioned tables accept rows for the current month.
                try await conn.execute(
                    "INSERT INTO audit_log (id, organization_id, actor_kind, action) VALUES (\(UUIDv7.generate()), \(org), \("system"), \("test"))"
                )
            }
        }
    }

    @Test("a changed applied migration is refused", arguments: backends)
    func changedMigrationRefused(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            let db = try sandbox.database()
            let original = try MigrationSet([Migration(version: 1, name: "one", sql: "CREATE TABLE one (id integer)")])
            try await Migrator(database: db, migrations: original, logger: TestBackend.logger).migrate()
            let edited = try MigrationSet([
                Migration(version: 1, name: "one", sql: "CREATE TABLE one (id integer, extra integer)"),
                Migration(version: 2, name: "two", sql: "CREATE TABLE two (id integer)"),
            ])
            let error = await #expect(throws: DatabaseError.self) {
                try await Migrator(database: db, migrations: edited, logger: TestBackend.logger).migrate()
            }
            #expect(error?.code == .migration)
            #expect(error?.description.contains("migration 1 (one) was changed") == true)
            // Nothing of version 2 was applied.
            await #expect(throws: DatabaseError.self) { try await db.query("SELECT * FROM two") }

            // A database ahead of the build is refused too.
            let empty = try MigrationSet([])
            let ahead = await #expect(throws: DatabaseError.self) {
                try await Migrator(database: db, migrations: empty, logger: TestBackend.logger).migrate()
            }
            #expect(ahead?.description.contains("does not know") == true)
            await db.shutdown()
        }
    }

    @Test("a failing migration leaves nothing half-applied", arguments: backends)
    func failingMigrationRollsBack(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            let db = try sandbox.database()
            let set = try MigrationSet([
                Migration(version: 1, name: "good", sql: "CREATE TABLE good (id integer)"),
                Migration(version: 2, name: "bad", sql: "CREATE TABLE half (id integer); INSERT INTO no_such_table VALUES (1);"),
            ])
            let error = await #expect(throws: DatabaseError.self) {
                try await Migrator(database: db, migrations: set, logger: TestBackend.logger).migrate()
            }
            #expect(error?.code == .migration)
            #expect(error?.description.contains("migration 2 (bad) failed") == true)
            _ = try await db.query("SELECT * FROM good")
            await #expect(throws: DatabaseError.self) { try await db.query("SELECT * FROM half") }
            let applied = try await Migrator(database: db, migrations: set, logger: TestBackend.logger).appliedChecksums()
            #expect(Array(applied.keys) == [1])
            await db.shutdown()
        }
    }

    @Test("two concurrent runs apply each migration once", arguments: backends)
    func concurrentRuns(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            // What this checks is exactly-once, not how fast: on SQLite the second run waits for
            // the first's write lock, and a two-core runner busy with the whole suite has held
            // one migration's transaction open past a minute (its statements' tasks queued for
            // the CPU). The suite's time limit bounds the wait instead.
            let a = try sandbox.database(busyTimeout: .seconds(170))
            let b = try sandbox.database(busyTimeout: .seconds(170))
            async let first = Migrator(platformSchemaOn: a, logger: TestBackend.logger).migrate()
            async let second = Migrator(platformSchemaOn: b, logger: TestBackend.logger).migrate()
            let reports = try await [first, second]
            let expected = MigrationSet.platform(for: a.dialect).migrations.map(\.version)
            #expect((reports[0].applied + reports[1].applied).sorted() == expected)
            #expect((reports[0].alreadyApplied + reports[1].alreadyApplied).sorted() == expected)
            let rows = try await a.query("SELECT count(*) AS n FROM schema_migrations")
            #expect(try rows.first?.decode("n", as: Int.self) == expected.count)
            await a.shutdown()
            await b.shutdown()
        }
    }

    @Test("partition roll twice gives the same state", arguments: backends)
    func partitionRoll(backend: TestBackend) async throws {
        try await MigrationSandbox.make(backend).run { sandbox in
            let db = try sandbox.database()
            try await Migrator(platformSchemaOn: db, logger: TestBackend.logger).migrate()
            let roller = PartitionRoller(database: db)
            guard backend.isPostgres else {
                #expect(try await roller.roll() == nil)
                await db.shutdown()
                return
            }
            func partitions() async throws -> [String] {
                try await db.query(
                    """
                    SELECT c.relname AS name FROM pg_inherits i
                    JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY 1
                    """
                ).map { try $0.decode("name", as: String.self) }
            }
            // The migration provisioned the current month and the next 3 for all 4 tables.
            let initial = try await partitions()
            #expect(initial.count == 16)
            let first = try #require(try await roller.roll())
            #expect(first.values.reduce(0, +) == 0)
            #expect(first.count == 4)
            let wider = try #require(try await roller.roll(monthsAhead: 5))
            #expect(wider == ["audit_log": 2, "media_buffering_events": 2, "pose_rep_metrics": 2, "usage_records": 2])
            let after = try await partitions()
            #expect(try #require(try await roller.roll(monthsAhead: 5)).values.reduce(0, +) == 0)
            #expect(try await partitions() == after)
            #expect(after.count == 24)
            await #expect(throws: DatabaseError.self) { try await roller.roll(monthsAhead: 99) }
            await db.shutdown()
        }
    }
}

@Suite("Migration sets (no services)", .timeLimit(.minutes(3)))
struct MigrationSetTests {
    @Test("the built-in sets are valid and share versions and names across dialects")
    func builtIns() {
        let postgres = MigrationSet.platform(for: .postgres).migrations
        let sqlite = MigrationSet.platform(for: .sqlite).migrations
        #expect(postgres.map(\.version) == sqlite.map(\.version))
        #expect(postgres.map(\.name) == sqlite.map(\.name))
    }

    /// Applied migrations are immutable: an edit (or a re-run of the SQLite generator that
    /// changes its output) would make every database that applied them refuse to start.
    @Test("shipped migrations never change (checksums pinned)")
    func pinned() {
        let pins: [SQLDialect: [String]] = [
            .postgres: [
                "5a1ae1ff79b9589bcef29b625261668b87db7996b500434a5c6a609e5af4bdad",
                "e0a7a35961c5e571cbdfa1e055115c7806d67de709739168741e09029db9767d",
                "a4ffb2b7b7c0c50fbb3f437b1e75add3b17191d41e958893e6e52e69bb98b88e",
                "533c71a8b015bbf532c5a96b0e7e445f95ef290d87a01b14bf781ca013ae68ec",
                "7d2346cde3844b40b0f91f232544991e964bab4ddae361b82329fff6202d9b37",
                "b4ed88ad85b740076b7e66d3b4e3f0ceba7df0e8270ff4eca62e6402c4e5b1cf",
                "bff6c48dedb05e0154a5d39b8d3a929bbaf8b86615bb88370598185f9296fa0d",
                "92b742c7b014a9a928e2834fc081bbd48103cd539ec755bc99521cb906748c07",
                "bf2994cae8c529c405cf52fe60de6aa8635536cf59d6dd65c088662d7efbbd08",
                "1ccdd91ddcb250940dc4c7dca34c1529c93ffef0f21b5c3ea243794bb476056c",
                "ed4df603f46db58ea4c7583b8c0aebda137df22c0faf8122c3f75c9712e5ec25",
                "e0fe1d25fae382f2f121d5d0a40f7b32413d389b3893e674c88cda98ef710a42",
                "ec4987117c7fbe4ad39a716ac06e067c2d56915db2d80258694130b8d858fdeb",
                "1948d0db37371f37328b6a9ae366dc3b52c8f54c9bb1c5118fd2ff5d6e164660",
                "5768626f812e6a64b426322c063ac5637e0425248ffef4be4917431d9d339758",
                "75979daa51b285e1dfd65c38f4e6c2a7fdd979eb72c5c4c3cd840aa9a2ece219",
                "4effc7a49925352876aaa348a418206b85ab859bb4551c75d771b0610a333b69",
            ],
            .sqlite: [
                "972fa40c442d7d12de934e59ac52e2e5fe6491cf635174073884e25f121623a1",
                "127aebdaaea68dc5dc3c3278a26038548099382138df314fd1c3db935d38cea8",
                "bec02cfe26c74a6b71d6aa3d303302992dad54df08bcbb8edb859d92c8d0222f",
                "9da324fd84e3c8e5477d52ba998d6d9b2e1786bda3cac5adb0c5cfb16a753a2c",
                "5067c87e9825cf66a0153426b7f7d115985d736facab4db37e1e04e688cdc30b",
                "3a970bd19124efc7dd773c101979166a9922930aa91f41f14b995f9d8c7783d8",
                "5bc2e2f683e7a81d264169e09fd1c028e0b94b8bc99558e0e4c896fb79874b12",
                "beb5625ab723f76a3c17be445f7d85e87fc9269cfb6be5d68af588e8170952c6",
                "a22d78589e03084883d8938a709b91bfaed79f9df4aecf5abd93b1ca3dce97c1",
                "5ae4a23e843f893f00453a1783d57c61e94d28a5242a1bb7bf516c125bf8f4a5",
                "5a8bfefecd8796657444ea30aef67c6d83ae9eea7cee8f452915a5d459192277",
                "d2f92caac7aa530e3232b19eda43beed1dea54fb06473fed1c86a1903ca0bdfb",
                "6fd1be8abe116dc6e394a0368ecaf2c4272178720957658fb96cd01dd88332a2",
                "fcc6c7a87858cb9db00089435fdb6c4890619fe19b0056a09dcf437332e7ee5d",
                "3afdfb75d6cebf5f013ad9e86109683d612f80b76f588f879e4c7ba097524d67",
                "bfc77acb624bd8612499c091966b9c41c3510e667fec2e4b53082394f2c52156",
                "6d391c2b5f1abdcff48e89a40b347a2e36782352c3d74da6d8ae45dd6de1a156",
            ],
        ]
        for (dialect, checksums) in pins {
            let shipped = MigrationSet.platform(for: dialect).migrations.map(\.checksum)
            #expect(Array(shipped.prefix(checksums.count)) == checksums, "\(dialect)")
        }
    }

    /// The SQLite policies in force are the ones a reviewer reads: migration 7 makes every view
    /// and trigger of migration 6 again, one clause a line.
    @Test("the SQLite policies in force are migration 7's, one clause a line")
    func legiblePolicies() async throws {
        let seven = try #require(MigrationSet.platform(for: .sqlite).migrations.first { $0.version == 7 })
        let lines = seven.sql.split(separator: "\n")
        #expect(lines.count > 1000)
        let longest = lines.map(\.count).max() ?? 0
        #expect(longest <= 200, "a line of \(longest) characters")
        // No line joins two alternatives of a rule: AND/OR start lines, they do not run on.
        let runOn = lines.filter { $0.components(separatedBy: " OR ").count > 3 || $0.components(separatedBy: " AND ").count > 4 }
        #expect(runOn.isEmpty, "\(runOn.prefix(3))")
        let database = try Database(url: "sqlite::memory:", logger: Logger(label: "test"))
        try await Migrator(platformSchemaOn: database, logger: Logger(label: "test")).migrate()
        let views = try await database.query("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
        let tenantTables = try await database.query("SELECT count(*) AS n FROM restartix_tenant_tables").first?.decode("n", as: Int.self)
        #expect(views.count == (tenantTables ?? 0) + 1 && views.count > 10, "every tenant table, and users")
        for view in views {
            let sql = try view.decode("sql", as: String.self), name = try view.decode("name", as: String.self)
            #expect(sql.contains("\n    CASE WHEN current_setting('restartix.connection_role', 1) IS 'app' THEN\n"), "\(name)")
        }
        await database.shutdown()
    }

    @Test("gaps, duplicates, bad names and empty scripts are refused")
    func invalidSets() {
        let gap = #expect(throws: DatabaseError.self) {
            try MigrationSet([Migration(version: 1, name: "a", sql: "x"), Migration(version: 3, name: "c", sql: "x")])
        }
        #expect(gap?.description.contains("version 2 is missing") == true)
        let duplicate = #expect(throws: DatabaseError.self) {
            try MigrationSet([Migration(version: 1, name: "a", sql: "x"), Migration(version: 1, name: "b", sql: "x")])
        }
        #expect(duplicate?.description.contains("two migrations have version 1") == true)
        #expect(throws: DatabaseError.self) { try MigrationSet([Migration(version: 1, name: "Bad Name", sql: "x")]) }
        #expect(throws: DatabaseError.self) { try MigrationSet([Migration(version: 1, name: "empty", sql: "  \n")]) }
    }

    @Test("a migration folder with a gap, a duplicate or a stray file is refused")
    func folders() throws {
        func folder(_ files: [String: String]) throws -> URL {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-migrations-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            for (name, sql) in files { try sql.write(to: url.appendingPathComponent(name), atomically: true, encoding: .utf8) }
            return url
        }
        let good = try MigrationSet.load(directory: folder(["0001_first.sql": "CREATE TABLE a (x integer);", "0002_second.sql": "SELECT 1;"]))
        #expect(good.migrations.map(\.name) == ["first", "second"])
        let gap = #expect(throws: DatabaseError.self) {
            try MigrationSet.load(directory: folder(["0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"]))
        }
        #expect(gap?.code == .migration)
        let duplicate = #expect(throws: DatabaseError.self) {
            try MigrationSet.load(directory: folder(["0001_a.sql": "SELECT 1;", "001_b.sql": "SELECT 1;"]))
        }
        #expect(duplicate?.description.contains("two migrations have version 1") == true)
        let stray = #expect(throws: DatabaseError.self) {
            try MigrationSet.load(directory: folder(["0001_a.sql": "SELECT 1;", "README.md": "notes"]))
        }
        #expect(stray?.description.contains("README.md is not named NNNN_name.sql") == true)
        #expect(throws: DatabaseError.self) {
            try MigrationSet.load(directory: URL(fileURLWithPath: "/nonexistent/migrations"))
        }
    }
}
