// Migration 4 for SQLite: slot_holds, the database reservation that appointment holds fall back to when
// Redis is down (SlotHolds.swift). One row per slot, kept after release or expiry so its fence
// keeps counting up; a hold is taken by an upsert that only overwrites an expired row.

import RestartixKit

extension MigrationSet {
    static let sqliteSlotHolds = Migration(version: 4, name: "slot_holds", sql: #"""
        CREATE TABLE slot_holds (
            slot_id TEXT PRIMARY KEY NOT NULL CHECK (length(slot_id) BETWEEN 1 AND 200),
            holder TEXT NOT NULL CHECK (length(holder) BETWEEN 1 AND 200),
            token TEXT NOT NULL,
            fence INTEGER NOT NULL CHECK (fence >= 1),
            expires_at TEXT NOT NULL
        );
        """#)
}
