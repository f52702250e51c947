// Storage quickstart: the Database API on the embedded default.
//
//     swift run StorageQuickstart                        # in-memory SQLite
//     swift run StorageQuickstart postgres://...         # any database URL (owner role, direct)
//
// Opens a database, applies the kit's migrations, writes an organization in a transaction,
// reads it back with typed decoding, and shows that a throwing transaction leaves nothing.
import Foundation
import Logging
import RestartixKit

var logger = Logger(label: "quickstart")
logger.logLevel = .warning

let url = CommandLine.arguments.dropFirst().first ?? "sqlite::memory:"
let database: Database
do {
    database = try Database(url: url, logger: logger)
} catch {
    // DatabaseError descriptions never contain passwords or bound values.
    FileHandle.standardError.write(Data("quickstart: \(error)\n".utf8))
    exit(1)
}

try await Migrator(database: database, logger: logger).migrate()

// Ids are UUIDv7, generated before insert.
let organization = UUIDv7.generate()
try await database.transaction { tx in
    try await tx.execute(
        """
        INSERT INTO organizations (id, slug, name)
        VALUES (\(organization), \("quickstart-\(organization.uuidString.prefix(8).lowercased())"), \("Quickstart Clinic"))
        """
    )
    try await tx.execute(
        """
        INSERT INTO organization_domains (id, organization_id, domain, is_primary)
        VALUES (\(UUIDv7.generate()), \(organization), \("\(organization.uuidString.prefix(8).lowercased()).clinic.example"), \(true))
        """
    )
}

let rows = try await database.query(
    """
    SELECT o.name, d.domain, o.created_at FROM organizations o
    JOIN organization_domains d ON d.organization_id = o.id
    WHERE o.id = \(organization)
    """
)
for row in rows {
    let name = try row.decode("name", as: String.self)
    let domain = try row.decode("domain", as: String.self)
    let created = try row.decode("created_at", as: Date.self)
    print("\(name) at \(domain), created \(created)")
}

// A transaction that throws is rolled back: the second organization never appears.
struct Abandon: Error {}
do {
    try await database.transaction { tx in
        try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(UUIDv7.generate()), \("abandoned"), \("Never"))")
        throw Abandon()
    }
} catch is Abandon {
    let left = try await database.query("SELECT count(*) AS n FROM organizations WHERE slug = \("abandoned")")
    print("rolled back: \(try left[0].decode("n", as: Int.self)) abandoned rows")
}

// Constraint failures are typed, and their descriptions are safe to log.
do {
    try await database.execute("INSERT INTO organizations (id, slug, name) VALUES (\(UUIDv7.generate()), \("Not A Slug!"), \("x"))")
} catch let error as DatabaseError where error.code == .checkViolation {
    print("refused: \(error.code)")
}

await database.shutdown()
