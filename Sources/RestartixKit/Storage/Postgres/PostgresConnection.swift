import CLibPQ
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libpq connection driven from its own thread.
///
/// Statements are unnamed (`PQexecParams` / `PQsendQueryParams`), so nothing outlives a
/// transaction on the server and PgBouncer in transaction mode is safe. Binds go in binary
/// with explicit type OIDs, except text, which is sent untyped so the server infers the type
/// from context (`WHERE id = $1` with a UUID string works). Results come back in binary, so no
/// output depends on the server's `DateStyle` or `TimeZone`.
final class PostgresConnection: ConnectionDriver, @unchecked Sendable {
    // `conn` is only touched on `worker`'s thread; `broken` is shared.
    private let conn: OpaquePointer
    private let worker: BlockingWorker
    private let brokenFlag = Atomic<Bool>(false)

    let dialect = SQLDialect.postgres

    private init(conn: OpaquePointer, worker: BlockingWorker) {
        self.conn = conn
        self.worker = worker
    }

    var isBroken: Bool { brokenFlag.load(ordering: .relaxed) }

    /// Opens a connection. `conninfo` is a `postgres://` URL or a libpq keyword string.
    static func connect(conninfo: String, applicationName: String, redactedTarget: String) async throws -> PostgresConnection {
        let worker = BlockingWorker(name: "restartix.postgres")
        do {
            let conn = try await worker.run { () throws -> UnsafeSendable<OpaquePointer> in
                let keywords = ["dbname", "fallback_application_name", "client_encoding"]
                let values = [conninfo, applicationName, "UTF8"]
                let connection: OpaquePointer? = withCStringArray(keywords) { kw in
                    withCStringArray(values) { vals in PQconnectdbParams(kw, vals, 1) }
                }
                guard let connection else {
                    throw DatabaseError(code: .connectionFailed, detail: "libpq could not allocate a connection")
                }
                guard PQstatus(connection) == CONNECTION_OK else {
                    let message = String(cString: PQerrorMessage(connection))
                    PQfinish(connection)
                    throw connectError(message: message, target: redactedTarget)
                }
                // Notices go nowhere: libpq's default prints them to stderr, and they can carry data.
                PQsetNoticeProcessor(connection, { _, _ in }, nil)
                return UnsafeSendable(connection)
            }
            return PostgresConnection(conn: conn.value, worker: worker)
        } catch {
            worker.stop()
            throw error
        }
    }

    private static func connectError(message: String, target: String) -> DatabaseError {
        let lower = message.lowercased()
        let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
        if lower.contains("password authentication failed") || lower.contains("authentication failed")
            || lower.contains("no password supplied") || lower.contains("password is required")
        {
            return DatabaseError(code: .authenticationFailed, detail: "the server rejected the credentials for \(target)")
        }
        if lower.contains("database") && lower.contains("does not exist") {
            return DatabaseError(code: .databaseNotFound, detail: "the database named in \(target) does not exist")
        }
        // libpq's connection messages name host, port and user, never the password.
        return DatabaseError(
            code: .connectionFailed,
            detail: "could not connect to \(target): \(firstLine.trimmingCharacters(in: .whitespaces))"
        )
    }

    // MARK: ConnectionDriver

    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> QueryResult {
        try await worker.run { [self] in try executeBlocking(sql, binds) }
    }

    func pipeline(_ statements: [(sql: String, binds: [SQLValue])]) async throws -> [QueryResult] {
        try await worker.run { [self] in try pipelineBlocking(statements) }
    }

    func executeScript(_ sql: String) async throws {
        try await worker.run { [self] in
            guard let result = PQexec(conn, sql) else { throw lostError() }
            defer { PQclear(result) }
            let status = PQresultStatus(result)
            guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else {
                throw error(from: result)
            }
        }
    }

