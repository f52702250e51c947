import Foundation
import RestartixPlatform
import RestartixKit
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// A migrated schema of its own, so tests can break it without touching the shared one.
struct TenancySandbox {
    let schema: String
    let owner: Database

    static func make() async throws -> TenancySandbox {
        let ownerURL = try TenancyBackend.require("DATABASE_DIRECT_URL")
        let schema = "ten_\(UUID().uuidString.prefix(8).lowercased())"
        let bootstrap = try Database(url: ownerURL, logger: TenancyBackend.logger)
        try await bootstrap.execute(SQLQuery(unsafeSQL: "CREATE SCHEMA \(schema)"))
        await bootstrap.shutdown()
        let owner = try Database(url: ownerURL + "&options=-csearch_path%3D\(schema)", logger: TenancyBackend.logger)
        _ = try await Migrator(platformSchemaOn: owner, logger: TenancyBackend.logger).migrate()
        return TenancySandbox(schema: schema, owner: owner)
    }

    /// The app role (or another role's URL) connected straight to this schema.
    func database(urlNamed name: String = "DATABASE_APP_DIRECT_URL") throws -> TenantDatabase {
        let url = try TenancyBackend.require(name) + "&options=-csearch_path%3D\(schema)"
        return try TenantDatabase(url: url, tables: PlatformSchema.tenantTables, settings: TenantSessionSettings(schema: schema), logger: TenancyBackend.logger)
    }

    func ownerScript(_ sql: String) async throws {
        try await owner.withConnection { try await $0.executeScript(sql) }
    }

    func drop() async {
        _ = try? await owner.execute(SQLQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        await owner.shutdown()
    }

    func run(_ body: (TenancySandbox) async throws -> Void) async throws {
        do {
            try await body(self)
        } catch {
            await drop()
            throw error
        }
        await drop()
    }
}

@Suite("Tenancy boot checks", .timeLimit(.minutes(3)))
struct BootCheckTests {
    static let enabled = TenancyBackend.all.contains(.postgresDirect)

    /// The check's problems for the app role on `sandbox`, or [] when it passes.
    func problems(_ sandbox: TenancySandbox, urlNamed name: String = "DATABASE_APP_DIRECT_URL") async throws -> [String] {
        try await isolationProblems(sandbox.database(urlNamed: name))
    }

    @Test("a correctly migrated database passes, for the app and the admin role", .enabled(if: enabled))
    func passes() async throws {
        try await TenancySandbox.make().run { sandbox in
            #expect(try await problems(sandbox) == [])
            let admin = try AdminDatabase(
                url: TenancyBackend.require("DATABASE_ADMIN_DIRECT_URL") + "&options=-csearch_path%3D\(sandbox.schema)",
                logger: TenancyBackend.logger
            )
            try await admin.verifyIsolation()
            await admin.shutdown()
        }
    }

    @Test("the migrated database passes on every backend, for the app and the admin database", arguments: TenancyBackend.all)
    func migratedPasses(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        try await databases.app.verifyIsolation()
        try await databases.admin.verifyIsolation()
        await databases.close()
    }

