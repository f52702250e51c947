import RestartixKit

/// The boot check the shells run before serving: refuse to start on a database where the
/// connected role could read or write across clinics.
///
/// On Postgres, as the connected role, it checks that:
/// - the role is not a superuser and has no BYPASSRLS;
/// - the role owns no table, view or sequence and is not a member of a role that does (an
///   owner can switch row-level security off);
/// - every tenant table (`restartix_tenant_tables`) exists, has ENABLE and FORCE ROW LEVEL
///   SECURITY and its `tenant_isolation` policy, and so does every partition of one;
/// - for the app role, every other table of the schema it may read or write has RLS enabled
///   and forced (the admin role's platform tables, such as providers, have no clinic).
///
/// On SQLite it checks that every tenant table sits behind its policy view and triggers and,
/// for app connections, that the connection is marked as one, cannot reach the tables behind
/// the views and cannot set `app.unscoped` (see ``SQLiteTenancy``).
///
/// Every problem found is listed, each naming its table or role.
enum IsolationCheck {
    enum Role {
        case app
        case admin
    }

    static func verify(_ database: Database, role: Role) async throws {
        var problems: [String] = []
        switch database.dialect {
        case .postgres:
            problems = try await postgresProblems(database, role: role)
        default:
            problems = try await sqliteProblems(database, role: role)
        }
        guard problems.isEmpty else {
            throw TenancyError(.unsafeDatabase, "refusing to start: tenant isolation is not enforced", problems: problems)
        }
    }

    private static func postgresProblems(_ database: Database, role: Role) async throws -> [String] {
        try await database.withConnection { connection in
            var problems: [String] = []
            guard let me = try await connection.first("""
                SELECT current_user::text AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user
                """)
            else { return ["the connected role is not in pg_roles"] }
            let name = try me.decode("name", as: String.self)
            if try me.decode("rolsuper", as: Bool.self) { problems.append("role \(name) is a superuser") }
            if try me.decode("rolbypassrls", as: Bool.self) { problems.append("role \(name) has BYPASSRLS") }

            // The connected role must not own (or be able to become the owner of) any table.
            let owned = try await connection.query("""
                SELECT c.relname::text AS table_name, pg_get_userbyid(c.relowner)::text AS owner
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
                  AND pg_has_role(current_user, c.relowner, 'MEMBER')
                ORDER BY 1
                """)
            for row in owned {
                let table = try row.decode("table_name", as: String.self)
                let owner = try row.decode("owner", as: String.self)
                problems.append(owner == name
                    ? "role \(name) owns table \(table)"
                    : "role \(name) is a member of \(owner), which owns table \(table)")
            }

            let listed = try await connection.first("""
                SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relname = 'restartix_tenant_tables'
                """)
            guard try listed?.decode("n", as: Int.self) == 1 else {
                problems.append("restartix_tenant_tables is missing: the tenancy migrations have not run on this schema")
                return problems
            }

            let missing = try await connection.query("""
                SELECT t.table_name FROM restartix_tenant_tables t
                WHERE NOT EXISTS (
                    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE n.nspname = current_schema() AND c.relname = t.table_name
                )
                ORDER BY 1
                """)
            for row in missing {
                problems.append("tenant table \(try row.decode("table_name", as: String.self)) does not exist")
            }

            // Tenant tables, their partitions (at any depth), and, for the app role, anything
            // else it can touch (the admin role's platform tables have no clinic to confine).
            let everyAccessible = role == .app
            let unprotected = try await connection.query("""
                WITH RECURSIVE tenant AS (
                    SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    JOIN restartix_tenant_tables t ON t.table_name = c.relname
                    WHERE n.nspname = current_schema()
                    UNION
                    SELECT i.inhrelid FROM pg_inherits i JOIN tenant ON i.inhparent = tenant.oid
                )
                SELECT c.relname::text AS table_name, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
                       c.oid IN (SELECT oid FROM tenant) AS is_tenant
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                  AND (c.oid IN (SELECT oid FROM tenant)
                       OR (\(everyAccessible) AND has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE')))
                  AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
                ORDER BY 1
                """)
            for row in unprotected {
                let table = try row.decode("table_name", as: String.self)
                let enabled = try row.decode("enabled", as: Bool.self)
                let isTenant = try row.decode("is_tenant", as: Bool.self)
                let what = isTenant ? "tenant table" : "table \(name) can access,"
                problems.append(enabled
                    ? "\(what) \(table) has row-level security enabled but not forced (ALTER TABLE \(table) FORCE ROW LEVEL SECURITY)"
                    : "\(what) \(table) does not have row-level security enabled")
            }

            let unpoliced = try await connection.query("""
                SELECT t.table_name FROM restartix_tenant_tables t
                WHERE NOT EXISTS (
                    SELECT 1 FROM pg_policies p
                    WHERE p.schemaname = current_schema() AND p.tablename = t.table_name
                      AND p.policyname = 'tenant_isolation' AND p.permissive = 'RESTRICTIVE'
                )
                ORDER BY 1
                """)
            for row in unpoliced {
                problems.append("tenant table \(try row.decode("table_name", as: String.self)) has no restrictive tenant_isolation policy")
            }
            return problems
        }
    }

    private static func sqliteProblems(_ database: Database, role: Role) async throws -> [String] {
        try await SQLiteTenancy.problems(database, role: role)
    }
}
