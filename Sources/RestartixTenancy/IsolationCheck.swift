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

    static func verify(_ database: Database, role: Role, schema: String? = nil, tables: TenantTables? = nil) async throws {
        let problems = try await problems(database, role: role, schema: schema, tables: tables)
        guard problems.isEmpty else {
            throw TenancyError(.unsafeDatabase, "refusing to start: tenant isolation is not enforced", problems: problems)
        }
    }

    /// Every problem found, each naming its table, role or setting; empty when isolation holds.
    static func problems(_ database: Database, role: Role, schema: String? = nil, tables: TenantTables? = nil) async throws -> [String] {
        switch database.dialect {
        case .postgres:
            return try await postgresProblems(database, role: role, schema: schema, tables: tables)
        default:
            return try await SQLiteTenancy.problems(database, role: role, tables: tables)
        }
    }

    /// Where the registry and the database's own list of tenant tables disagree.
    static func registryProblems(_ tables: TenantTables, catalogued: [String]) -> [String] {
        let registered = Set(tables.names), listed = Set(catalogued)
        return registered.subtracting(listed).sorted().map {
            "tenant table \($0) is in the registry but not in restartix_tenant_tables (its tenancy migration has not run)"
        } + listed.subtracting(registered).sorted().map {
            "tenant table \($0) is in restartix_tenant_tables but not in the registry (TenantTables) this service was built with"
        }
    }

    private static func postgresProblems(_ database: Database, role: Role, schema: String?, tables: TenantTables?) async throws -> [String] {
        // Read-only, on a pooled connection an app client may have poisoned: the transaction
        // spells out its mode and first puts back the connection's own search_path (the one its
        // URL asked for, `reset_val`: not what a client SET since), row security and bounded
        // timeouts, with schema-qualified calls, before it reads anything. Then it pins the
        // schema the kit's transactions use, so the check looks where the queries will.
        let opening: SQLQuery = """
            SELECT pg_catalog.set_config('search_path', \
            (SELECT s.reset_val FROM pg_catalog.pg_settings s WHERE s.name = 'search_path'), true), \
            pg_catalog.set_config('row_security', 'on', true), pg_catalog.set_config('statement_timeout', '10000ms', true), \
            pg_catalog.set_config('lock_timeout', '5000ms', true), pg_catalog.set_config('exit_on_error', 'off', true)
            """
        return try await database.transaction(begin: "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", deferredPrelude: [opening]) { connection in
            var problems: [String] = []
            guard let me = try await connection.first("""
                SELECT current_user::text AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user
                """)
            else { return ["the connected role is not in pg_roles"] }
            let name = try me.decode("name", as: String.self)
            if try me.decode("rolsuper", as: Bool.self) { problems.append("role \(name) is a superuser") }
            if try me.decode("rolbypassrls", as: Bool.self) { problems.append("role \(name) has BYPASSRLS") }
            if let schema {
                // A search_path given in the URL (`options=-csearch_path=...`) that names another
                // schema than the pinned one is a configuration mistake: say so, instead of
                // checking (and later querying) a schema the operator did not mean.
                let own = try await connection.first("SELECT current_schema()::text AS schema")
                if let own = try own?.decode("schema", as: String?.self), own != schema {
                    problems.append("the connection's search_path resolves to schema \(own), but the tenant database pins schema \(schema) (set TenantSessionSettings.schema)")
                }
                let usable = try await connection.first("""
                    SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = \(schema)) \
                    AND has_schema_privilege(\(schema), 'USAGE') AS usable
                    """)
                guard try usable?.decode("usable", as: Bool.self) == true else {
                    problems.append("role \(name) cannot use schema \(schema), where its transactions look for the tables (TenantSessionSettings.schema)")
                    return problems
                }
                let path = TenantSessionSettings(schema: schema).searchPath
                try await connection.execute("SELECT pg_catalog.set_config('search_path', \(path), true)")
            }

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
            if let tables {
                let catalogued = try await connection.query("SELECT table_name::text AS table_name FROM restartix_tenant_tables ORDER BY 1")
                problems += registryProblems(tables, catalogued: try catalogued.map { try $0.decode("table_name", as: String.self) })
                if role == .app { problems += try await grantProblems(connection, tables: tables, role: name) }
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
            problems += try await hardeningProblems(connection, role: role, name: name)
            return problems
        }
    }

    /// Where the connected (app) role's privileges on a registered table differ from the
    /// registry's: a grant more is a hole, a grant less a broken route. INSERT counts when the
    /// role may insert some columns (the migrations withhold the ones the database fills, such
    /// as audit rows' `created_at`).
    static func grantProblems(_ connection: borrowing Transaction, tables: TenantTables, role: String) async throws -> [String] {
        let rows = try await connection.query("""
            SELECT c.relname::text AS table_name,
                   has_table_privilege(c.oid, 'SELECT') AS can_select, has_any_column_privilege(c.oid, 'INSERT') AS can_insert,
                   has_table_privilege(c.oid, 'UPDATE') AS can_update, has_table_privilege(c.oid, 'DELETE') AS can_delete,
                   coalesce((SELECT string_agg(a.attname::text, ',' ORDER BY a.attname) FROM pg_attribute a
                             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                               AND has_column_privilege(c.oid, a.attnum, 'UPDATE')), '') AS update_columns
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
            ORDER BY 1
            """)
        var actual: [String: (commands: Set<TenantTable.Command>, columns: Set<String>)] = [:]
        for row in rows {
            var commands = Set<TenantTable.Command>()
            if try row.decode("can_select", as: Bool.self) { commands.insert(.select) }
            if try row.decode("can_insert", as: Bool.self) { commands.insert(.insert) }
            if try row.decode("can_update", as: Bool.self) { commands.insert(.update) }
            if try row.decode("can_delete", as: Bool.self) { commands.insert(.delete) }
            let columns = try row.decode("update_columns", as: String.self).split(separator: ",").map(String.init)
            actual[try row.decode("table_name", as: String.self)] = (commands, Set(columns))
        }
        var problems: [String] = []
        for table in tables.tables {
            guard let (granted, columns) = actual[table.name] else { continue }  // reported as missing
            var expected = table.appCommands
            if table.updatableColumns != nil { expected.remove(.update) }  // column grants only
            for command in expected.subtracting(granted).sorted() {
                problems.append("role \(role) lacks \(command.rawValue.uppercased()) on tenant table \(table.name), which the registry grants it")
            }
            for command in granted.subtracting(expected).sorted() {
                problems.append("role \(role) has \(command.rawValue.uppercased()) on tenant table \(table.name), which the registry does not grant it")
            }
            if let updatable = table.updatableColumns, !granted.contains(.update), columns != updatable {
                problems.append("role \(role) may update columns \(columns.sorted().joined(separator: ", ")) of \(table.name); the registry says \(updatable.sorted().joined(separator: ", "))")
            } else if table.updatableColumns == nil, !granted.contains(.update), !columns.isEmpty {
                problems.append("role \(role) may update columns \(columns.sorted().joined(separator: ", ")) of \(table.name), which the registry does not grant it")
            }
        }
        return problems
    }

    /// What migration 6 and the threat model add: nothing temporary or created, no role
    /// defaults, no role to switch to, and every table's policies, RLS flags and grants as the
    /// migrations left them (`restartix_security_baseline`).
    static func hardeningProblems(_ connection: borrowing Transaction, role: Role, name: String) async throws -> [String] {
        var problems: [String] = []
        let privileges = try await connection.first("""
            SELECT has_database_privilege(current_database(), 'TEMPORARY') AS temp,
                   has_database_privilege(current_database(), 'CREATE') AS create_schema
            """)
        if let privileges {
            if try privileges.decode("temp", as: Bool.self) {
                problems.append("role \(name) may create temporary tables (REVOKE TEMPORARY ON DATABASE ... FROM PUBLIC, \(name)): a temp table would shadow a tenant table on a pooled connection")
            }
            if try privileges.decode("create_schema", as: Bool.self) {
                problems.append("role \(name) may create schemas in this database (REVOKE CREATE ON DATABASE ... FROM \(name))")
            }
        }
        // The schemas a kit transaction resolves names in (its own and `public`): an object the
        // role created there could shadow one another client uses unqualified. (The kit's own
        // opening statement calls pg_catalog by name, so no schema can answer it.)
        let creatable = try await connection.query("""
            SELECT nspname::text AS schema FROM pg_namespace
            WHERE nspname IN (current_schema(), 'public') AND has_schema_privilege(oid, 'CREATE')
            ORDER BY 1
            """)
        for row in creatable {
            let schema = try row.decode("schema", as: String.self)
            problems.append("role \(name) may create objects in schema \(schema) (REVOKE CREATE ON SCHEMA \(schema) FROM PUBLIC, \(name))")
        }
        // TRUNCATE empties every clinic's rows at once (it bypasses row-level security); a
        // TRIGGER privilege would let the role hang its own code on a table. The app role may
        // have neither anywhere; the admin role not on a table row-level security protects.
        let bypassing = try await connection.query("""
            SELECT c.relname::text AS table_name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND (\(role == .app) OR c.relrowsecurity)
              AND (has_table_privilege(c.oid, 'TRUNCATE') OR has_table_privilege(c.oid, 'TRIGGER'))
            ORDER BY 1
            """)
        for row in bypassing {
            let table = try row.decode("table_name", as: String.self)
            problems.append("role \(name) may TRUNCATE or add triggers to table \(table) (TRUNCATE bypasses row-level security)")
        }
        // Role defaults (ALTER ROLE ... SET), which a role may set on itself: they apply to every
        // new session, and through a pooler to every client. Names only, never values.
        let defaults = try await connection.query("""
            SELECT s.setdatabase = 0 AS everywhere, x.setting
            FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS x (setting)
            WHERE s.setrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)
              AND s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
            ORDER BY 1, 2
            """)
        for row in defaults {
            let setting = try row.decode("setting", as: String.self).split(separator: "=", maxSplits: 1).first.map(String.init) ?? "?"
            let scope = try row.decode("everywhere", as: Bool.self) ? "in every database" : "in this database"
            problems.append("role \(name) has a role default for \(setting) \(scope) (ALTER ROLE \(name) RESET \(setting))")
        }
        if role == .app {
            let memberships = try await connection.query("""
                SELECT b.rolname::text AS granted FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid
                WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1
                """)
            for row in memberships {
                problems.append("role \(name) is a member of role \(try row.decode("granted", as: String.self)) (SET ROLE would leave the app role's rules)")
            }
        }
        let baseline = try await connection.first("""
            SELECT count(*) AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relname = 'restartix_security_baseline'
            """)
        guard try baseline?.decode("n", as: Int.self) == 1 else {
            problems.append("restartix_security_baseline is missing: migration 6 (tenancy_hardening) has not run on this schema")
            return problems
        }
        let drift = try await connection.query("""
            SELECT coalesce(b.object_kind, f.object_kind) AS kind, coalesce(b.object_name, f.object_name) AS name,
                   b.object_name IS NULL AS added, f.object_name IS NULL AS removed
            FROM restartix_security_baseline b
            FULL JOIN restartix_security_fingerprints(current_schema()) f
                ON f.object_kind = b.object_kind AND f.object_name = b.object_name
            WHERE b.fingerprint IS DISTINCT FROM f.fingerprint
              -- Something no migration made matters when the app role can reach it: a table it
              -- has any privilege on, a SECURITY DEFINER function it may execute (the admin
              -- role's own tables are the platform's business).
              AND (b.object_name IS NOT NULL
                   OR (f.object_kind = 'table' AND EXISTS (
                       SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE n.nspname = current_schema() AND c.relname = f.object_name
                         AND has_any_column_privilege('restartix_app', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES')))
                   OR (f.object_kind = 'function' AND EXISTS (
                       SELECT 1 FROM pg_proc p WHERE p.oid = f.object_name::regprocedure AND p.prosecdef
                         AND has_function_privilege('restartix_app', p.oid, 'EXECUTE'))))
            ORDER BY 1, 2
            """)
        for row in drift {
            let kind = try row.decode("kind", as: String.self)
            let name = try row.decode("name", as: String.self)
            if try row.decode("added", as: Bool.self) {
                problems.append(kind == "table"
                    ? "table \(name) is not in the security baseline: a table the app role can reach that no migration recorded"
                    : "function \(name) is SECURITY DEFINER, executable by the app role, and not in the security baseline")
            } else if try row.decode("removed", as: Bool.self) {
                problems.append("\(kind) \(name) of the security baseline is missing")
            } else {
                problems.append(kind == "table"
                    ? "table \(name) has row-level security, policies, triggers or grants that differ from what the migrations set"
                    : "function \(name) differs from what the migrations set (definition, SECURITY DEFINER, settings or grants)")
            }
        }
        return problems
    }
}
