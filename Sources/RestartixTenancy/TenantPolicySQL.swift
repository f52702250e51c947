import Logging
public import RestartixKit

/// Writes the SQLite migration that puts tenant tables under the tenancy rules their
/// ``TenantTable`` entries state, the way the platform's own tables are (see
/// Documentation/RestartixTenancy.md, "SQLite"): each table's rows move to `<table>__rows`, a
/// view named `<table>` shows only the rows the current context may see, and its INSTEAD OF
/// triggers enforce the write rules, refusing unique-key conflicts before any write (so
/// `INSERT OR REPLACE` can never delete another clinic's row).
///
/// Generate the SQL once, when you write the migration, and commit it as that migration's
/// text: applied migrations are immutable, so a migration must never be regenerated at run time
/// by a later version of this generator.
///
/// ```swift
/// let notes = TenantTable("notes", patientOwn: [.select], ownership: .userColumn("author_id"))
/// let sql = try await TenantPolicySQL.sqlite(for: [notes], after: mySchemaUpToVersion1)
/// // -> commit as Migration(version: 2, name: "notes_tenancy", sql: ...)
/// ```
///
/// The rules, per command (`select`, `insert`, `update`, `delete`):
/// - app connections (``TenantDatabase``): the row's tenant column is the context's clinic,
///   and the context's role is staff (owner, admin, specialist, assistant; owner or admin
///   outside an elevated session for ``TenantTable/managerCommands``), or the patient role for
///   ``TenantTable/patientClinicCommands`` and, on rows it owns, ``TenantTable/patientOwnCommands``;
///   commands the app role is not granted are refused before that, at prepare time;
/// - other connections (the admin role's): the context's clinic, or every clinic inside an
///   audited unscoped transaction (``AdminDatabase/unscoped(reason:actor:_:)``).
///
/// Only ``TenantTable/Ownership/userColumn(_:)`` ownership can be generated; a table whose
/// ownership is ``TenantTable/Ownership/definedBySchema`` needs its rule written by hand.
public enum TenantPolicySQL {
    /// The SQL that puts `tables` behind their policy views, for a SQLite database that
    /// `migrations` (your schema up to the version before this one) creates. The tables must
    /// exist there as plain tables, each with a primary key and its tenant column.
    ///
    /// Throws ``TenancyError/Code/invalidTenantTables`` naming every table that cannot be
    /// generated (a missing column, no primary key, a partial or expression unique index, a
    /// unique key over a column that is neither TEXT nor INTEGER, schema-defined ownership).
    public static func sqlite(for tables: [TenantTable], after migrations: MigrationSet) async throws -> String {
        _ = try TenantTables(tables)  // consistent on its own
        var logger = Logger(label: "restartix.tenancy.policy-sql")
        logger.logLevel = .error  // a scratch database: its migration lines are noise
        let scratch = try Database(url: "sqlite::memory:", logger: logger)
        do {
            try await Migrator(database: scratch, migrations: migrations, logger: logger).migrate()
            let shapes = try await scratch.withConnection { connection in
                var shapes: [TableShape] = []
                for table in tables { shapes.append(try await TableShape.read(table.name, from: connection)) }
                return shapes
            }
            await scratch.shutdown()
            return try render(tables, shapes)
        } catch {
            await scratch.shutdown()
            throw error
        }
    }

    /// A table's columns and unique keys, as SQLite reports them.
    struct TableShape {
        struct Column {
            let name: String
            let type: String
            let notNull: Bool
            let defaultSQL: String?
            let primaryKeyPosition: Int
        }

        let columns: [Column]
        /// (constraint name, columns, partial) for every unique index; `nil` columns for an
        /// index on an expression.
        let uniqueKeys: [(name: String, columns: [String]?, partial: Bool)]

        static func read(_ table: String, from connection: borrowing DatabaseConnection) async throws -> TableShape {
            let columns = try await connection.query("SELECT name, type, \"notnull\" AS not_null, dflt_value, pk FROM pragma_table_info(\(table))").map { row in
                Column(
                    name: try row.decode("name", as: String.self),
                    type: try row.decode("type", as: String.self),
                    notNull: try row.decode("not_null", as: Int.self) != 0,
                    defaultSQL: try row.decode("dflt_value", as: String?.self),
                    primaryKeyPosition: try row.decode("pk", as: Int.self)
                )
            }
            var keys: [(name: String, columns: [String]?, partial: Bool)] = []
            for index in try await connection.query("SELECT name, \"unique\" AS is_unique, origin, partial FROM pragma_index_list(\(table))") {
                guard try index.decode("is_unique", as: Int.self) != 0 else { continue }
                let name = try index.decode("name", as: String.self)
                let origin = try index.decode("origin", as: String.self)
                let parts = try await connection.query("SELECT name FROM pragma_index_info(\(name)) ORDER BY seqno")
                let names = try parts.map { try $0.decode("name", as: String?.self) }
                let columns = names.contains(nil) ? nil : names.compactMap { $0 }
                let constraint = switch origin {
                case "pk": "\(table)_pkey"
                case "c": name
                default: "\(table)_\((columns ?? []).joined(separator: "_"))_key"
                }
                keys.append((constraint, columns, try index.decode("partial", as: Int.self) != 0))
            }
            // A rowid table's INTEGER PRIMARY KEY has no index of its own.
            let primaryKey = columns.filter { $0.primaryKeyPosition > 0 }.sorted { $0.primaryKeyPosition < $1.primaryKeyPosition }.map(\.name)
            if !primaryKey.isEmpty, !keys.contains(where: { $0.name == "\(table)_pkey" }) {
                keys.append(("\(table)_pkey", primaryKey, false))
            }
            return TableShape(columns: columns, uniqueKeys: keys.sorted { $0.name < $1.name })
        }

