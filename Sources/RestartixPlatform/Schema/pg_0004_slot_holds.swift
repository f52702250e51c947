// Migration 4 for PostgreSQL: slot_holds, the database reservation that appointment holds fall back to when
// Redis is down (SlotHolds.swift). One row per slot, kept after release or expiry so its fence
// keeps counting up; a hold is taken by an upsert that only overwrites an expired row.

import RestartixKit

extension MigrationSet {
    static let postgresSlotHolds = Migration(version: 4, name: "slot_holds", sql: #"""
        CREATE TABLE slot_holds (
            slot_id text PRIMARY KEY CHECK (length(slot_id) BETWEEN 1 AND 200),
            holder text NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
            token text NOT NULL,
            fence bigint NOT NULL CHECK (fence >= 1),
            expires_at timestamptz NOT NULL
        );

        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE ON %I.slot_holds TO restartix_admin', current_schema());
            END IF;
        END;
        $$;
        """#)
}
