// Migration 10 for SQLite: clerk_sync_state (see the PostgreSQL migration 10).

import RestartixKit

extension MigrationSet {
    static let sqliteClerkSyncState = Migration(version: 10, name: "clerk_sync_state", sql: #"""
        CREATE TABLE clerk_sync_state (
            entity TEXT NOT NULL CHECK (entity IN ('user', 'organization', 'membership')),
            clerk_id TEXT NOT NULL CHECK (length(clerk_id) BETWEEN 1 AND 520),
            event_at INTEGER NOT NULL,
            deleted INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
            PRIMARY KEY (entity, clerk_id)
        );
        """#)
}
