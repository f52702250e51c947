/// The column names of a result, shared by all its rows.
public final class SQLColumns: Sendable {
    /// Column names in result order.
    public let names: [String]
    let index: [String: Int]

    init(_ names: [String]) {
        self.names = names
        var index: [String: Int] = [:]
        for (i, name) in names.enumerated() where index[name] == nil { index[name] = i }
        self.index = index
    }
}

/// One result row. Decode cells by column name or position:
/// ```swift
/// let id = try row.decode("id", as: UUID.self)
/// let email: String? = try row.decode("email")
/// ```
public struct SQLRow: Sendable {
    /// The result's columns.
    public let columns: SQLColumns
    /// The row's cells, in column order.
    public let values: [SQLValue]

    init(columns: SQLColumns, values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    /// The raw cell of a column, or `nil` when the result has no such column.
    public subscript(column: String) -> SQLValue? {
        columns.index[column].map { values[$0] }
    }

    /// Decodes the cell of the named column.
    /// - Throws: ``DatabaseError`` with code `.decoding` naming the column, when the result has
    ///   no such column or its value does not fit `T`.
    public func decode<T: SQLDecodable>(_ column: String, as type: T.Type = T.self) throws(DatabaseError) -> T {
        guard let i = columns.index[column] else {
            throw DatabaseError(code: .decoding, column: column, detail: "the result has no column named \(column)")
        }
        return try decode(at: i, as: type)
    }

    /// Decodes the cell at a zero-based position.
    public func decode<T: SQLDecodable>(at position: Int, as type: T.Type = T.self) throws(DatabaseError) -> T {
        guard values.indices.contains(position) else {
            throw DatabaseError(code: .decoding, detail: "the result has no column at position \(position)")
        }
        do {
            return try T(sqlValue: values[position])
        } catch {
            throw DatabaseError(code: .decoding, column: columns.names[position], detail: error.description)
        }
    }
}

/// The outcome of one statement: its rows (empty for commands) and the number of rows affected.
public struct QueryResult: Sendable {
    /// The rows returned, in order.
    public let rows: [SQLRow]
    /// Rows inserted, updated or deleted by a command (0 for plain SELECT on SQLite).
    public let affectedRows: Int
    /// The result's columns.
    public let columns: SQLColumns

    /// The command tag Postgres reported (`INSERT 0 1`, `COMMIT`, ...); empty on SQLite.
    let commandTag: String

    init(columns: SQLColumns, rows: [SQLRow], affectedRows: Int, commandTag: String) {
        self.columns = columns
        self.rows = rows
        self.affectedRows = affectedRows
        self.commandTag = commandTag
    }

    static let empty = QueryResult(columns: SQLColumns([]), rows: [], affectedRows: 0, commandTag: "")
}