    @Test("SQLite: a plain connection, a missing policy view or trigger are refused")
    func sqliteRefusals() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let path = try #require(databases.sqlitePath)
        // The raw app pool has the app setup; a plain pool on the same file does not.
        let plain = TenantDatabaseProbe(path: path)
        let found = try await plain.problems()
        #expect(found.contains { $0.contains("not set up as an app connection") })
        #expect(found.contains { $0.contains("patients__rows directly") })
        #expect(found.contains { $0.contains("app.unscoped") })
        #expect(found.contains { $0.contains("audit_log__rows directly") })
        let owner = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TenancyBackend.logger)
        try await owner.withConnection { try await $0.executeScript("DROP TRIGGER patients__update; DROP VIEW usage_quotas") }
        await owner.shutdown()
        await #expect {
            try await databases.app.verifyIsolation()
        } throws: { error in
            let problems = (error as? TenancyError)?.problems ?? []
            return problems.count == 2
                && problems.contains { $0.contains("patients__update") }
                && problems.contains { $0.contains("usage_quotas") && $0.contains("policy view") }
        }
        await databases.close()
    }

    @Test("a tenant table that lost FORCE ROW LEVEL SECURITY is refused, by name", .enabled(if: enabled))
    func lostForce() async throws {
        try await TenancySandbox.make().run { sandbox in
            try await sandbox.ownerScript("ALTER TABLE patients NO FORCE ROW LEVEL SECURITY")
            let found = try await problems(sandbox)
            #expect(found.count == 2)
            #expect(found.contains { $0.contains("patients") && $0.contains("not forced") })
            #expect(found.contains { $0.contains("patients") && $0.contains("differ from what the migrations set") })
        }
    }

    @Test("a partition without RLS, a disabled table and a missing policy are each named", .enabled(if: enabled))
    func partitionAndPolicy() async throws {
        try await TenancySandbox.make().run { sandbox in
            let partition = try await sandbox.owner.query("""
                SELECT c.relname::text AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'audit_log'::regclass ORDER BY 1 LIMIT 1
                """).first?.decode("name", as: String.self)
            let name = try #require(partition)
            try await sandbox.ownerScript("""
                ALTER TABLE \(name) NO FORCE ROW LEVEL SECURITY;
                ALTER TABLE usage_quotas DISABLE ROW LEVEL SECURITY;
                DROP POLICY tenant_isolation ON media_session_metrics;
                """)
            let found = try await problems(sandbox)
            #expect(found.count == 5, "\(found)")
            #expect(found.contains { $0.contains(name) && $0.contains("not forced") })
            // The two tables (not the partition, which the baseline leaves to the check above)
            // also differ from the baseline.
            #expect(found.filter { $0.contains("differ from what the migrations set") }.count == 2)
            #expect(found.contains { $0.contains("usage_quotas") && $0.contains("not have row-level security enabled") })
            #expect(found.contains { $0.contains("media_session_metrics") && $0.contains("tenant_isolation") })
        }
    }

    @Test("a new table the app role can read without RLS is refused", .enabled(if: enabled))
    func unprotectedNewTable() async throws {
        try await TenancySandbox.make().run { sandbox in
            try await sandbox.ownerScript("CREATE TABLE clinic_notes (id uuid PRIMARY KEY, body text); GRANT SELECT ON clinic_notes TO restartix_app")
            let found = try await problems(sandbox)
            #expect(found.count == 2)
            #expect(found.contains { $0.contains("clinic_notes") && $0.contains("row-level security") })
            #expect(found.contains { $0.contains("clinic_notes") && $0.contains("not in the security baseline") })
        }
    }

    @Test("a disabled guard trigger, a replaced policy function and a new SECURITY DEFINER function are named", .enabled(if: enabled))
    func triggersAndFunctions() async throws {
        try await TenancySandbox.make().run { sandbox in
            #expect(try await problems(sandbox) == [])
            try await sandbox.ownerScript("""
                ALTER TABLE usage_quotas DISABLE TRIGGER usage_quota_guard;
                CREATE OR REPLACE FUNCTION restartix_role_rank(role text) RETURNS integer LANGUAGE sql IMMUTABLE AS $$ SELECT 9 $$;
                CREATE FUNCTION open_door() RETURNS integer LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$;
                CREATE FUNCTION harmless() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
                """)
            let found = try await problems(sandbox)
            #expect(found.count == 3, "\(found)")
            #expect(found.contains { $0.contains("table usage_quotas") && $0.contains("triggers") })
            #expect(found.contains { $0.contains("restartix_role_rank(text)") && $0.contains("differs") })
            #expect(found.contains { $0.contains("open_door()") && $0.contains("SECURITY DEFINER") })
        }
    }

    @Test("TRUNCATE for PUBLIC and CREATE on the schema are named", .enabled(if: enabled))
    func publicGrants() async throws {
        try await TenancySandbox.make().run { sandbox in
            try await sandbox.ownerScript("GRANT TRUNCATE ON patients TO PUBLIC; GRANT CREATE ON SCHEMA \(sandbox.schema) TO PUBLIC")
            let found = try await problems(sandbox)
            #expect(found.contains { $0.contains("TRUNCATE") && $0.contains("patients") }, "\(found)")
            #expect(found.contains { $0.contains("table patients") && $0.contains("differ from what the migrations set") }, "\(found)")
            #expect(found.contains { $0.contains("create objects in schema \(sandbox.schema)") }, "\(found)")
        }
    }

    @Test("an app role that owns a table is refused", .enabled(if: enabled))
    func ownsTable() async throws {
        try await TenancySandbox.make().run { sandbox in
            try await sandbox.ownerScript("GRANT CREATE ON SCHEMA \(sandbox.schema) TO restartix_app")
            let raw = try Database(
                url: TenancyBackend.require("DATABASE_APP_DIRECT_URL") + "&options=-csearch_path%3D\(sandbox.schema)",
                logger: TenancyBackend.logger
            )
            try await raw.execute("CREATE TABLE app_owned (id integer)")
            await raw.shutdown()
            let found = try await problems(sandbox)
            #expect(found.contains { $0.contains("owns table app_owned") })
        }
    }

    @Test("a role with BYPASSRLS is refused", .enabled(if: enabled))
    func bypass() async throws {
        try await TenancySandbox.make().run { sandbox in
            let found = try await problems(sandbox, urlNamed: "RESTARTIX_TEST_BYPASSRLS_URL")
            #expect(found.contains { $0.contains("restartix_test_bypass") && $0.contains("BYPASSRLS") })
        }
    }

    @Test("a schema without the tenancy migrations is refused", .enabled(if: enabled))
    func notMigrated() async throws {
        let ownerURL = try TenancyBackend.require("DATABASE_DIRECT_URL")
        let schema = "ten_\(UUID().uuidString.prefix(8).lowercased())"
        let owner = try Database(url: ownerURL, logger: TenancyBackend.logger)
        try await owner.withConnection { try await $0.executeScript("CREATE SCHEMA \(schema); GRANT USAGE ON SCHEMA \(schema) TO restartix_app") }
        let url = try TenancyBackend.require("DATABASE_APP_DIRECT_URL") + "&options=-csearch_path%3D\(schema)"
        let app = try TenantDatabase(url: url, tables: PlatformSchema.tenantTables, settings: TenantSessionSettings(schema: schema), logger: TenancyBackend.logger)
        await #expect {
            try await app.verifyIsolation()
        } throws: { error in
            (error as? TenancyError)?.problems.contains { $0.contains("restartix_tenant_tables is missing") } == true
        }
        await app.shutdown()
        // The same URL with the default pin (public): the mismatch is named, not checked past.
        let unpinned = try TenantDatabase(url: url, tables: PlatformSchema.tenantTables, logger: TenancyBackend.logger)
        await #expect {
            try await unpinned.verifyIsolation()
        } throws: { error in
            (error as? TenancyError)?.problems.contains { $0.contains("resolves to schema \(schema)") && $0.contains("pins schema public") } == true
        }
        await unpinned.shutdown()
        try await owner.execute(SQLQuery(unsafeSQL: "DROP SCHEMA \(schema) CASCADE"))
        await owner.shutdown()
    }
}

/// The boot check run on a plain (not app) SQLite connection, as a misconfigured shell would.
struct TenantDatabaseProbe {
    let path: String

    func problems() async throws -> [String] {
        let database = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TenancyBackend.logger)
        defer { Task { await database.shutdown() } }
        return try await SQLiteTenancy.problems(database, role: .app, tables: PlatformSchema.tenantTables)
    }
}