    func transactionState() -> TransactionState {
        // Reads libpq's client-side state without I/O; safe while the lease holder has no job
        // in flight on the worker.
        switch PQtransactionStatus(conn) {
        case PQTRANS_IDLE: .idle
        case PQTRANS_INTRANS, PQTRANS_ACTIVE: .active
        case PQTRANS_INERROR: .failed
        default: .unknown
        }
    }

    func isHealthy() async -> Bool {
        guard !isBroken else { return false }
        // Fast path without a thread hop: status, idle, and nothing unexpected on the socket.
        switch quickHealthCheck() {
        case .healthy: return true
        case .broken:
            brokenFlag.store(true, ordering: .relaxed)
            return false
        case .needsPing:
            let healthy = (try? await worker.run { [self] in pingBlocking() }) ?? false
            if !healthy { brokenFlag.store(true, ordering: .relaxed) }
            return healthy
        }
    }

    func close() async {
        brokenFlag.store(true, ordering: .relaxed)
        _ = try? await worker.run { [self] in PQfinish(conn) }
        worker.stop()
    }

    // MARK: Blocking internals (worker thread only)

    private enum QuickHealth { case healthy, broken, needsPing }

    /// Idle connections must have nothing to read: a readable socket means the server sent
    /// something unprompted, typically the FATAL before closing (`pg_terminate_backend`, restart).
    /// `poll` with a zero timeout does not block.
    private func quickHealthCheck() -> QuickHealth {
        guard PQstatus(conn) == CONNECTION_OK, PQtransactionStatus(conn) == PQTRANS_IDLE else { return .broken }
        let socket = PQsocket(conn)
        guard socket >= 0 else { return .broken }
        var pfd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, 0)
        if ready == 0 { return .healthy }
        return ready < 0 ? .broken : .needsPing
    }

    private func pingBlocking() -> Bool {
        // Something arrived: consume it and see whether the connection survived.
        guard PQconsumeInput(conn) == 1, PQstatus(conn) == CONNECTION_OK else { return false }
        guard let result = PQexec(conn, "") else { return false }
        defer { PQclear(result) }
        return PQresultStatus(result) == PGRES_EMPTY_QUERY && PQstatus(conn) == CONNECTION_OK
    }

    private func executeBlocking(_ sql: String, _ binds: [SQLValue]) throws -> QueryResult {
        let params = try PostgresParameters(binds)
        let result: OpaquePointer? = params.withPointers { count, types, values, lengths, formats in
            PQexecParams(conn, sql, count, types, values, lengths, formats, 1)
        }
        guard let result else { throw lostError() }
        defer { PQclear(result) }
        return try decodeResult(result)
    }

    private func pipelineBlocking(_ statements: [(sql: String, binds: [SQLValue])]) throws -> [QueryResult] {
        if statements.isEmpty { return [] }
        if statements.count == 1 { return [try executeBlocking(statements[0].sql, statements[0].binds)] }
        let encoded = try statements.map { try PostgresParameters($0.binds) }
        guard PQenterPipelineMode(conn) == 1 else { throw lostError() }
        defer { PQexitPipelineMode(conn) }
        var sent = 0
        for (statement, params) in zip(statements, encoded) {
            let ok = params.withPointers { count, types, values, lengths, formats in
                PQsendQueryParams(conn, statement.sql, count, types, values, lengths, formats, 1)
            }
            guard ok == 1 else { break }
            sent += 1
        }
        guard PQpipelineSync(conn) == 1 else { throw lostError() }

        var results: [QueryResult] = []
        var firstError: (any Error)?
        // One result (then NULL) per statement sent, then the sync marker.
        for _ in 0..<sent {
            guard let result = PQgetResult(conn) else { throw lostError() }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_ABORTED {
                if firstError == nil { firstError = DatabaseError(code: .transactionAborted, detail: "an earlier statement in the pipeline failed") }
            } else if firstError == nil {
                do { results.append(try decodeResult(result)) } catch { firstError = error }
            }
            PQclear(result)
            while let extra = PQgetResult(conn) { PQclear(extra) }
        }
        // Drain up to and including the sync marker.
        while true {
            guard let result = PQgetResult(conn) else {
                if PQstatus(conn) != CONNECTION_OK { throw lostError() }
                continue
            }
            let status = PQresultStatus(result)
            PQclear(result)
            if status == PGRES_PIPELINE_SYNC { break }
        }
        if sent < statements.count, firstError == nil { throw lostError() }
        if let firstError { throw firstError }
        return results
    }

    private func decodeResult(_ result: OpaquePointer) throws -> QueryResult {
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK:
            return QueryResult(columns: SQLColumns([]), rows: [], affectedRows: affectedRows(result), commandTag: commandTag(result))
        case PGRES_EMPTY_QUERY:
            return .empty
        case PGRES_TUPLES_OK, PGRES_SINGLE_TUPLE:
            let rowCount = Int(PQntuples(result))
            let fieldCount = Int(PQnfields(result))
            var names: [String] = []
            var types: [UInt32] = []
            names.reserveCapacity(fieldCount)
            for f in 0..<Int32(fieldCount) {
                names.append(String(cString: PQfname(result, f)))
                types.append(UInt32(PQftype(result, f)))
            }
            let columns = SQLColumns(names)
            var rows: [SQLRow] = []
            rows.reserveCapacity(rowCount)
            for r in 0..<Int32(rowCount) {
                var values: [SQLValue] = []
                values.reserveCapacity(fieldCount)
                for f in 0..<Int32(fieldCount) {
                    if PQgetisnull(result, r, f) == 1 {
                        values.append(.null)
                        continue
                    }
                    let length = Int(PQgetlength(result, r, f))
                    let bytes = UnsafeRawBufferPointer(start: PQgetvalue(result, r, f), count: length)
                    values.append(try PostgresBinary.decode(typeOID: types[Int(f)], bytes: bytes, column: names[Int(f)]))
                }
                rows.append(SQLRow(columns: columns, values: values))
            }
            return QueryResult(columns: columns, rows: rows, affectedRows: affectedRows(result), commandTag: commandTag(result))
        default:
            throw error(from: result)
        }
    }

    private func commandTag(_ result: OpaquePointer) -> String {
        guard let text = PQcmdStatus(result) else { return "" }
        return String(cString: text)
    }

    private func affectedRows(_ result: OpaquePointer) -> Int {
        guard let text = PQcmdTuples(result) else { return 0 }
        return Int(String(cString: text)) ?? 0
    }

    private func error(from result: OpaquePointer) -> DatabaseError {
        func field(_ code: Character) -> String? {
            guard let value = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: value)
        }
        let message = field("M") ?? String(cString: PQresultErrorMessage(result))
        guard let state = field("C") else {
            // No SQLSTATE: libpq's own failure, almost always a lost connection.
            if PQstatus(conn) != CONNECTION_OK {
                brokenFlag.store(true, ordering: .relaxed)
                return DatabaseError(code: .connectionLost, detail: "the server closed the connection")
            }
            return DatabaseError(code: .server, serverMessage: message)
        }
        let code = DatabaseError.code(forSQLState: state, message: message)
        if code == .connectionLost || PQstatus(conn) != CONNECTION_OK {
            brokenFlag.store(true, ordering: .relaxed)
        }
        return DatabaseError(
            code: PQstatus(conn) != CONNECTION_OK ? .connectionLost : code,
            sqlState: state,
            constraint: field("n"),
            table: field("t"),
            column: field("c"),
            serverMessage: message
        )
    }

    private func lostError() -> DatabaseError {
        if PQstatus(conn) != CONNECTION_OK { brokenFlag.store(true, ordering: .relaxed) }
        return DatabaseError(code: .connectionLost, detail: "the connection to the server failed")
    }
}

/// Passes a non-Sendable C pointer out of a worker job; the caller keeps it thread-confined.
struct UnsafeSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let duplicates = strings.map { strdup($0) }
    defer { duplicates.forEach { free($0) } }
    var pointers: [UnsafePointer<CChar>?] = duplicates.map { UnsafePointer($0) }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
