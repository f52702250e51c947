import CLibPQ
import Foundation

/// Where a ``Database`` connects and how its pool behaves.
///
/// Built from a URL:
/// - `postgres://user:password@host:5432/db?sslmode=require` (or `postgresql://`): handed to
///   libpq unchanged, so every libpq option works — `sslmode`, several hosts with
///   `target_session_attrs`, service files, and the `PG*` environment variables for anything
///   the URL leaves out.
/// - `sqlite:///absolute/path.sqlite`, `sqlite:relative/path.sqlite` or `sqlite::memory:`.
public struct DatabaseConfiguration: Sendable, CustomStringConvertible {
    enum Target: Sendable {
        case postgres(conninfo: String)
        case sqlite(path: String)
    }

    let target: Target

    /// The URL with any password replaced by `***`; safe to log.
    public let redactedURL: String

    /// Maximum open connections (Postgres), or read-only connections beside the single writer
    /// (SQLite file databases). Default: 10.
    public var maximumConnections: Int = 10
    /// The role label of this database's pool gauges (`restartix_db_pool_connections` by
    /// state, `restartix_db_pool_waiting`): `admin`, `app`, `owner`... `nil` (the default)
    /// records none. `TenantDatabase` and `AdminDatabase` set `app` and `admin` when it is nil.
    public var metricsRole: String?

    /// How long an acquire waits for a free connection before failing with `.poolTimeout`.
    /// Default: 10 seconds.
    public var acquireTimeout: Duration = .seconds(10)

    /// Postgres: the `statement_timeout` every transaction of this database sends with its
    /// `BEGIN` (transaction-locally, in the same round trip, so a pooled server connection keeps
    /// nothing), the longest one statement may run on the server. Default: `nil`, the role's
    /// own setting. Give the role its budget: a few seconds for a web request's role, minutes
    /// for a batch job. (`TenantDatabase` sends its `TenantSessionSettings.statementTimeout`
    /// instead.) Statements run outside a transaction (``Database/query(_:)``,
    /// ``Database/withConnection(_:)``) are bounded by ``callTimeout`` only.
    public var statementTimeout: Duration?

    /// Postgres: how long one call (a statement, a pipeline, a transaction's statement) waits for
    /// the server's answer before it fails with ``DatabaseError/Code/timedOut``; the statement is
    /// then canceled on the server and the connection closed. This bounds what the server's
    /// timeout cannot: a statement held in PgBouncer while Postgres is away, a server or network
    /// that stopped answering. Default: `nil`, meaning ``statementTimeout`` plus one second when
    /// a statement timeout is set (so the server's cleaner cancel normally comes first), and no
    /// bound otherwise. ``Database/withDeadline(_:_:)`` bounds calls per scope.
    public var callTimeout: Duration?

    /// The call budget in effect: ``callTimeout``, or ``statementTimeout`` plus a second.
    var effectiveCallTimeout: Duration? {
        callTimeout ?? statementTimeout.map { $0 + .seconds(1) }
    }

    /// `application_name` reported to Postgres when the URL sets none. Default: `restartix`.
    public var applicationName: String = "restartix"

    /// SQLite-only settings.
    public var sqlite: SQLiteConfiguration

    /// The dialect this configuration speaks.
    public var dialect: SQLDialect {
        switch target {
        case .postgres: .postgres
        case .sqlite: .sqlite
        }
    }

    /// Parses and validates a database URL without connecting.
    /// - Throws: ``DatabaseError`` with code `.configuration` naming the problem; the message
    ///   never contains the password.
    public init(url: String) throws(DatabaseError) {
        let trimmed = url.trimmingCharacters(in: .whitespacesAndNewlines)
        redactedURL = Self.redact(trimmed)
        guard let colon = trimmed.firstIndex(of: ":") else {
            throw .configuration("the database URL has no scheme; use postgres://, postgresql:// or sqlite:")
        }
        let scheme = trimmed[..<colon].lowercased()
        switch scheme {
        case "postgres", "postgresql":
            try Self.validatePostgres(trimmed, redacted: redactedURL)
            target = .postgres(conninfo: trimmed)
            sqlite = SQLiteConfiguration(inMemory: false)
        case "sqlite":
            var rest = String(trimmed[trimmed.index(after: colon)...])
            if rest == ":memory:" || rest == "//:memory:" {
                target = .sqlite(path: ":memory:")
                sqlite = SQLiteConfiguration(inMemory: true)
                return
            }
            if rest.hasPrefix("//") { rest.removeFirst(2) }
            if let query = rest.firstIndex(of: "?") { rest = String(rest[..<query]) }
            guard !rest.isEmpty, rest != "/" else {
                throw .configuration("the SQLite URL \(redactedURL) names no file; use sqlite:///absolute/path, sqlite:relative/path or sqlite::memory:")
            }
            guard let path = rest.removingPercentEncoding, !path.contains("\0") else {
                throw .configuration("the SQLite URL \(redactedURL) has an invalid percent-encoding")
            }
            target = .sqlite(path: path)
            sqlite = SQLiteConfiguration(inMemory: false)
        default:
            throw .configuration("unsupported database URL scheme '\(scheme.prefix(20))'; use postgres://, postgresql:// or sqlite:")
        }
    }

