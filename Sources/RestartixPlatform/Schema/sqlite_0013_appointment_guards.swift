// Migration 13 for SQLite: a canceled appointment stays canceled, and a fence may not run more
// than five minutes ahead of the clock (see the PostgreSQL migration 13). Triggers on the rows.

import RestartixKit

extension MigrationSet {
    static let sqliteAppointmentGuards = Migration(version: 13, name: "appointment_guards", sql: #"""
        CREATE TRIGGER appointments__status_guard BEFORE UPDATE OF status ON appointments__rows
        WHEN OLD.status = 'canceled' AND NEW.status IS NOT 'canceled'
        BEGIN
            SELECT RAISE(ABORT, 'permission denied for table appointments: a canceled appointment stays canceled');
        END;
        CREATE TRIGGER appointments__fence_range BEFORE INSERT ON appointments__rows
        WHEN NEW.fence > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER) + 300000000
        BEGIN
            SELECT RAISE(ABORT, 'new row for relation "appointments" violates check constraint "appointments_fence_range_check"');
        END;
        """#)
}
