import Foundation
import RestartixKit

/// Tenant isolation on SQLite, enforced below the query code (Documentation/RestartixTenancy.md).
///
/// Migration 2 moves each protected table's rows to `<table>__rows` and puts a view named
/// `<table>` in its place: the view shows only the rows the current context may see (the same
/// rules as the Postgres policies, reading the same `current_setting` values, which the kit's
/// SQLite connections implement), and its INSTEAD OF triggers enforce the write rules (WITH
/// CHECK) and raise the same "row-level security" error. Service code runs the same SQL on both
/// backends.
///
/// App connections (``TenantDatabase`` on SQLite) are then locked down here:
/// - `restartix.connection_role` is 'app' and locked, so the views apply the app rules; and
///   `app.unscoped` can never be set;
/// - an authorizer refuses, at prepare time, any direct read or write of a base table, any
///   statement the app role's grants would refuse on Postgres (an UPDATE of audit_log), and
///   all DDL, PRAGMA, ATTACH and the like. What remains is access from inside the views and
///   their triggers, and the foreign-key actions (cascades) of a write through a view, which
///   SQLite reports with no trigger named: the authorizer allows those only in a statement
///   whose own target was a view;
/// - a statement filter refuses any app statement whose text names a `__rows` table, so no
///   CTE, subquery or INSERT ... SELECT can reach them either.
enum SQLiteTenancy {
    /// The app role's grants, as the registry states them (on Postgres they are the
    /// migrations' GRANTs, which the boot check compares with the same registry): table ->
    /// allowed writes (every table listed is readable).
    static func grants(_ tables: TenantTables) -> [String: Set<Int32>] {
        var grants: [String: Set<Int32>] = [:]
        for table in tables.tables {
            var writes = Set<Int32>()
            if table.appCommands.contains(.insert) { writes.insert(SQLiteAuthorizerRequest.insert) }
            if table.appCommands.contains(.update) { writes.insert(SQLiteAuthorizerRequest.update) }
            if table.appCommands.contains(.delete) { writes.insert(SQLiteAuthorizerRequest.delete) }
            grants[table.name] = writes
        }
        for name in tables.alsoReadable { grants[name] = [] }
        return grants
    }

    /// Tables whose UPDATE grant covers some columns only (Postgres: column privileges).
    static func updatableColumns(_ tables: TenantTables) -> [String: Set<String>] {
        var columns: [String: Set<String>] = [:]
        for table in tables.tables { columns[table.name] = table.updatableColumns }
        return columns
    }

    /// Catalog tables an app connection may read directly.
    static let catalog: Set<String> = ["restartix_tenant_tables", "sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"]

    /// The per-connection setup of app connections, run before any other setup.
    static func configure(_ configuration: inout DatabaseConfiguration, tables: TenantTables) {
        guard configuration.dialect == .sqlite else { return }
        let userSetup = configuration.sqlite.connectionSetup
        let grants = grants(tables), updatableColumns = updatableColumns(tables)
        configuration.sqlite.connectionSetup = { handle in
            try handle.presetSetting("restartix.connection_role", to: "app", locked: true)
            try handle.presetSetting("app.unscoped", to: nil, locked: true)
            try userSetup?(handle)
            let authorizer = Authorizer(grants: grants, updatableColumns: updatableColumns)
            try handle.setAuthorizer { authorizer.decide($0) }
            try handle.setStatementFilter(screen)
        }
    }

    /// App SQL may not name the tables behind the views at all, in any spelling: an identifier
    /// can be quoted or re-cased but not escaped, so the text always holds `__rows`. This is
    /// what stops a CTE or subquery from reaching them (SQLite names a CTE like a view to the
    /// authorizer), and what lets the authorizer admit the foreign-key actions of a write
    /// through a view, which arrive unnamed.
    @Sendable static func screen(_ sql: String) -> String? {
        sql.range(of: "__rows", options: .caseInsensitive) == nil
            ? nil
            : "app connections may not name the tables behind the policy views"
    }

    /// The app connections' authorizer. One per connection; SQLite calls it on the connection's
    /// own thread while preparing, so its state needs no lock.
    final class Authorizer: @unchecked Sendable {
        /// The statement being prepared, and whether it writes through a policy view.
        private var statement: UInt64 = .max
        private var writesThroughView = false
        /// Table -> the writes the app role may make; every table listed is readable.
        private let grants: [String: Set<Int32>]
        /// Tables whose UPDATE may set some columns only.
        private let updatableColumns: [String: Set<String>]

        init(grants: [String: Set<Int32>], updatableColumns: [String: Set<String>]) {
            self.grants = grants
            self.updatableColumns = updatableColumns
        }

