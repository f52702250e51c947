// The example's schema: its own table (version 1) and the tenancy migration that puts it
// behind its policies (version 2). Version 2 is the text TenantPolicySQL.sqlite(for:after:)
// wrote for `Schema.notes` after version 1, committed as written: applied migrations are
// immutable, so it is never regenerated at run time. (CI runs `TenantQuickstart
// --check-policy-sql`, which regenerates it and fails if the generator and this file disagree.)
import RestartixKit
import RestartixTenancy

enum Schema {
    /// The tenant table and its rules: staff of a clinic see and write its notes, owners and
    /// admins alone delete them, a patient reads and writes only the notes it authored.
    static let notes = TenantTable(
        "notes", managersOnly: [.delete], patientOwn: [.select, .insert, .update], ownership: .userColumn("author_id")
    )

    static let registry = try! TenantTables([notes])

    static let version1 = Migration(version: 1, name: "notes", sql: """
        CREATE TABLE notes (
            id TEXT PRIMARY KEY NOT NULL,
            organization_id TEXT NOT NULL,
            author_id TEXT NOT NULL,
            body TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
            UNIQUE (organization_id, id)
        );
        CREATE INDEX notes_organization_created ON notes (organization_id, created_at);
        """)

    static let migrations = try! MigrationSet([version1, Migration(version: 2, name: "notes_tenancy", sql: version2)])
}
