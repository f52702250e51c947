// Storage quickstart: the Database API on the embedded default, with a table of your own.
//
//     swift run StorageQuickstart                          # in-memory SQLite
//     swift run StorageQuickstart sqlite:///tmp/notes.db   # a SQLite file
//
// Opens a database, applies your own migration, writes two rows in a transaction, reads them
// back with typed decoding, shows that a throwing transaction leaves nothing and that a
// constraint failure is typed. (The platform's own tables are row-level secured: they are
// written through RestartixTenancy's TenantDatabase, not through a plain Database.)
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

// Your schema, as numbered migrations: each applied once, in a transaction, its checksum
// recorded (an edited migration is refused, not re-run). SQLite stores UUIDs and timestamps as
// text; the kit's SQLValue binds them for either dialect.
let notes = try MigrationSet([
    Migration(version: 1, name: "notes", sql: database.dialect == .postgres
        ? """
          CREATE TABLE quickstart_notes (
              id uuid PRIMARY KEY,
              title text NOT NULL CHECK (length(title) BETWEEN 1 AND 80),
              created_at timestamptz NOT NULL DEFAULT now()
          );
          """
        : """
          CREATE TABLE quickstart_notes (
              id TEXT PRIMARY KEY NOT NULL,
              title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 80),
              created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
          );
          """),
])
try await Migrator(database: database, migrations: notes, logger: logger).migrate()

// Ids are UUIDv7, generated before insert. Every \(value) is a bind, never spliced into the SQL.
let first = UUIDv7.generate(), second = UUIDv7.generate()
try await database.transaction { tx in
    try await tx.execute("INSERT INTO quickstart_notes (id, title) VALUES (\(first), \("Call the clinic"))")
    try await tx.execute("INSERT INTO quickstart_notes (id, title) VALUES (\(second), \("Book a follow-up"))")
}

let rows = try await database.query("SELECT id, title, created_at FROM quickstart_notes WHERE id = \(first) OR id = \(second) ORDER BY id")
for row in rows {
    let id = try row.decode("id", as: UUID.self)
    let title = try row.decode("title", as: String.self)
    let created = try row.decode("created_at", as: Date.self)
    print("\(title) (\(id == first ? "first" : "second"), created \(created))")
}

// A transaction that throws is rolled back: its row never appears.
struct Abandon: Error {}
do {
    try await database.transaction { tx in
        try await tx.execute("INSERT INTO quickstart_notes (id, title) VALUES (\(UUIDv7.generate()), \("abandoned"))")
        throw Abandon()
    }
} catch is Abandon {
    let left = try await database.query("SELECT count(*) AS n FROM quickstart_notes WHERE title = \("abandoned")")
    print("rolled back: \(try left[0].decode("n", as: Int.self)) abandoned rows")
}

// Constraint failures are typed, and their descriptions are safe to log.
do {
    try await database.execute("INSERT INTO quickstart_notes (id, title) VALUES (\(UUIDv7.generate()), \(""))")
    print("error: an empty title was accepted")
    exit(1)
} catch let error as DatabaseError where error.code == .checkViolation {
    print("refused: \(error.code)")
}

await database.shutdown()