    /// Opens an embedded SQLite database at a file path.
    public init(sqlitePath path: String) {
        target = .sqlite(path: path)
        redactedURL = "sqlite://" + path
        sqlite = SQLiteConfiguration(inMemory: path == ":memory:")
    }

    public var description: String { "DatabaseConfiguration(\(redactedURL))" }

    /// The file path of a SQLite database (`nil` for Postgres or in-memory).
    public var sqliteFilePath: String? {
        if case .sqlite(let path) = target, path != ":memory:" { return path }
        return nil
    }

    private static func validatePostgres(_ url: String, redacted: String) throws(DatabaseError) {
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            // libpq's message may quote the offending part of the URL, which can be the
            // password; describe the problem with the redacted URL instead.
            throw .configuration("malformed PostgreSQL URL \(redacted): check the host, port, percent-encoding and option names")
        }
        defer { PQconninfoFree(options) }
        // libpq checks ports only when connecting; catch a malformed one now.
        var option = options
        while let keyword = option.pointee.keyword {
            if String(cString: keyword) == "port", let value = option.pointee.val {
                let ports = String(cString: value).split(separator: ",", omittingEmptySubsequences: false)
                for port in ports where !port.isEmpty && !(UInt16(port).map { $0 > 0 } ?? false) {
                    throw .configuration("the PostgreSQL URL \(redacted) has an invalid port; use a number from 1 to 65535")
                }
            }
            option += 1
        }
    }

    /// The libpq environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGSSLMODE`, ...) that connect a libpq program, such as `pg_dump` or `pg_restore`, where
    /// this configuration connects: every option the URL sets, mapped by libpq's own table
    /// (`PQconninfoOption.envvar`). Hand them to a child process instead of the URL, so the
    /// password never appears on a command line (which other users of the host can read).
    /// - Throws: ``DatabaseError`` `.configuration` for an SQLite configuration, or an option
    ///   that has no environment variable.
    public func libpqEnvironment() throws(DatabaseError) -> [String: String] {
        guard case .postgres(let conninfo) = target else {
            throw .configuration("\(redactedURL) is not a PostgreSQL database")
        }
        var errorMessage: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &errorMessage) else {
            if let errorMessage { PQfreemem(errorMessage) }
            throw .configuration("malformed PostgreSQL URL \(redactedURL)")
        }
        defer { PQconninfoFree(options) }
        var environment: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            defer { option += 1 }
            guard let value = option.pointee.val else { continue }
            guard let variable = option.pointee.envvar else {
                throw .configuration("the PostgreSQL URL \(redactedURL) sets '\(String(cString: keyword))', which a child process cannot be given")
            }
            environment[String(cString: variable)] = String(cString: value)
        }
        return environment
    }

    /// Replaces the password of a URL (userinfo and `password=` query option) with `***`.
    public static func redact(_ url: String) -> String {
        var result = url
        if let schemeEnd = result.range(of: "://") {
            let afterScheme = schemeEnd.upperBound
            let authorityEnd = result[afterScheme...].firstIndex(where: { $0 == "?" }) ?? result.endIndex
            if let at = result[afterScheme..<authorityEnd].lastIndex(of: "@"),
               let colon = result[afterScheme..<at].firstIndex(of: ":")
            {
                result.replaceSubrange(result.index(after: colon)..<at, with: "***")
            }
        }
        if let query = result.firstIndex(of: "?") {
            let parts = result[result.index(after: query)...].split(separator: "&", omittingEmptySubsequences: false)
            let redacted = parts.map { part -> String in
                part.lowercased().hasPrefix("password=") ? "password=***" : String(part)
            }
            result = String(result[...query]) + redacted.joined(separator: "&")
        }
        return result
    }
}

/// SQLite settings. Every connection runs with `foreign_keys = ON`; file databases use WAL with
/// one writer and several read-only connections.
public struct SQLiteConfiguration: Sendable {
    /// How long a statement waits on a lock before failing with `.busy`. Default: 5 seconds.
    public var busyTimeout: Duration = .seconds(5)
    /// Prepared statements kept per connection. Default: 64.
    public var statementCacheCapacity: Int = 64
    /// Called once for every new connection, on its thread, before first use: register
    /// app-defined functions and an authorizer here.
    public var connectionSetup: (@Sendable (SQLiteConnectionHandle) throws -> Void)?
    /// Keeps a file database's files to their owner: missing directories are created `0700`,
    /// a new database file `0600` (its `-wal` and `-shm` follow it), and an existing file other
    /// users may open, or a directory they may write, is refused with a `.configuration` error
    /// naming the path and the `chmod` that fixes it. Default: `true`. Turn it off only for a
    /// file that is not patients' data.
    public var privateFiles: Bool = true

    let isInMemory: Bool

    init(inMemory: Bool) { isInMemory = inMemory }

    /// Makes `directory` (and missing parents) `0700`, or refuses with a `.configuration` error
    /// naming the `chmod` when it exists open to any other user: for an application's own state
    /// directory (the embedded default's `.restartix/`), which holds the database and keys.
    public static func preparePrivateDirectory(_ directory: String) throws(DatabaseError) {
        try SQLiteFiles.preparePrivateDirectory(directory)
    }
}
