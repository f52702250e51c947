// Migration 9 for SQLite: user_activity (see the PostgreSQL migration 9). It references the users'
// row table (`users` is the policy view since migration 2); a platform table the app
// connections' authorizer grants nothing on.

import RestartixKit

extension MigrationSet {
    static let sqliteUserActivity = Migration(version: 9, name: "user_activity", sql: #"""
        CREATE TABLE user_activity (
            user_id TEXT PRIMARY KEY NOT NULL REFERENCES users__rows (id) ON DELETE CASCADE,
            last_activity_at TEXT NOT NULL
        );
        """#)
}
