// Migration 7 for PostgreSQL: nothing to change. SQLite's migration 7 writes its emulated
// policies again one clause a line, with a stricter unique-key guard; Postgres's policies were
// written that way (pg_0002, pg_0003, pg_0006) and its unique indexes need no guard. The
// version exists so that both dialects carry the same versions and names (MigrationTests),
// and a database's recorded version means the same schema on either.

import RestartixKit

extension MigrationSet {
    static let postgresPolicies7 = Migration(version: 7, name: "legible_policies", sql: #"""
        -- Postgres: no change (see the SQLite migration of this version).
        SELECT 1;
        """#)
}
