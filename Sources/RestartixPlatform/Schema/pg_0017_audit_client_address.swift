// Migration 17 for PostgreSQL: audit rows record the client's address, as the platform's
// audit trail asks (the Core API's `CF-Connecting-IP` / `X-Forwarded-For`, believed only from
// trusted proxies; `AuditOrigin` in RestartixTenancy). `inet`, so only an address can be stored;
// the app role may write it, as it writes `request_id`. Archived months exported before this
// migration restore with the column empty (`json_populate_recordset`).

import RestartixKit

extension MigrationSet {
    static let postgresAuditClientAddress = Migration(version: 17, name: "audit_client_address", sql: #"""
        ALTER TABLE audit_log ADD COLUMN client_address inet;
        GRANT INSERT (client_address) ON audit_log TO restartix_app;
        SELECT restartix_record_security_baseline();
        """#)
}
