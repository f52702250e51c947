import Foundation
import RestartixPlatform
import RestartixKit
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// SQLite-specific guarantees behind the shared matrix: what an app connection can never do,
/// whatever SQL the service code sends.
@Suite("SQLite tenant enforcement", .timeLimit(.minutes(3)))
struct SQLiteEnforcementTests {
    @Test("app connections cannot touch the rows behind the views, run DDL, PRAGMA or ATTACH, or unscope themselves")
    func lockedDown() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let context = fixture.context(staffOf: fixture.a)
        let refused = [
            "SELECT count(*) FROM patients__rows",
            "SELECT name FROM patients__rows",
            "DELETE FROM pose_session_metrics__rows",
            "UPDATE patients__rows SET organization_id = organization_id",
            "INSERT INTO audit_log__rows (id, actor_kind, action) VALUES ('x', 'user', 'x')",
            "SELECT * FROM platform_service_providers",
            "SELECT * FROM schema_migrations",
            "UPDATE audit_log SET action = 'changed'",
            "DELETE FROM audit_log",
            "INSERT INTO organizations (id, slug, name) VALUES ('x', 'x', 'x')",
            "CREATE TABLE notes (id TEXT)",
            "DROP VIEW patients",
            "CREATE TEMP VIEW patients AS SELECT * FROM main.patients__rows",
            "PRAGMA foreign_keys = OFF",
            "ATTACH DATABASE ':memory:' AS other",
            "SELECT set_config('app.unscoped', 'on', true)",
            "SELECT set_config('restartix.connection_role', 'admin', true)",
            // Shapes the authorizer alone would see as views or as a write's own cascade.
            "WITH x AS (SELECT * FROM patients__rows) SELECT * FROM x",
            "WITH patients AS (SELECT * FROM main.patients__rows) SELECT * FROM patients",
            "SELECT * FROM \"PATIENTS__ROWS\"",
            "INSERT INTO usage_records (id, organization_id, capability, units) SELECT id, organization_id, 'x', 1 FROM patients__rows",
            "UPDATE usage_quotas SET capability = (SELECT group_concat(id) FROM patients__rows)",
            "DELETE FROM usage_quotas WHERE EXISTS (SELECT 1 FROM patients__rows)",
        ]
        for sql in refused {
            await #expect(throws: DatabaseError.self, "\(sql)") {
                try await databases.app.withTenant(context) { tx in
                    try await tx.query(SQLQuery(unsafeSQL: sql))
                }
            }
        }
        // Nothing changed: every patient row is still there, seen through the admin database.
        let count = try await databases.admin.unscoped(reason: "count rows after refusals", actor: .system("tests")) { tx in
            try await tx.first("SELECT count(*) AS n FROM patients")?.decode("n", as: Int.self)
        }
        #expect(count == 3)
        // A CTE over the views stays inside the context.
        let confined = try await databases.app.query(context, "WITH x AS (SELECT * FROM patients) SELECT count(*) AS n FROM x")
        #expect(try confined.first?.decode("n", as: Int.self) == 2)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("a transaction whose deferred BEGIN failed runs nothing more, even when the error is caught")
    func failedStartRunsNothing() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let path = try #require(databases.sqlitePath)
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        var configuration = DatabaseConfiguration(sqlitePath: path)
        configuration.sqlite.busyTimeout = .milliseconds(50)
        let app = TenantDatabase(configuration: configuration, tables: PlatformSchema.tenantTables, logger: TenancyBackend.logger)
        let context = fixture.context(staffOf: fixture.a)
        // Another writer holds the file, so BEGIN IMMEDIATE fails with .busy.
        let holder = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TenancyBackend.logger)
        let gate = Gate()
        let release = Gate()
        let holding = Task {
            try await holder.withConnection { conn in
                try await conn.executeScript("BEGIN IMMEDIATE")
                await gate.open()
                await release.wait()
                try await conn.executeScript("ROLLBACK")
            }
        }
        await gate.wait()
        var second: (any Error)?
        await #expect(throws: DatabaseError.self) {
            try await app.withTenant(context) { tx in
                do {
                    try await tx.execute("UPDATE usage_quotas SET limit_units = 1")
                } catch {
                    // Caught: the next statement must not run in autocommit without a context.
                    do { try await tx.execute("UPDATE usage_quotas SET limit_units = 2") } catch let later { second = later }
                }
            }
        }
        #expect((second as? DatabaseError)?.code == .transactionAborted)
        await release.open()
        try await holding.value
        let limits = try await databases.admin.unscoped(reason: "read limits after a failed start", actor: .system("tests")) { tx in
            try await tx.query("SELECT limit_units FROM usage_quotas").map { try $0.decode("limit_units", as: Int.self) }
        }
        #expect(!limits.contains(1) && !limits.contains(2))
        await holder.shutdown()
        await app.shutdown()
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("errors are typed: privilege for grants and base tables, row-level security for WITH CHECK")
    func typedErrors() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let context = fixture.context(staffOf: fixture.a)
        let privilege = await #expect(throws: DatabaseError.self) {
            try await databases.app.execute(context, "DELETE FROM audit_log")
        }
        #expect(privilege?.code == .insufficientPrivilege)
        let base = await #expect(throws: DatabaseError.self) {
            try await databases.app.query(context, "SELECT id FROM patients__rows")
        }
        #expect(base?.code == .insufficientPrivilege)
        let policy = await #expect(throws: DatabaseError.self) {
            try await databases.app.execute(context, """
                INSERT INTO organization_domains (id, organization_id, domain) \
                VALUES (\(UUIDv7.generate()), \(fixture.b.id), 'elsewhere.example.test')
                """)
        }
        #expect(policy?.code == .rowLevelSecurityViolation)
        // Moving a row to another clinic is a WITH CHECK violation, as on Postgres.
        let move = await #expect(throws: DatabaseError.self) {
            try await databases.app.execute(context, "UPDATE patients SET organization_id = \(fixture.b.id) WHERE id = \(fixture.a1.patient)")
        }
        #expect(move?.code == .rowLevelSecurityViolation)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("a delete through a view cascades behind it; counts and RETURNING work through the views")
    func cascadesAndCounts() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let context = fixture.context(staffOf: fixture.a)
        // The platform first removes the impersonation session naming the patient (the app role
        // may not delete a patient from under one).
        try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM patient_impersonation_sessions WHERE patient_id = \(fixture.a2.patient)")
        }
        let deleted = try await databases.app.execute(context, "DELETE FROM patients WHERE id = \(fixture.a2.patient)")
        #expect(deleted == 1)
        let orphans = try await databases.app.query(context, "SELECT count(*) AS n FROM pose_session_metrics WHERE patient_id = \(fixture.a2.patient)")
        #expect(try orphans.first?.decode("n", as: Int.self) == 0)
        let updated = try await databases.app.execute(context, "UPDATE usage_quotas SET current_units = current_units + 1")
        #expect(updated == 2)  // A's two quota rows, not B's
        let id = UUIDv7.generate()
        let returned = try await databases.app.query(context, """
            INSERT INTO usage_records (id, organization_id, capability, units) \
            VALUES (\(id), \(fixture.a.id), 'video', 3) RETURNING id, units
            """)
        #expect(try returned.first?.decode("id", as: UUID.self) == id)
        #expect(try returned.first?.decode("units", as: Int.self) == 3)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }
}