        var primaryKey: [String] {
            columns.filter { $0.primaryKeyPosition > 0 }.sorted { $0.primaryKeyPosition < $1.primaryKeyPosition }.map(\.name)
        }

        /// The type a value is stored as: how a key guard must compare what is about to be written.
        func affinity(_ column: String) -> String? {
            guard let type = columns.first(where: { $0.name == column })?.type.uppercased() else { return nil }
            if type.contains("INT") { return "INTEGER" }
            if type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") { return "TEXT" }
            return nil
        }
    }

    static func render(_ tables: [TenantTable], _ shapes: [TableShape]) throws -> String {
        var problems: [String] = []
        for (table, shape) in zip(tables, shapes) { problems += check(table, shape) }
        guard problems.isEmpty else {
            throw TenancyError(.invalidTenantTables, "cannot generate the SQLite policies", problems: problems)
        }
        var out = [
            "-- Generated by TenantPolicySQL.sqlite (RestartixTenancy); commit it as written: applied migrations are immutable.",
            "-- Each tenant table's rows move to <table>__rows; <table> becomes a view showing only the rows the",
            "-- current context may see, with INSTEAD OF triggers enforcing the write rules.",
            "CREATE TABLE IF NOT EXISTS restartix_tenant_tables (",
            "    table_name TEXT PRIMARY KEY NOT NULL,",
            "    tenant_column TEXT NOT NULL",
            ");",
        ]
        for (table, shape) in zip(tables, shapes) {
            out.append("")
            out += tableSQL(table, shape)
        }
        return out.joined(separator: "\n") + "\n"
    }

    static func check(_ table: TenantTable, _ shape: TableShape) -> [String] {
        let names = Set(shape.columns.map(\.name))
        guard !names.isEmpty else { return ["\(table.name) does not exist after the given migrations"] }
        var problems: [String] = []
        var needed = [table.tenantColumn] + (table.updatableColumns.map { $0.sorted() } ?? []) + table.sealedColumns
        if case .userColumn(let column) = table.ownership { needed.append(column) }
        for column in needed where !names.contains(column) {
            problems.append("\(table.name) has no column \(column)")
        }
        if table.ownership == .definedBySchema {
            problems.append("\(table.name): ownership defined by the schema cannot be generated; write that rule by hand")
        }
        if shape.primaryKey.isEmpty { problems.append("\(table.name) has no primary key (the triggers find a row by it)") }
        for key in shape.uniqueKeys {
            guard let columns = key.columns else {
                problems.append("\(table.name): unique index \(key.name) is on an expression; its conflicts cannot be guarded")
                continue
            }
            if key.partial { problems.append("\(table.name): unique index \(key.name) is partial; its conflicts cannot be guarded") }
            for column in columns where shape.affinity(column) == nil {
                problems.append("\(table.name): unique key \(key.name) covers \(column), which is neither TEXT nor INTEGER")
            }
        }
        return problems
    }

    // The context, as the kit's SQLite connections expose it (`current_setting`, as on Postgres).
    static let isApp = "current_setting('restartix.connection_role', 1) IS 'app'"
    static let organization = "nullif(current_setting('app.current_org_id', 1), '')"
    static let user = "nullif(current_setting('app.current_user_id', 1), '')"
    static let role = "nullif(current_setting('app.current_role', 1), '')"
    static let session = "nullif(current_setting('app.session_id', 1), '')"
    static let unscoped = "current_setting('app.unscoped', 1) IS 'on'"

    /// The rule for one row (`ref` is r, NEW or OLD) and one command, one clause a line,
    /// indented by `indent`.
    static func rule(_ table: TenantTable, _ ref: String, _ command: TenantTable.Command, indent: String) -> String {
        var who: [String] = []
        if table.appCommands.contains(command) {
            who.append(table.managerCommands.contains(command)
                ? "(\(role) IN ('owner', 'admin') AND \(session) IS NULL)"
                : "\(role) IN ('owner', 'admin', 'specialist', 'assistant')")
            if table.patientClinicCommands.contains(command) { who.append("\(role) = 'patient'") }
            if table.patientOwnCommands.contains(command), case .userColumn(let column) = table.ownership {
                who.append("(\(role) = 'patient' AND \(ref).\(column) = \(user))")
            }
        }
        let i = indent
        let app = who.isEmpty
            ? "0"
            : "\(ref).\(table.tenantColumn) = \(organization)\n\(i)        AND (\(who.joined(separator: "\n\(i)            OR ")))"
        return "CASE WHEN \(isApp) THEN\n\(i)        \(app)\n\(i)    ELSE\n\(i)        \(unscoped)\n\(i)        OR \(ref).\(table.tenantColumn) = \(organization)\n\(i)    END"
    }

