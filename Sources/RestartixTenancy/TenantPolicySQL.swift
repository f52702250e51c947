import Logging
public import RestartixKit

/// Writes the SQLite migration that puts tenant tables under the tenancy rules their
/// ``TenantTable`` entries state, the way the platform's own tables are (see
/// Documentation/RestartixTenancy.md, "SQLite"): each table's rows move to `<table>__rows`, a
/// view named `<table>` shows only the rows the current context may see, and its INSTEAD OF
/// triggers enforce the write rules, refusing unique-key conflicts before any write (so
/// `INSERT OR REPLACE` and `UPDATE OR REPLACE` cannot delete a row, another clinic's included:
/// the guards compare what will be stored, defaults applied, and a unique-key value of another
/// storage class than its column's is refused).
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
    /// generated: a missing column, no primary key, a partial or expression unique index or one
    /// with a collation other than BINARY, a unique key over a column that is neither TEXT nor
    /// INTEGER, a nullable column with a default, a view or trigger that names the table,
    /// schema-defined ownership, a name that is not a plain identifier; and when the SQL it
    /// wrote does not apply on a scratch copy of the schema.
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
            let sql = try render(tables, shapes)
            // What is returned applies: run it on the scratch database first, so a name SQLite
            // cannot take unquoted (a keyword) fails here, not in the migration.
            do {
                try await scratch.withConnection { try await $0.executeScript(sql) }
            } catch let error as DatabaseError {
                throw TenancyError(.invalidTenantTables, "the generated SQLite policies do not apply", problems: ["\(error)"])
            }
            await scratch.shutdown()
            return sql
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
        /// (constraint name, columns, partial, collations) for every unique index; `nil`
        /// columns for an index on an expression.
        let uniqueKeys: [(name: String, columns: [String]?, partial: Bool, collations: [String])]
        /// Views and triggers of the schema (other than the table's own) whose SQL names the
        /// table: renaming it would rewire them to the unfiltered rows.
        let dependents: [String]

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
            var keys: [(name: String, columns: [String]?, partial: Bool, collations: [String])] = []
            for index in try await connection.query("SELECT name, \"unique\" AS is_unique, origin, partial FROM pragma_index_list(\(table))") {
                guard try index.decode("is_unique", as: Int.self) != 0 else { continue }
                let name = try index.decode("name", as: String.self)
                let origin = try index.decode("origin", as: String.self)
                // xinfo: the key columns (`key` = 1) with their collation.
                let parts = try await connection.query("SELECT name, coll FROM pragma_index_xinfo(\(name)) WHERE key = 1 ORDER BY seqno")
                let names = try parts.map { try $0.decode("name", as: String?.self) }
                let collations = try parts.map { try $0.decode("coll", as: String?.self) ?? "BINARY" }
                let columns = names.contains(nil) ? nil : names.compactMap { $0 }
                let constraint = switch origin {
                case "pk": "\(table)_pkey"
                case "c": name
                default: "\(table)_\((columns ?? []).joined(separator: "_"))_key"
                }
                keys.append((constraint, columns, try index.decode("partial", as: Int.self) != 0, collations))
            }
            // A rowid table's INTEGER PRIMARY KEY has no index of its own.
            let primaryKey = columns.filter { $0.primaryKeyPosition > 0 }.sorted { $0.primaryKeyPosition < $1.primaryKeyPosition }.map(\.name)
            if !primaryKey.isEmpty, !keys.contains(where: { $0.name == "\(table)_pkey" }) {
                keys.append(("\(table)_pkey", primaryKey, false, primaryKey.map { _ in "BINARY" }))
            }
            let dependents = try await connection.query("""
                SELECT type || ' ' || name AS what FROM sqlite_master
                WHERE type IN ('view', 'trigger') AND tbl_name <> \(table) AND sql LIKE '%' || \(table) || '%' ORDER BY name
                """).map { try $0.decode("what", as: String.self) }
            return TableShape(columns: columns, uniqueKeys: keys.sorted { $0.name < $1.name }, dependents: dependents)
        }

        var primaryKey: [String] {
            columns.filter { $0.primaryKeyPosition > 0 }.sorted { $0.primaryKeyPosition < $1.primaryKeyPosition }.map(\.name)
        }

        /// The storage class a unique-key column must hold: its values are refused unless they
        /// already are of it, so the guard compares exactly what will be stored.
        func affinity(_ column: String) -> String? {
            guard let type = columns.first(where: { $0.name == column })?.type.uppercased() else { return nil }
            if type.contains("INT") { return "integer" }
            if type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") { return "text" }
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
        if case .userColumn(let column) = table.ownership, !TenantTable.isIdentifier(column) {
            problems.append("\(table.name): the ownership column \(column) is not a lower-case SQL identifier")
        }
        for column in shape.columns where !TenantTable.isIdentifier(column.name) {
            problems.append("\(table.name): column \(column.name) is not a lower-case SQL identifier")
        }
        for column in shape.columns where !column.notNull && column.defaultSQL != nil {
            problems.append("\(table.name): nullable column \(column.name) has a default, which a write through the view cannot keep (make it NOT NULL)")
        }
        for dependent in shape.dependents {
            problems.append("\(table.name): \(dependent) names the table; renaming it would point that at every clinic's rows (drop it first, make it again over the view)")
        }
        if shape.primaryKey.isEmpty { problems.append("\(table.name) has no primary key (the triggers find a row by it)") }
        for key in shape.uniqueKeys {
            guard let columns = key.columns else {
                problems.append("\(table.name): unique index \(key.name) is on an expression; its conflicts cannot be guarded")
                continue
            }
            if key.partial { problems.append("\(table.name): unique index \(key.name) is partial; its conflicts cannot be guarded") }
            if key.collations.contains(where: { $0.uppercased() != "BINARY" }) {
                problems.append("\(table.name): unique index \(key.name) compares with another collation than BINARY; its conflicts cannot be guarded")
            }
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
        // What a write will store in a column: a NOT NULL column with a default gets the
        // default for NULL (the INSERT below says so; UPDATE OR REPLACE does the same).
        func stored(_ column: String) -> String {
            guard let shapeColumn = shape.columns.first(where: { $0.name == column }), shapeColumn.notNull,
                let defaultSQL = shapeColumn.defaultSQL
            else { return "NEW.\(column)" }
            return "coalesce(NEW.\(column), \(defaultSQL))"
        }
        func guards(excludingOld: Bool) {
            // A unique-key value of another storage class (2.5 in an INTEGER column, a blob in a
            // TEXT one) would be stored as something the guard below does not compare: refuse it.
            let keyed = Set(shape.uniqueKeys.flatMap { $0.columns ?? [] }).sorted()
            for column in keyed {
                let kind = shape.affinity(column)!
                out.append("    SELECT RAISE(ABORT, 'invalid value for column \(column) of table \(name): \(kind) expected')")
                out.append("        WHERE typeof(\(stored(column))) NOT IN ('\(kind)', 'null');")
            }
            for unique in shape.uniqueKeys {
                let keyColumns = unique.columns ?? []
                let match = keyColumns.map { "k.\($0) = \(stored($0))" }.joined(separator: " AND ")
                let same = excludingOld ? " AND NOT (" + shape.primaryKey.map { "k.\($0) IS OLD.\($0)" }.joined(separator: " AND ") + ")" : ""
                let changed = excludingOld ? " AND (" + keyColumns.map { "\(stored($0)) IS NOT OLD.\($0)" }.joined(separator: " OR ") + ")" : ""
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
