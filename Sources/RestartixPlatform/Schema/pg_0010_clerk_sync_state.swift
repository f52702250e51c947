// Migration 10 for PostgreSQL: clerk_sync_state, the time of the last Clerk event applied to each
// user, organization and membership, so a delivery retried after a later event (a membership's
// creation after its removal, a role upgrade after a downgrade) is recognized as stale and
// changes nothing. The admin role keeps it; the app role has no access.

import RestartixKit

extension MigrationSet {
    static let postgresClerkSyncState = Migration(version: 10, name: "clerk_sync_state", sql: #"""
        CREATE TABLE clerk_sync_state (
            entity text NOT NULL CHECK (entity IN ('user', 'organization', 'membership')),
            clerk_id text NOT NULL CHECK (length(clerk_id) BETWEEN 1 AND 520),
            event_at bigint NOT NULL,
            deleted boolean NOT NULL DEFAULT false,
            PRIMARY KEY (entity, clerk_id)
        );

        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.clerk_sync_state TO restartix_admin', current_schema());
            END IF;
        END;
        $$;
        """#)
}
