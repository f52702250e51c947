// Migration 15 for SQLite: nothing to change. Postgres's migration 15 lets the schema owner
// read every row for `pg_dump`; SQLite has no roles and the backup job is Postgres's. The
// version exists so that both dialects carry the same versions and names (MigrationTests).

import RestartixKit

extension MigrationSet {
    static let sqliteBackupRead = Migration(version: 15, name: "backup_read", sql: #"""
        -- SQLite: no change (see the PostgreSQL migration of this version).
        SELECT 1;
        """#)
}
