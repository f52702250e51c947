// Migration 5 for PostgreSQL: platform_service_providers.consecutive_failures, the count `check-providers`
// keeps so a provider goes down only after N failures in a row and comes back on one success.

import RestartixKit

extension MigrationSet {
    static let postgresProviderChecks = Migration(version: 5, name: "provider_check_failures", sql: #"""
        ALTER TABLE platform_service_providers
            ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0);
        """#)
}
