public import Foundation

/// A SQL statement written once for every backend, with every interpolated value sent as a bind.
///
/// ```swift
/// let rows = try await db.query("SELECT name FROM organizations WHERE id = \(orgID)")
/// ```
/// renders as `... WHERE id = $1` on Postgres and `... WHERE id = ?` on SQLite, with `orgID`
/// bound, never spliced into the text. Text that must be spliced (an identifier from a fixed
/// list, a dialect-specific clause) goes through the explicitly named
/// `\(unsafeRaw: "...")` escape, or ``SQLQuery/init(unsafeSQL:)``.
public struct SQLQuery: Sendable, ExpressibleByStringInterpolation, CustomStringConvertible {
    enum Fragment: Sendable {
        case sql(String)
        case bind(SQLValue)
    }

    var fragments: [Fragment]

    /// A statement from raw SQL text with no binds. The name says what it is: never build
    /// `sql` from input.
    public init(unsafeSQL sql: String) { fragments = [.sql(sql)] }

    public init(stringLiteral value: String) { fragments = [.sql(value)] }

    public init(stringInterpolation: StringInterpolation) { fragments = stringInterpolation.fragments }

    /// The values bound by this statement, in order.
    public var binds: [SQLValue] {
        fragments.compactMap { if case .bind(let v) = $0 { v } else { nil } }
    }

    /// Appends another query (its text and its binds).
    public mutating func append(_ other: SQLQuery) { fragments.append(contentsOf: other.fragments) }

    /// Concatenates two queries.
    public static func + (lhs: SQLQuery, rhs: SQLQuery) -> SQLQuery {
        var result = lhs
        result.append(rhs)
        return result
    }

    /// `$0` ... `$31`, so rendering a statement does not format numbers.
    private static let placeholders = (0..<32).map { "$\($0)" }

    /// Renders the statement for a dialect: the SQL text with placeholders, and the binds.
    public func render(for dialect: SQLDialect) -> (sql: String, binds: [SQLValue]) {
        var sql = ""
        var binds: [SQLValue] = []
        for fragment in fragments {
            switch fragment {
            case .sql(let text): sql += text
            case .bind(let value):
                binds.append(value)
                switch dialect.base {
                case .postgres:
                    if binds.count < Self.placeholders.count { sql += Self.placeholders[binds.count] } else { sql += "$\(binds.count)" }
                case .sqlite: sql += "?"
                }
            }
        }
        return (sql, binds)
    }

    /// The statement text as Postgres would receive it; binds show as `$n`, never their values.
    public var description: String { render(for: .postgres).sql }

    public struct StringInterpolation: StringInterpolationProtocol, Sendable {
        var fragments: [Fragment] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            fragments.reserveCapacity(interpolationCount * 2 + 1)
        }

        public mutating func appendLiteral(_ literal: String) {
            if case .sql(let previous)? = fragments.last {
                fragments[fragments.count - 1] = .sql(previous + literal)
            } else {
                fragments.append(.sql(literal))
            }
        }

        /// Binds a value.
        public mutating func appendInterpolation(_ value: some SQLEncodable) {
            fragments.append(.bind(value.sqlValue))
        }

        /// Binds an optional value (`nil` binds SQL `NULL`).
        public mutating func appendInterpolation<Value: SQLEncodable>(_ value: Value?) {
            fragments.append(.bind(value?.sqlValue ?? .null))
        }

        /// Binds a `Codable` value as a JSON document.
        public mutating func appendInterpolation<Value: Codable & Sendable>(json value: Value) {
            fragments.append(.bind(SQLJSON(value).sqlValue))
        }

        /// Splices another query, with its own binds.
        public mutating func appendInterpolation(_ query: SQLQuery) {
            for fragment in query.fragments {
                if case .sql(let text) = fragment { appendLiteral(text) } else { fragments.append(fragment) }
            }
        }

        /// Splices raw SQL text. Never pass anything derived from input.
        public mutating func appendInterpolation(unsafeRaw sql: String) {
            appendLiteral(sql)
        }

        /// Splices a quoted identifier (`"name"`, with inner quotes doubled); valid on both dialects.
        public mutating func appendInterpolation(identifier name: String) {
            appendLiteral("\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\"")
        }
    }
}

/// The SQL dialect a ``Database`` speaks.
public struct SQLDialect: Sendable, Hashable, CustomStringConvertible {
    enum Base: Sendable, Hashable { case postgres, sqlite }
    let base: Base

    /// PostgreSQL (placeholders `$1`, `$2`, ...).
    public static let postgres = SQLDialect(base: .postgres)
    /// SQLite (placeholders `?`).
    public static let sqlite = SQLDialect(base: .sqlite)

    public var description: String {
        switch base {
        case .postgres: "postgres"
        case .sqlite: "sqlite"
        }
    }

    /// The database's clock as an expression, in the column format of the dialect: `now()` on
    /// Postgres, the kit's `YYYY-MM-DDTHH:MM:SS.ffffffZ` text on SQLite.
    public var now: SQLQuery {
        base == .postgres ? "now()" : "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')"
    }
}

extension SQLQuery {
    /// ` AND <column> IN (...)` for a run limited to some clinics, nothing for all of them
    /// (`nil`), and a condition no row meets for an empty list. `column` is written as given
    /// (a column name of the kit's own schema, never input).
    public static func organizationScope(_ organizations: [UUID]?, column: String = "organization_id") -> SQLQuery {
        guard let organizations else { return "" }
        guard !organizations.isEmpty else { return " AND 1 = 0" }
        var query: SQLQuery = " AND \(unsafeRaw: column) IN ("
        for (index, id) in organizations.enumerated() {
            query.append(index == 0 ? "\(id)" : ", \(id)")
        }
        query.append(")")
        return query
    }
}
