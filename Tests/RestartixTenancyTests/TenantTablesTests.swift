import Foundation
import RestartixKit
import RestartixPlatform
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// The tenant-table registry: its own consistency, and the boot check holding the database to it.
@Suite("Tenant-table registry", .timeLimit(.minutes(3)))
struct TenantTablesTests {
    /// The platform's registry with `edit` applied to its tables.
    static func platform(_ edit: (inout [TenantTable]) -> Void) throws -> TenantTables {
        var tables = PlatformSchema.tenantTables.tables
        edit(&tables)
        return try TenantTables(tables, alsoReadable: PlatformSchema.tenantTables.alsoReadable)
    }

    static func replacing(_ name: String, with table: TenantTable) -> (inout [TenantTable]) -> Void {
        { tables in tables = tables.map { $0.name == name ? table : $0 } }
    }

    @Test("an inconsistent registry is refused, every problem named")
    func inconsistent() throws {
        do {
            _ = try TenantTables([
                TenantTable("Notes"),
                TenantTable("notes__rows"),
                TenantTable("a", app: [.insert]),
                TenantTable("b", app: [.select, .update], managersOnly: [.delete]),
                TenantTable("c", patientOwn: [.select]),
                TenantTable("d", app: [.select], updatableColumns: ["x"]),
                TenantTable("e", updatableColumns: []),
                TenantTable("f", sealedColumns: ["email", "email"]),
                TenantTable("g; DROP TABLE x", tenantColumn: "organization_id"),
                TenantTable("h"),
                TenantTable("h"),
            ], alsoReadable: ["h", "Users"])
            Issue.record("an inconsistent registry was accepted")
        } catch {
            #expect(error.code == .invalidTenantTables)
            let problems = error.problems
            for expected in [
                "Notes: Notes is not a lower-case SQL identifier",
                "notes__rows: names ending in __rows are reserved",
                "a: the app role must be able to select",
                "b: managersOnly has delete, which the app role is not granted",
                "c: patientOwn needs an ownership rule",
                "d: updatableColumns without update in app",
                "e: updatableColumns is empty",
                "f: a sealed column is listed twice",
                "g; DROP TABLE x: g; DROP TABLE x is not a lower-case SQL identifier",
                "h is listed twice",
                "h is both a tenant table and alsoReadable",
                "Users is not a lower-case SQL identifier",
            ] {
                #expect(problems.contains { $0.hasPrefix(expected) }, "missing: \(expected) in \(problems)")
            }
            #expect(problems.count == 12)
        }
    }

