// Migration 9 for PostgreSQL: user_activity, each user's last authenticated request (the Core API
// writes it at most once a minute per user, debounced through Redis or in process). Its own
// table, not a users column, so the hot write touches no row that policies guard. The admin
// role keeps it; the app role has no access.

import RestartixKit

extension MigrationSet {
    static let postgresUserActivity = Migration(version: 9, name: "user_activity", sql: #"""
        CREATE TABLE user_activity (
            user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
            last_activity_at timestamptz NOT NULL
        );

        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.user_activity TO restartix_admin', current_schema());
            END IF;
        END;
        $$;
        """#)
}
