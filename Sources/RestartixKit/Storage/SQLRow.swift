/// The column names of a result, shared by all its rows.
public final class SQLColumns: Sendable {
    /// Column names in result order.
    public let names: [String]
    /// Name lookup for wide results; narrow ones (the common case) scan `names`, which is
    /// cheaper than building a dictionary for every result.
    private let wideIndex: [String: Int]?

    init(_ names: [String]) {
        self.names = names
        if names.count > 16 {
            var index: [String: Int] = [:]
            for (i, name) in names.enumerated() where index[name] == nil { index[name] = i }
            wideIndex = index
        } else {
            wideIndex = nil
        }
    }

    /// The position of the first column with this name.
    func position(of name: String) -> Int? {
        if let wideIndex { return wideIndex[name] }
        return names.firstIndex(of: name)
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
        columns.position(of: column).map { values[$0] }
    }

    /// Decodes the cell of the named column.
    /// - Throws: ``DatabaseError`` with code `.decoding` naming the column, when the result has
    ///   no such column or its value does not fit `T`.
    public func decode<T: SQLDecodable>(_ column: String, as type: T.Type = T.self) throws(DatabaseError) -> T {
        guard let i = columns.position(of: column) else {
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
