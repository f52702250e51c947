// Tenant quickstart: a table of your own under the kit's tenant isolation, on SQLite, with
// RestartixKit and RestartixTenancy only (no platform schema, no Redis; the HTTP client that
// comes with RestartixTenancy's Clerk verifier is linked, not used: see README.md).
//
//     swift run TenantQuickstart                        # a temporary SQLite file
//     swift run TenantQuickstart /tmp/notes.sqlite      # a SQLite file of your choosing
//     swift run TenantQuickstart --print-policy-sql     # what TenantPolicySQL writes for Schema.notes
//     swift run TenantQuickstart --check-policy-sql     # exit 1 if Schema+Tenancy.swift differs from it
//
// Applies the schema with the owner's plain Database, then works through a TenantDatabase:
// every statement runs in one clinic's context, the boot check holds the database to the
// registry, and the database itself refuses what the context may not do.
import Foundation
import Logging
import RestartixKit
import RestartixTenancy

var logger = Logger(label: "tenant-quickstart")
logger.logLevel = .warning

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("tenant-quickstart: \(message)\n".utf8))
    exit(1)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--print-policy-sql" || arguments.first == "--check-policy-sql" {
    let generated = try await TenantPolicySQL.sqlite(for: Schema.registry.tables, after: try MigrationSet([Schema.version1]))
    if arguments.first == "--print-policy-sql" {
        print(generated, terminator: "")
    } else if generated != Schema.version2 {
        fail("Schema+Tenancy.swift is not what TenantPolicySQL writes for Schema.notes; a new migration is needed (applied ones never change)")
    } else {
        print("tenant-quickstart: the committed policy SQL is what the generator writes")
    }
    exit(0)
}

let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tenant-quickstart-\(UUID().uuidString)")
let path = arguments.first ?? directory.appendingPathComponent("notes.sqlite").path
if arguments.isEmpty { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
defer { if arguments.isEmpty { try? FileManager.default.removeItem(at: directory) } }

// 1. The owner applies the schema (a plain Database: the migration mechanism, nothing else).
let owner = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: logger)
do {
    try await Migrator(database: owner, migrations: Schema.migrations, logger: logger).migrate()
} catch {
    // For example a file another program migrated: its recorded checksums differ from ours.
    fail("migrate \(path): \(error)")
}
await owner.shutdown()

// 2. The service's database: app connections, every statement in a tenant context. The boot
//    check refuses a database whose tenant tables differ from the registry or that lets an app
//    connection around the policies.
let app = TenantDatabase(configuration: DatabaseConfiguration(sqlitePath: path), tables: Schema.registry, logger: logger)
do {
    try await app.verifyIsolation()
} catch {
    fail("boot check: \(error)")
}

let clinicA = UUID(), clinicB = UUID()
let staffA = TenantContext(organizationID: clinicA, userID: UUID(), role: .specialist)
let ownerA = TenantContext(organizationID: clinicA, userID: UUID(), role: .owner)
let patientA = TenantContext(organizationID: clinicA, userID: UUID(), role: .patient)
let staffB = TenantContext(organizationID: clinicB, userID: UUID(), role: .specialist)

func write(_ context: TenantContext, _ body: String, organization: UUID? = nil) async throws -> UUID {
    let id = UUID()
    try await app.execute(context, """
        INSERT INTO notes (id, organization_id, author_id, body)
        VALUES (\(id), \(organization ?? context.organizationID), \(context.userID), \(body))
        """)
    return id
}

func count(_ context: TenantContext) async throws -> Int {
    try await app.query(context, "SELECT count(*) AS n FROM notes").first?.decode("n", as: Int.self) ?? -1
}

// 3. Each clinic writes its notes; each sees its own only.
let noteA = try await write(staffA, "Knee flexion improving; continue the plan.")
_ = try await write(staffB, "First session booked.")
let ownNote = try await write(patientA, "Pain 3/10 after the exercises.")
guard try await count(staffA) == 2, try await count(staffB) == 1 else { fail("a clinic saw another clinic's notes") }
guard try await count(patientA) == 1 else { fail("a patient saw notes it did not write") }
print("clinic A sees 2 notes, clinic B sees 1, A's patient sees its own 1")

// 4. What the database refuses, whatever the service code asks for.
do {
    _ = try await write(staffA, "Planted in clinic B.", organization: clinicB)
    fail("a note was written into another clinic")
} catch let error as DatabaseError where error.code == .rowLevelSecurityViolation {
    print("writing into another clinic: refused (\(error.code))")
}
do {
    // INSERT OR REPLACE with another clinic's id: refused before anything is replaced.
    try await app.execute(staffB, "INSERT OR REPLACE INTO notes (id, organization_id, author_id, body) VALUES (\(noteA), \(clinicB), \(staffB.userID), 'taken')")
    fail("INSERT OR REPLACE took over another clinic's note")
} catch let error as DatabaseError where error.code == .uniqueViolation {
    print("taking over another clinic's note with INSERT OR REPLACE: refused (\(error.code))")
}
guard try await app.execute(staffB, "UPDATE notes SET body = 'edited' WHERE id = \(noteA)") == 0 else {
    fail("a clinic updated another clinic's note")
}
// As on Postgres, rows a context may not touch are simply not there for it: 0 rows.
guard try await app.execute(staffA, "DELETE FROM notes WHERE id = \(noteA)") == 0 else {
    fail("a specialist deleted a note (owners and admins only)")
}
print("a specialist deleting a note: 0 rows; the clinic's owner may")
guard try await app.execute(ownerA, "DELETE FROM notes WHERE id = \(noteA)") == 1 else { fail("the owner could not delete the note") }
guard try await app.execute(patientA, "UPDATE notes SET body = 'Pain 2/10.' WHERE id = \(ownNote)") == 1 else {
    fail("the patient could not edit its own note")
}
do {
    _ = try await app.query(staffA, "SELECT count(*) FROM notes__rows")
    fail("an app connection read the rows behind the policy view")
} catch let error as DatabaseError where error.code == .insufficientPrivilege {
    print("reading the rows behind the view: refused (\(error.code))")
}
await app.shutdown()
print("tenant-quickstart: ok")
