import Foundation
/// An error from the storage layer, typed so callers can branch without matching strings.
///
/// `description` is safe to log: it names the kind of failure, the SQLSTATE and the schema
/// objects involved (constraint, table, column), never a bind value, a row value or a password.
/// The server's own message can contain data (Postgres prints the offending value for many
/// errors), so it is kept apart in ``serverMessage`` and is not part of `description`.
public struct DatabaseError: RestartixError, Hashable, CustomDebugStringConvertible {
    /// The class of failure. Open-ended: new codes may be added.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        enum Base: String, Sendable, Hashable {
            case configuration = "invalid configuration"
            case connectionFailed = "could not connect"
            case authenticationFailed = "authentication failed"
            case databaseNotFound = "database does not exist"
            case connectionLost = "connection lost"
            case poolTimeout = "timed out waiting for a pooled connection"
            case timedOut = "timed out waiting for the server"
            case poolClosed = "the pool is shut down"
            case uniqueViolation = "unique violation"
            case foreignKeyViolation = "foreign key violation"
            case checkViolation = "check violation"
            case notNullViolation = "not-null violation"
            case insufficientPrivilege = "insufficient privilege"
            case rowLevelSecurityViolation = "row-level security violation"
            case serializationFailure = "serialization failure"
            case deadlock = "deadlock detected"
            case busy = "database is locked"
            case queryCanceled = "query canceled"
            case syntaxError = "SQL syntax or reference error"
            case invalidValue = "invalid value for its column type"
            case decoding = "row decoding failed"
            case transactionClosed = "transaction handle used outside its closure"
            case transactionAborted = "transaction aborted"
            case migration = "migration failed"
            case server = "database error"
        }

        let base: Base

        /// A URL or option could not be understood.
        public static let configuration = Code(base: .configuration)
        /// The server could not be reached.
        public static let connectionFailed = Code(base: .connectionFailed)
        /// The server rejected the credentials.
        public static let authenticationFailed = Code(base: .authenticationFailed)
        /// The named database does not exist.
        public static let databaseNotFound = Code(base: .databaseNotFound)
        /// The connection broke during use (server restart, `pg_terminate_backend`, network).
        public static let connectionLost = Code(base: .connectionLost)
        /// No pooled connection became free within the acquire timeout.
        public static let poolTimeout = Code(base: .poolTimeout)
        /// The server did not answer within the call's deadline (``DatabaseConfiguration/callTimeout``
        /// or a ``Database/withDeadline(_:_:)`` scope): typically a statement held in a pooler that
        /// cannot reach Postgres. The statement was canceled and the connection closed, never
        /// reused; whether it ran is unknown.
        public static let timedOut = Code(base: .timedOut)
        /// The pool was shut down.
        public static let poolClosed = Code(base: .poolClosed)
        /// SQLSTATE 23505 / SQLite `UNIQUE` or `PRIMARY KEY` constraint.
        public static let uniqueViolation = Code(base: .uniqueViolation)
        /// SQLSTATE 23503 / SQLite `FOREIGN KEY` constraint.
        public static let foreignKeyViolation = Code(base: .foreignKeyViolation)
        /// SQLSTATE 23514 / SQLite `CHECK` constraint.
        public static let checkViolation = Code(base: .checkViolation)
        /// SQLSTATE 23502 / SQLite `NOT NULL` constraint.
        public static let notNullViolation = Code(base: .notNullViolation)
        /// SQLSTATE 42501 (other than row-level security) / SQLite authorizer denial.
        public static let insufficientPrivilege = Code(base: .insufficientPrivilege)
        /// A row-level security policy rejected a write (SQLSTATE 42501 from a policy, or the
        /// SQLite enforcement triggers).
        public static let rowLevelSecurityViolation = Code(base: .rowLevelSecurityViolation)
        /// SQLSTATE 40001 / SQLite `BUSY_SNAPSHOT`: retry the transaction.
        public static let serializationFailure = Code(base: .serializationFailure)
        /// SQLSTATE 40P01: retry the transaction.
        public static let deadlock = Code(base: .deadlock)
        /// SQLite stayed locked past the busy timeout.
        public static let busy = Code(base: .busy)
        /// SQLSTATE 57014: statement timeout or cancel.
        public static let queryCanceled = Code(base: .queryCanceled)
        /// SQLSTATE class 42 (syntax, undefined table or column) / SQLite prepare errors.
        public static let syntaxError = Code(base: .syntaxError)
        /// SQLSTATE class 22: a value that does not fit its column type.
        public static let invalidValue = Code(base: .invalidValue)
        /// A cell could not be decoded to the requested Swift type.
        public static let decoding = Code(base: .decoding)
        /// A transaction or connection handle was used after its closure returned.
        public static let transactionClosed = Code(base: .transactionClosed)
        /// The transaction had failed and was rolled back instead of committed.
        public static let transactionAborted = Code(base: .transactionAborted)
        /// A migration set is invalid or could not be applied.
        public static let migration = Code(base: .migration)
        /// Any other server error; see ``DatabaseError/sqlState``.
        public static let server = Code(base: .server)

        public var description: String { base.rawValue }

        /// The code's stable name (`uniqueViolation`).
        public var name: String { "\(base)" }

        /// The HTTP status a request that ends in this error answers with.
        public var httpStatus: Int {
            switch base {
            case .uniqueViolation, .foreignKeyViolation, .serializationFailure, .deadlock: 409
            case .checkViolation, .notNullViolation, .invalidValue: 422
            case .insufficientPrivilege, .rowLevelSecurityViolation: 403
            case .connectionFailed, .connectionLost, .poolTimeout, .timedOut, .busy, .queryCanceled, .poolClosed, .databaseNotFound,
                 .authenticationFailed:
                503
            case .configuration, .syntaxError, .decoding, .transactionClosed, .transactionAborted, .migration, .server: 500
            }
        }
    }

    public static let domain = "database"
    public var codeName: String { code.name }
    public var safeDetail: String { detail ?? code.description }
    public var httpStatus: Int { code.httpStatus }

    /// The class of failure.
    public let code: Code
    /// The five-character SQLSTATE, when the server sent one (SQLite errors map to none).
    public let sqlState: String?
    /// The constraint involved, when known.
    public let constraint: String?
    /// The table involved, when known.
    public let table: String?
    /// The column involved, when known.
    public let column: String?
    /// A safe explanation written by the kit (never containing data).
    public let detail: String?
    /// The server's own message. It may contain row or bind values (Postgres quotes offending
    /// input); never log it or return it to a client.
    public let serverMessage: String?
    /// Why a connection could not be made (``Code/connectionFailed`` only), which decides
    /// whether trying again can help.
    public let connectFailure: ConnectFailure?

    /// The cause of a failed connect, read from libpq's or PgBouncer's message.
    public enum ConnectFailure: String, Sendable, Hashable, CustomStringConvertible {
        /// Nothing listens there now (`Connection refused`): a server or pooler restarting.
        case refused
        /// No answer within `connect_timeout`, or the network dropped the attempt.
        case timedOut
        /// Postgres is starting up, shutting down or in recovery (SQLSTATE 57P03).
        case serverNotReady
        /// `too many clients` (53300), or PgBouncer's `no more connections allowed`.
        case tooManyConnections
        /// PgBouncer cannot reach Postgres (`server login has been failing`, `cannot connect`).
        case poolerCannotReachServer
        /// The host name does not resolve: configuration, not a passing fault.
        case unknownHost
        /// TLS could not be set up as asked (`sslmode`, certificates): configuration.
        case tls
        /// Anything else.
        case other

        /// Whether the same connect may succeed in a moment.
        public var isTransient: Bool {
            switch self {
            case .refused, .timedOut, .serverNotReady, .tooManyConnections, .poolerCannotReachServer: true
            case .unknownHost, .tls, .other: false
            }
        }

        public var description: String { rawValue }

        /// Classifies a libpq or PgBouncer connect message (lower-cased).
        static func classify(_ message: String) -> ConnectFailure {
            let rules: [(ConnectFailure, [String])] = [
                (.poolerCannotReachServer, ["server login has been failing", "pgbouncer cannot connect to server", "server connect failed"]),
                (.tooManyConnections, ["too many clients", "no more connections allowed", "too many connections"]),
                (.serverNotReady, ["the database system is starting up", "the database system is shutting down",
                                   "the database system is in recovery mode", "the database system is not yet accepting connections"]),
                (.refused, ["connection refused"]),
                (.timedOut, ["timeout expired", "timed out", "connection reset", "no route to host", "network is unreachable",
                             "server closed the connection unexpectedly"]),
                (.unknownHost, ["could not translate host name", "name or service not known", "nodename nor servname"]),
                (.tls, ["ssl", "certificate"]),
            ]
            return rules.first { _, needles in needles.contains { message.contains($0) } }?.0 ?? .other
        }
    }

    public init(
        code: Code,
        sqlState: String? = nil,
        constraint: String? = nil,
        table: String? = nil,
        column: String? = nil,
        detail: String? = nil,
        serverMessage: String? = nil,
        connectFailure: ConnectFailure? = nil
    ) {
        self.code = code
        self.sqlState = sqlState
        self.constraint = constraint
        self.table = table
        self.column = column
        self.detail = detail
        self.serverMessage = serverMessage
        self.connectFailure = connectFailure
    }

    /// Whether retrying the whole transaction may succeed (serialization failure, deadlock,
    /// busy, connection lost before commit, a pool wait or a server answer that did not come in
    /// time, and a connect that failed
    /// for a passing cause: refused, timed out, server not ready, too many clients, a pooler
    /// that cannot reach Postgres). See ``retryingTransientErrors(_:_:)``.
    public var isTransient: Bool {
        if code == .connectionFailed { return connectFailure?.isTransient ?? false }
        return [.serializationFailure, .deadlock, .busy, .connectionLost, .poolTimeout, .timedOut].contains(code)
    }

    public var description: String {
        var text = identifier
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        var objects: [String] = []
        if let table { objects.append("table \(table)") }
        if let column { objects.append("column \(column)") }
        if let constraint { objects.append("constraint \(constraint)") }
        if !objects.isEmpty { text += " on " + objects.joined(separator: ", ") }
        if let connectFailure { text += " [\(connectFailure)\(connectFailure.isTransient ? ", transient" : "")]" }
        text += ": \(code)"
        if let detail { text += ": \(detail)" }
        return text
    }

    /// The same as `description`: debug output must not reveal ``serverMessage`` either.
    public var debugDescription: String { description }
}