        func decide(_ request: SQLiteAuthorizerRequest) -> SQLiteAuthorizerDecision {
            if request.statement != statement {
                statement = request.statement
                writesThroughView = false
            }
            switch request.action {
            case SQLiteAuthorizerRequest.select, SQLiteAuthorizerRequest.transaction, SQLiteAuthorizerRequest.savepoint,
                 SQLiteAuthorizerRequest.recursive, SQLiteAuthorizerRequest.function:
                return .allow
            case SQLiteAuthorizerRequest.read:
                // Inside a view or trigger, the view's filter or the trigger's check applies.
                if request.trigger != nil { return .allow }
                guard let table = request.argument1 else { return .deny }
                if grants[table] != nil || catalog.contains(table) { return .allow }
                // A foreign-key action (ON DELETE CASCADE, SET NULL) of a write through a view
                // reads the tables behind the views with no trigger named; nothing else may.
                return table.hasSuffix("__rows") && writesThroughView ? .allow : .deny
            case SQLiteAuthorizerRequest.insert, SQLiteAuthorizerRequest.update, SQLiteAuthorizerRequest.delete:
                if request.trigger != nil { return .allow }
                guard let table = request.argument1 else { return .deny }
                if let allowed = grants[table] {
                    guard allowed.contains(request.action) else { return .deny }
                    if request.action == SQLiteAuthorizerRequest.update, let columns = updatableColumns[table] {
                        // SQLite asks once per column an UPDATE sets.
                        guard let column = request.argument2, columns.contains(column.lowercased()) else { return .deny }
                    }
                    // A statement's own target is authorized before anything it sets off.
                    writesThroughView = true
                    return .allow
                }
                // Foreign-key actions update or delete (never insert) behind a view write.
                let cascade = request.action != SQLiteAuthorizerRequest.insert && table.hasSuffix("__rows")
                return cascade && writesThroughView ? .allow : .deny
            default:
                // DDL, PRAGMA, ATTACH/DETACH, ANALYZE, REINDEX, virtual tables: never from the app.
                return .deny
            }
        }
    }

    /// The boot check's findings on SQLite.
    static func problems(_ database: Database, role: IsolationCheck.Role, tables: TenantTables?) async throws -> [String] {
        try await database.withConnection { connection in
            var problems: [String] = []
            let objects = try await connection.query("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view', 'trigger')")
            var present = Set<String>()
            for row in objects {
                present.insert(try row.decode("type", as: String.self) + ":" + row.decode("name", as: String.self))
            }
            guard present.contains("table:restartix_tenant_tables") else {
                problems.append("restartix_tenant_tables is missing: the tenancy migrations have not run on this database")
                return problems
            }
            let listed = try await connection.query("SELECT table_name FROM restartix_tenant_tables ORDER BY table_name")
            let catalogued = try listed.map { try $0.decode("table_name", as: String.self) }
            if let tables { problems += IsolationCheck.registryProblems(tables, catalogued: catalogued) }
            let protected = catalogued + (tables?.alsoReadable.sorted() ?? [])
            for table in protected {
                if !present.contains("view:\(table)") || !present.contains("table:\(table)__rows") {
                    problems.append("tenant table \(table) is not behind its policy view (\(table) over \(table)__rows)")
                    continue
                }
                var triggers = ["insert", "update", "delete"]
                if table == "audit_log" { triggers = ["insert"] }
                for kind in triggers where !present.contains("trigger:\(table)__\(kind)") {
                    problems.append("tenant table \(table) has no \(kind) policy trigger (\(table)__\(kind))")
                }
                if present.contains("table:\(table)") {
                    problems.append("table \(table) exists beside its policy view")
                }
            }
            guard role == .app else { return problems }

            let marker = try await connection.first("SELECT current_setting('restartix.connection_role', true) AS role")
            if try marker?.decode("role", as: String?.self) != "app" {
                problems.append("this connection is not set up as an app connection")
            }
            for table in catalogued {
                let rows = table + "__rows"
                do {
                    _ = try await connection.query("SELECT count(*) FROM \(identifier: rows)")
                    problems.append("app connections can read base table \(rows) directly (no authorizer)")
                } catch let error as DatabaseError where error.code == .insufficientPrivilege {}
                do {
                    // Changes nothing even where it is allowed.
                    _ = try await connection.execute("DELETE FROM \(identifier: rows) WHERE 0")
                    problems.append("app connections can write base table \(rows) directly (no authorizer)")
                } catch let error as DatabaseError where error.code == .insufficientPrivilege {}
            }
            do {
                _ = try await connection.query("SELECT set_config('app.unscoped', 'on', true)")
                problems.append("app connections can set app.unscoped")
            } catch let error as DatabaseError where error.code == .insufficientPrivilege {}
            // The two probes above name `__rows`, which the statement filter alone refuses; this
            // one passes the filter, so only the authorizer can stop it.
            do {
                try await connection.execute("CREATE TEMP VIEW restartix_authorizer_probe AS SELECT 1 AS x")
                _ = try? await connection.execute("DROP VIEW temp.restartix_authorizer_probe")
                problems.append("app connections can run DDL (no authorizer)")
            } catch let error as DatabaseError where error.code == .insufficientPrivilege {}
            return problems
        }
    }
}