    @Test("the platform's registry is consistent and seals the patients' PII")
    func platformRegistry() throws {
        let tables = PlatformSchema.tenantTables
        #expect(tables.names.count == 19)
        #expect(tables["patients"]?.sealedColumns == PatientStore.sealedColumns)
        #expect(Set(EncryptedColumn.builtIn.map(\.description)) == Set(
            PatientStore.sealedColumns.map { "patients.\($0)" } + ["platform_service_providers.credentials"]
        ))
        #expect(tables["nothing"] == nil)
    }

    @Test("SQLite: a registry that differs from the database's tenant tables is refused, by name")
    func sqliteCatalogDrift() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let path = try #require(databases.sqlitePath)
        func problems(_ tables: TenantTables) async throws -> [String] {
            try await isolationProblems(TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: tables, logger: TenancyBackend.logger))
        }
        let clean = try await problems(PlatformSchema.tenantTables)
        #expect(clean == [], "\(clean)")
        let extra = try Self.platform { $0.append(TenantTable("consent_forms")) }
        #expect(try await problems(extra) == [
            "tenant table consent_forms is in the registry but not in restartix_tenant_tables (its tenancy migration has not run)",
        ])
        let fewer = try Self.platform { $0.removeAll { $0.name == "pose_rep_metrics" } }
        #expect(try await problems(fewer) == [
            "tenant table pose_rep_metrics is in restartix_tenant_tables but not in the registry (TenantTables) this service was built with",
        ])
        await databases.close()
    }

    @Test("SQLite: the app connections' authorizer grants what the registry states")
    func sqliteGrantsFromRegistry() async throws {
        let databases = try await TenancyBackend.sqlite.open()
        let path = try #require(databases.sqlitePath)
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        // The same database, with a registry that withholds DELETE on pose_session_metrics:
        // the authorizer follows the registry it was given.
        let narrowed = try Self.platform(Self.replacing(
            "pose_session_metrics",
            with: TenantTable("pose_session_metrics", app: [.select, .insert, .update], patientOwn: [.select, .insert], ownership: .definedBySchema)
        ))
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: narrowed, logger: TenancyBackend.logger)
        let context = fixture.context(staffOf: fixture.a)
        let row = try #require(fixture.rows["pose_session_metrics"]).a2
        let delete: SQLQuery = "DELETE FROM pose_session_metrics WHERE id = \(row)"
        do {
            try await app.execute(context, delete)
            Issue.record("DELETE on pose_session_metrics went through a registry that does not grant it")
        } catch let error as DatabaseError {
            #expect(error.code == .insufficientPrivilege)
        }
        // Under the platform's registry the same statement deletes the row (rolled back here).
        struct RollBack: Error {}
        await #expect(throws: RollBack.self) {
            try await databases.app.withTenant(context) { tx in
                #expect(try await tx.execute(delete) == 1)
                throw RollBack()
            }
        }
        let rows = try await databases.app.query(context, "SELECT count(*) AS n FROM pose_session_metrics WHERE id = \(row)")
        #expect(try rows.first?.decode("n", as: Int.self) == 1)
        await app.shutdown()
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("Postgres: app-role grants that differ from the registry are refused, by table and command", .enabled(if: BootCheckTests.enabled))
    func postgresGrantDrift() async throws {
        try await TenancySandbox.make().run { sandbox in
            func problems(_ tables: TenantTables) async throws -> [String] {
                let url = try TenancyBackend.require("DATABASE_APP_DIRECT_URL") + "&options=-csearch_path%3D\(sandbox.schema)"
                return try await isolationProblems(
                    TenantDatabase(url: url, tables: tables, settings: TenantSessionSettings(schema: sandbox.schema), logger: TenancyBackend.logger)
                )
            }
            #expect(try await problems(PlatformSchema.tenantTables) == [])
            // The registry asks for more than the database grants, and for less.
            let drifted = try Self.platform { tables in
                Self.replacing("audit_log", with: TenantTable("audit_log", patientClinicWide: [.insert]))(&tables)
                Self.replacing("patients", with: TenantTable(
                    "patients", app: [.select, .insert, .update], patientOwn: [.select, .update], ownership: .userColumn("user_id")
                ))(&tables)
                Self.replacing("memberships", with: TenantTable(
                    "memberships", updatableColumns: ["role", "user_id"], managersOnly: [.insert, .update, .delete],
                    patientOwn: [.select], ownership: .userColumn("user_id")
                ))(&tables)
                tables.append(TenantTable("consent_forms"))
            }
            let found = try await problems(drifted)
            #expect(found.sorted() == [
                "role restartix_app has DELETE on tenant table patients, which the registry does not grant it",
                "role restartix_app lacks DELETE on tenant table audit_log, which the registry grants it",
                "role restartix_app lacks UPDATE on tenant table audit_log, which the registry grants it",
                "role restartix_app may update columns role of memberships; the registry says role, user_id",
                "tenant table consent_forms is in the registry but not in restartix_tenant_tables (its tenancy migration has not run)",
            ])
        }
    }

    // MARK: - Generated SQLite policies for a table of one's own

    static let clinicNotes = try! MigrationSet([Migration(version: 1, name: "notes", sql: """
        CREATE TABLE notes (
            id TEXT PRIMARY KEY NOT NULL,
            organization_id TEXT NOT NULL,
            author_id TEXT NOT NULL,
            slug TEXT NOT NULL DEFAULT 'draft',
            body TEXT NOT NULL,
            pinned INTEGER NOT NULL DEFAULT 0,
            UNIQUE (organization_id, slug)
        );
        """)])

    static let notes = TenantTable(
        "notes", updatableColumns: ["body", "pinned", "slug"], managersOnly: [.delete], patientOwn: [.select, .insert],
        ownership: .userColumn("author_id")
    )

    /// A SQLite file with `notes` under its generated policies, the owner's plain database and
    /// an app database.
    static func notesDatabase() async throws -> (path: String, owner: Database, app: TenantDatabase) {
        let policies = try await TenantPolicySQL.sqlite(for: [notes], after: clinicNotes)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("notes-\(UUID().uuidString).sqlite").path
        let owner = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TenancyBackend.logger)
        let schema = try MigrationSet(clinicNotes.migrations + [Migration(version: 2, name: "notes_tenancy", sql: policies)])
        try await Migrator(database: owner, migrations: schema, logger: TenancyBackend.logger).migrate()
        let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: try TenantTables([notes]), logger: TenancyBackend.logger)
        return (path, owner, app)
    }

    @Test("generated SQLite policies: a clinic's table of one's own is isolated, and the attacks fail")
    func generatedPolicies() async throws {
        let (path, owner, app) = try await Self.notesDatabase()
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        try await app.verifyIsolation()
        let a = UUID(), b = UUID()
        let staffA = TenantContext(organizationID: a, userID: UUID(), role: .specialist)
        let ownerA = TenantContext(organizationID: a, userID: UUID(), role: .owner)
        let staffB = TenantContext(organizationID: b, userID: UUID(), role: .assistant)
        let patientA = TenantContext(organizationID: a, userID: UUID(), role: .patient)
        let otherPatientA = TenantContext(organizationID: a, userID: UUID(), role: .patient)
        func insert(_ context: TenantContext, id: UUID = UUID(), organization: UUID? = nil, author: UUID? = nil, slug: String) -> SQLQuery {
            """
            INSERT INTO notes (id, organization_id, author_id, slug, body) \
            VALUES (\(id), \(organization ?? context.organizationID), \(author ?? context.userID), \(slug), 'text')
            """
        }
        func count(_ context: TenantContext) async throws -> Int {
            try await app.query(context, "SELECT count(*) AS n FROM notes").first?.decode("n", as: Int.self) ?? -1
        }
        let noteA = UUID(), noteB = UUID()
        try await app.execute(staffA, insert(staffA, id: noteA, slug: "plan"))
        try await app.execute(staffB, insert(staffB, id: noteB, slug: "plan"))  // the same slug in another clinic is fine
        try await app.execute(patientA, insert(patientA, slug: "diary"))
        #expect(try await count(staffA) == 2)
        #expect(try await count(staffB) == 1)
        #expect(try await count(patientA) == 1)
        #expect(try await count(otherPatientA) == 0)

        func refused(_ context: TenantContext, _ query: SQLQuery, _ code: DatabaseError.Code, _ comment: Comment) async {
            do {
                try await app.execute(context, query)
                Issue.record("accepted: \(comment)")
            } catch let error as DatabaseError {
                #expect(error.code == code, comment)
            } catch {
                Issue.record("\(comment): \(error)")
            }
        }
        await refused(staffA, insert(staffA, organization: b, slug: "planted"), .rowLevelSecurityViolation, "a row written into another clinic")
        await refused(patientA, insert(patientA, author: otherPatientA.userID, slug: "forged"), .rowLevelSecurityViolation, "a patient writing as another user")
        await refused(staffB, "INSERT OR REPLACE INTO notes (id, organization_id, author_id, slug, body) VALUES (\(noteA), \(b), \(staffB.userID), 'x', 'taken')",
                      .uniqueViolation, "INSERT OR REPLACE over another clinic's primary key")
        await refused(staffA, "REPLACE INTO notes (id, organization_id, author_id, slug, body) VALUES (\(UUID()), \(a), \(staffA.userID), 'plan', 'dup')",
                      .uniqueViolation, "REPLACE over a unique slug")
        let second = UUID()
        try await app.execute(staffA, insert(staffA, id: second, slug: "second"))
        await refused(staffA, "UPDATE OR REPLACE notes SET slug = 'plan' WHERE id = \(second)", .uniqueViolation, "UPDATE OR REPLACE into a taken slug")
        await refused(staffA, "UPDATE notes SET organization_id = \(b) WHERE id = \(noteA)", .insufficientPrivilege, "moving a row to another clinic (not an updatable column)")
        await refused(staffA, "UPDATE notes SET author_id = \(UUID()) WHERE id = \(noteA)", .insufficientPrivilege, "a column the registry does not let the app update")
        await refused(staffA, "SELECT count(*) FROM notes__rows", .insufficientPrivilege, "the rows behind the view")
        // A defaulted key column: the guard compares the default that will be stored, so
        // INSERT OR REPLACE that leaves it out cannot delete the clinic's other 'draft' note.
        let draft = UUID()
        try await app.execute(staffA, "INSERT INTO notes (id, organization_id, author_id, body) VALUES (\(draft), \(a), \(staffA.userID), 'x')")
        await refused(patientA, "INSERT OR REPLACE INTO notes (id, organization_id, author_id, body) VALUES (\(UUID()), \(a), \(patientA.userID), 'y')",
                      .uniqueViolation, "INSERT OR REPLACE onto a defaulted key")
        await refused(patientA, "INSERT INTO notes (id, organization_id, author_id, slug, body) VALUES (\(UUID()), \(a), \(patientA.userID), X'706C616E', 'z')",
                      .invalidValue, "a blob in a TEXT key column")
        #expect(try await app.query(staffA, "SELECT count(*) AS n FROM notes WHERE id = \(draft)").first?.decode("n", as: Int.self) == 1)
        try await app.execute(ownerA, "DELETE FROM notes WHERE id = \(draft)")
        #expect(try await app.execute(staffB, "UPDATE notes SET body = 'edited' WHERE id = \(noteA)") == 0)
        #expect(try await app.execute(staffB, "DELETE FROM notes WHERE id = \(noteA)") == 0)
        #expect(try await app.execute(staffA, "DELETE FROM notes WHERE id = \(noteA)") == 0, "delete is for managers")
        #expect(try await app.execute(staffA, "UPDATE notes SET pinned = 1 WHERE id = \(noteA)") == 1)
        #expect(try await app.execute(ownerA, "DELETE FROM notes WHERE id = \(noteA)") == 1)

        // The owner's plain connection is the admin side: its context's clinic, or all of them unscoped.
        let everything = try await owner.transaction { tx in
            try await tx.execute("SELECT set_config('app.unscoped', 'on', true)")
            return try await tx.query("SELECT count(*) AS n FROM notes").first?.decode("n", as: Int.self)
        }
        #expect(everything == 3)
        let none = try await owner.query("SELECT count(*) AS n FROM notes").first?.decode("n", as: Int.self)
        #expect(none == 0, "no context, not unscoped: no rows")
        await app.shutdown()
        await owner.shutdown()
    }

    @Test("generated SQLite policies: what cannot be generated is refused, every problem named")
    func ungeneratable() async throws {
        let schema = try MigrationSet([Migration(version: 1, name: "t", sql: """
            CREATE TABLE keyless (organization_id TEXT NOT NULL, body TEXT);
            CREATE TABLE partial (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, slug TEXT, deleted INTEGER);
            CREATE UNIQUE INDEX partial_slug ON partial (slug) WHERE deleted = 0;
            CREATE TABLE blobkey (id BLOB PRIMARY KEY, organization_id TEXT NOT NULL);
            CREATE TABLE expression (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, email TEXT);
            CREATE UNIQUE INDEX expression_email ON expression (lower(email));
            CREATE TABLE nocase (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, slug TEXT);
            CREATE UNIQUE INDEX nocase_slug ON nocase (slug COLLATE NOCASE);
            CREATE TABLE viewed (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, status TEXT DEFAULT 'new');
            CREATE VIEW viewed_summary AS SELECT organization_id, count(*) AS n FROM viewed GROUP BY organization_id;
            CREATE TABLE keyworded (id TEXT PRIMARY KEY, organization_id TEXT NOT NULL, "Order" INTEGER);
            """)])
        do {
            _ = try await TenantPolicySQL.sqlite(for: [
                TenantTable("keyless"),
                TenantTable("partial"),
                TenantTable("blobkey"),
                TenantTable("expression", patientOwn: [.select], ownership: .userColumn("user_id")),
                TenantTable("missing"),
                TenantTable("keyless2", tenantColumn: "clinic_id", ownership: .definedBySchema),
                TenantTable("nocase"),
                TenantTable("viewed"),
                TenantTable("keyworded"),
            ], after: schema)
            Issue.record("ungeneratable tables were accepted")
        } catch let error as TenancyError {
            #expect(error.code == .invalidTenantTables)
            #expect(error.problems.sorted() == [
                "blobkey: unique key blobkey_pkey covers id, which is neither TEXT nor INTEGER",
                "expression has no column user_id",
                "expression: unique index expression_email is on an expression; its conflicts cannot be guarded",
                "keyless has no primary key (the triggers find a row by it)",
                "keyless2 does not exist after the given migrations",
                "keyworded: column Order is not a lower-case SQL identifier",
                "missing does not exist after the given migrations",
                "nocase: unique index nocase_slug compares with another collation than BINARY; its conflicts cannot be guarded",
                "partial: unique index partial_slug is partial; its conflicts cannot be guarded",
                "viewed: nullable column status has a default, which a write through the view cannot keep (make it NOT NULL)",
                "viewed: view viewed_summary names the table; renaming it would point that at every clinic's rows (drop it first, make it again over the view)",
            ])
        }
    }
}