extension DatabaseError {
    static func configuration(_ detail: String) -> DatabaseError {
        DatabaseError(code: .configuration, detail: detail)
    }

    static let closedHandle = DatabaseError(
        code: .transactionClosed,
        detail: "a connection or transaction handle must not be used after its closure returns"
    )

    /// The table and a safe sentence naming the rule, for a Postgres refusal (SQLSTATE 42501).
    /// Postgres names the table only in the message of these errors (never a row's data:
    /// `new row violates row-level security policy [(USING expression)] for table "t"`,
    /// `permission denied for table t`); the kit's own guards append their rule after a colon
    /// (`permission denied for table usage_quotas: usage is only counted up within a period`).
    static func refusal(_ message: String) -> (table: String?, detail: String)? {
        guard let range = message.range(of: " for table ") else { return nil }
        var rest = message[range.upperBound...]
        var rule: Substring?
        if let colon = rest.range(of: ": ") {
            rule = rest[colon.upperBound...]
            rest = rest[..<colon.lowerBound]
        }
        let table = rest.trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
        guard !table.isEmpty, table.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }) else { return nil }
        if message.contains("row-level security") {
            return (table, "a row-level security policy of \(table) refuses this row under the transaction's context")
        }
        let because = rule.map { ": \($0)" } ?? ""
        return (table, "the connected role may not do this on \(table)\(because)")
    }

    /// Maps a Postgres SQLSTATE (and, for 42501, the message) to a code.
    static func code(forSQLState state: String, message: String) -> Code {
        switch state {
        case "23505": return .uniqueViolation
        case "23503": return .foreignKeyViolation
        case "23514": return .checkViolation
        case "23502": return .notNullViolation
        case "42501":
            return message.contains("row-level security") ? .rowLevelSecurityViolation : .insufficientPrivilege
        case "40001": return .serializationFailure
        case "40P01": return .deadlock
        case "57014": return .queryCanceled
        case "28P01", "28000": return .authenticationFailed
        case "3D000": return .databaseNotFound
        case "57P01", "57P02", "57P03": return .connectionLost
        default:
            if state.hasPrefix("08") { return .connectionLost }
            if state.hasPrefix("42") { return .syntaxError }
            if state.hasPrefix("22") { return .invalidValue }
            return .server
        }
    }
}
