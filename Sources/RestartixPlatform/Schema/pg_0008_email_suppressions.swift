// Migration 8 for PostgreSQL: email_suppressions, the platform's list of addresses no e-mail goes
// to (hard bounces and complaints from SES's notifications, or an operator's hand). An address
// is stored only as its blind index (HMAC under the keyring's blind-index key), never in clear.
// The admin role keeps it; the app role has no access.

import RestartixKit

extension MigrationSet {
    static let postgresEmailSuppressions = Migration(version: 8, name: "email_suppressions", sql: #"""
        CREATE TABLE email_suppressions (
            address_index bytea PRIMARY KEY CHECK (length(address_index) = 32),
            reason text NOT NULL CHECK (reason IN ('bounce', 'complaint', 'manual')),
            detail text CHECK (detail IS NULL OR length(detail) <= 200),
            source text NOT NULL CHECK (length(source) BETWEEN 1 AND 64),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.email_suppressions TO restartix_admin', current_schema());
            END IF;
        END;
        $$;
        """#)
}
