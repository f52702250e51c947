// Migration 8 for SQLite: email_suppressions (see the PostgreSQL migration 8). A platform table:
// the app connections' authorizer grants nothing on it (it is not in the tenant-table registry).

import RestartixKit

extension MigrationSet {
    static let sqliteEmailSuppressions = Migration(version: 8, name: "email_suppressions", sql: #"""
        CREATE TABLE email_suppressions (
            address_index BLOB PRIMARY KEY NOT NULL CHECK (length(address_index) = 32),
            reason TEXT NOT NULL CHECK (reason IN ('bounce', 'complaint', 'manual')),
            detail TEXT CHECK (detail IS NULL OR length(detail) <= 200),
            source TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 64),
            created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
        );
        """#)
}