    static func tableSQL(_ table: TenantTable, _ shape: TableShape) -> [String] {
        let name = table.name, rows = "\(table.name)__rows"
        let denied = "'new row violates row-level security policy for table \"\(name)\"'"
        let columns = shape.columns.map(\.name)
        let key = shape.primaryKey.map { "\($0) = OLD.\($0)" }.joined(separator: " AND ")
        var out = [
            "-- \(name)",
            "INSERT INTO restartix_tenant_tables (table_name, tenant_column) VALUES ('\(name)', '\(table.tenantColumn)');",
            "ALTER TABLE \(name) RENAME TO \(rows);",
            "CREATE VIEW \(name) AS SELECT * FROM \(rows) AS r WHERE",
            "    \(rule(table, "r", .select, indent: ""));",
        ]
        func guards(excludingOld: Bool) {
            for unique in shape.uniqueKeys {
                let keyColumns = unique.columns ?? []
                let match = keyColumns.map { "k.\($0) = CAST(NEW.\($0) AS \(shape.affinity($0)!))" }.joined(separator: " AND ")
                let same = excludingOld ? " AND NOT (" + shape.primaryKey.map { "k.\($0) IS OLD.\($0)" }.joined(separator: " AND ") + ")" : ""
                let changed = excludingOld ? " AND (" + keyColumns.map { "NEW.\($0) IS NOT OLD.\($0)" }.joined(separator: " OR ") + ")" : ""
                out.append("    SELECT RAISE(ABORT, 'duplicate key value violates unique constraint \"\(unique.name)\"')")
                out.append("        WHERE EXISTS (SELECT 1 FROM \(rows) AS k WHERE \(match)\(same))\(changed);")
            }
        }
        // INSERT: the new row must pass the rule; omitted NOT NULL columns take their defaults.
        out.append("CREATE TRIGGER \(name)__insert INSTEAD OF INSERT ON \(name) BEGIN")
        out.append("    SELECT RAISE(ABORT, \(denied)) WHERE NOT coalesce(")
        out.append("        \(rule(table, "NEW", .insert, indent: "    ")), 0);")
        guards(excludingOld: false)
        let values = shape.columns.map { column in
            column.notNull && column.defaultSQL != nil ? "coalesce(NEW.\(column.name), \(column.defaultSQL!))" : "NEW.\(column.name)"
        }
        out.append("    INSERT INTO \(rows) (\(columns.joined(separator: ", ")))")
        out.append("        VALUES (\(values.joined(separator: ", ")));")
        out.append("    SELECT restartix_count_changes(changes());")
        out.append("END;")
        // UPDATE: rows the context may update, into rows it may hold, changing only the columns
        // the app role may set.
        out.append("CREATE TRIGGER \(name)__update INSTEAD OF UPDATE ON \(name) BEGIN")
        out.append("    SELECT RAISE(ABORT, \(denied)) WHERE coalesce(")
        out.append("        \(rule(table, "OLD", .update, indent: "    ")), 0)")
        out.append("        AND NOT coalesce(")
        out.append("        \(rule(table, "NEW", .update, indent: "    ")), 0);")
        if let updatable = table.updatableColumns {
            let fixed = columns.filter { !updatable.contains($0) }.map { "NEW.\($0) IS NOT OLD.\($0)" }
            if !fixed.isEmpty {
                out.append("    SELECT RAISE(ABORT, 'permission denied for table \(name)')")
                out.append("        WHERE \(isApp) AND (\(fixed.joined(separator: " OR ")));")
            }
        }
        guards(excludingOld: true)
        out.append("    UPDATE \(rows) SET \(columns.map { "\($0) = NEW.\($0)" }.joined(separator: ", "))")
        out.append("        WHERE \(key) AND coalesce(")
        out.append("        \(rule(table, "OLD", .update, indent: "    ")), 0);")
        out.append("    SELECT restartix_count_changes(changes());")
        out.append("END;")
        out.append("CREATE TRIGGER \(name)__delete INSTEAD OF DELETE ON \(name) BEGIN")
        out.append("    DELETE FROM \(rows) WHERE \(key) AND coalesce(")
        out.append("        \(rule(table, "OLD", .delete, indent: "    ")), 0);")
        out.append("    SELECT restartix_count_changes(changes());")
        out.append("END;")
        return out
    }
}
