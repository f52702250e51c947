import CLibPQ
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A libpq connection in non-blocking mode.
///
/// The task holding the lease sends its statement itself (non-blocking writes), waits on
/// ``SocketPoller`` until the server answers, and parses the answer itself: no libpq call ever
/// blocks a thread, and a statement costs no hand-off to another thread and back. Only
/// connecting (DNS, TLS handshake) blocks, so it runs on a thread of its own.
///
/// Statements are unnamed (`PQsendQueryParams`), so nothing outlives a transaction on the
/// server and PgBouncer in transaction mode is safe. Binds go in binary with explicit type
/// OIDs, except text, which is sent untyped so the server infers the type from context
/// (`WHERE id = $1` with a UUID string works). Results come back in binary, so no output
/// depends on the server's `DateStyle` or `TimeZone`.
final class PostgresConnection: ConnectionDriver, @unchecked Sendable {
    // `conn` is used by one lease holder at a time (the pool guarantees it); `broken` is shared.
    private let conn: OpaquePointer
    private let socket: Int32
    private let brokenFlag = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)
    /// Input was read since the current statement was sent, so the socket may still hold bytes
    /// that raise no new edge-triggered event (see ``SocketPoller/waitReadable(fd:)``). Until a
    /// statement is sent the server owes nothing, so sending clears it.
    private var consumedSinceSend = false
    /// Each call's budget (``DatabaseConfiguration/callTimeout``), or `nil` for none.
    private let callTimeout: Duration?
    /// The current call's deadline and the time it had, set when the call starts.
    private var deadline: (at: ContinuousClock.Instant, budget: Duration)?

    let dialect = SQLDialect.postgres

    private init(conn: OpaquePointer, callTimeout: Duration?) {
        self.conn = conn
        self.socket = PQsocket(conn)
        self.callTimeout = callTimeout
    }

    var isBroken: Bool { brokenFlag.load(ordering: .relaxed) }

    /// Opens a connection. `conninfo` is a `postgres://` URL or a libpq keyword string.
    ///
    /// libpq's connect blocks (DNS, TCP, TLS, authentication), so it runs on a thread of its
    /// own; the caller waits until `deadline` at most and then fails with a transient
    /// `.connectionFailed` (`timedOut`), while a connection that completes later is closed.
    static func connect(
        conninfo: String,
        applicationName: String,
        redactedTarget: String,
        callTimeout: Duration?,
        deadline: ContinuousClock.Instant?
    ) async throws -> PostgresConnection {
        let worker = BlockingWorker(name: "restartix.postgres.connect")
        defer { worker.stop() }
        let lateTimeout = DatabaseError(
            code: .connectionFailed,
            detail: "could not connect to \(redactedTarget) before the deadline",
            connectFailure: .timedOut
        )
        let conn = try await worker.run(until: deadline, timeout: lateTimeout, discardLate: { late in
            SocketPoller.shared.forget(fd: PQsocket(late.value))
            PQfinish(late.value)
        }) { () throws -> UnsafeSendable<OpaquePointer> in
            // libpq's own connect_timeout, from the deadline (at least 2 s, libpq's minimum), so an
            // attempt the caller gave up on also ends soon on its thread instead of after the
            // kernel's SYN retries (about two minutes). Listed before the URL, whose own
            // connect_timeout, if any, wins.
            var keywords = ["dbname", "fallback_application_name", "client_encoding"]
            var values = [conninfo, applicationName, "UTF8"]
            if let deadline {
                let seconds = Swift.max(2, Int(((deadline - .now) / .seconds(1)).rounded(.up)))
                keywords.insert("connect_timeout", at: 0)
                values.insert("\(seconds)", at: 0)
            }
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
            guard PQsetnonblocking(connection, 1) == 0, SocketPoller.shared.register(fd: PQsocket(connection)) else {
                PQfinish(connection)
                throw DatabaseError(code: .connectionFailed, detail: "libpq could not switch the connection to non-blocking mode")
            }
            return UnsafeSendable(connection)
        }
        return PostgresConnection(conn: conn.value, callTimeout: callTimeout)
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
            detail: "could not connect to \(target): \(firstLine.trimmingCharacters(in: .whitespaces))",
            connectFailure: .classify(lower)
        )
    }

    // MARK: ConnectionDriver

    func execute(_ sql: String, _ binds: [SQLValue]) async throws -> QueryResult {
        let params = try PostgresParameters(binds)
        try startCall()
        let sent = params.withPointers { count, types, values, lengths, formats in
            PQsendQueryParams(conn, sql, count, types, values, lengths, formats, 1)
        }
        guard sent == 1 else { throw lostError() }
        try await flush()
        return try await collect(decoding: true)
    }

    func pipeline(_ statements: [(sql: String, binds: [SQLValue])]) async throws -> [QueryResult] {
        if statements.isEmpty { return [] }
        if statements.count == 1 { return [try await execute(statements[0].sql, statements[0].binds)] }
        let encoded = try statements.map { try PostgresParameters($0.binds) }
        try startCall()
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
        try await flush()

        var results: [QueryResult] = []
        var firstError: (any Error)?
        // A lost connection after the server's own error keeps the server's error.
        func next() async throws -> OpaquePointer? {
            do { return try await nextResult() } catch { throw firstError ?? error }
        }
        // One result (then NULL) per statement sent, then the sync marker.
        for _ in 0..<sent {
            guard let result = try await next() else { throw firstError ?? lostError() }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_ABORTED {
                if firstError == nil {
                    firstError = DatabaseError(code: .transactionAborted, detail: "an earlier statement in the pipeline failed")
                }
            } else if firstError == nil {
                do { results.append(try decodeResult(result)) } catch { firstError = error }
            }
            PQclear(result)
            while let extra = try await next() { PQclear(extra) }
        }
        // Between results libpq may report "nothing more for this statement" (NULL) a few
        // times; more than that means the protocol state is lost.
        var spareNulls = statements.count + 2
        while true {
            guard let result = try await next() else {
                spareNulls -= 1
                if PQstatus(conn) != CONNECTION_OK || spareNulls < 0 { throw firstError ?? lostError() }
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

    func executeScript(_ sql: String) async throws {
        try startCall()
        guard PQsendQuery(conn, sql) == 1 else { throw lostError() }
        try await flush()
        _ = try await collect(decoding: false)
    }

    func transactionState() -> TransactionState {
        // Reads libpq's client-side state without I/O.
        switch PQtransactionStatus(conn) {
        case PQTRANS_IDLE: .idle
        case PQTRANS_INTRANS, PQTRANS_ACTIVE: .active
        case PQTRANS_INERROR: .failed
        default: .unknown
        }
    }

    func isHealthy() async -> Bool {
        guard !isBroken else { return false }
        // Idle connections must have nothing to read: a readable socket means the server sent
        // something unprompted, typically the FATAL before closing (`pg_terminate_backend`,
        // restart). `poll` with a zero timeout does not block.
        guard PQstatus(conn) == CONNECTION_OK, PQtransactionStatus(conn) == PQTRANS_IDLE, socket >= 0 else {
            brokenFlag.store(true, ordering: .relaxed)
            return false
        }
        var pfd = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&pfd, 1, 0)
        if ready == 0 { return true }
        // Something arrived: consume it, and ping to see whether the connection survived.
        guard ready > 0, PQconsumeInput(conn) == 1, PQstatus(conn) == CONNECTION_OK,
              (try? await CallDeadline.forCleanup({ try await executeScript("") })) != nil, PQstatus(conn) == CONNECTION_OK
        else {
            brokenFlag.store(true, ordering: .relaxed)
            return false
        }
        return true
    }

    func close() async {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        brokenFlag.store(true, ordering: .relaxed)
        // If libpq already closed the socket (the server hung up), its number may now belong
        // to another connection: only deregister a socket that is still ours.
        if PQsocket(conn) == socket { SocketPoller.shared.forget(fd: socket) }
        PQfinish(conn)
    }

    // MARK: Non-blocking I/O

    /// Starts a call: sets its deadline (its own budget or the scope's, whichever ends first),
    /// or refuses before sending anything when the scope's has already passed.
    private func startCall() throws(DatabaseError) {
        consumedSinceSend = false
        deadline = CallDeadline.forCall(budget: callTimeout)
        if let deadline, deadline.budget <= .zero { throw CallDeadline.expiredBeforeSending("the statement") }
    }

    /// Sends everything libpq has buffered, waiting for the socket when the kernel buffer is full.
    private func flush() async throws {
        while true {
            let rc = PQflush(conn)
            if rc == 0 { return }
            guard rc == 1 else { throw lostError() }
            await SocketPoller.shared.waitWritable(fd: socket)
            if let deadline, ContinuousClock.now >= deadline.at { throw timedOutError() }
            // Read what the server sent meanwhile, so neither side waits on the other.
            guard PQconsumeInput(conn) == 1 else { throw lostError() }
            consumedSinceSend = true
        }
    }

    /// The next result, waiting for the server as needed; `nil` ends the current statement.
    private func nextResult() async throws -> OpaquePointer? {
        while PQisBusy(conn) == 1 {
            // Wait for the server unless bytes are already there to read: over TLS, OpenSSL may
            // hold decrypted bytes the socket no longer shows; and after an earlier read the
            // socket may hold more that raises no new edge. The first wait after sending needs
            // neither check, which keeps the common statement at zero extra system calls.
            let ready = tlsHasPendingData() || (consumedSinceSend && SocketPoller.shared.hasUnreadData(fd: socket))
            if !ready, !(await SocketPoller.shared.waitReadable(fd: socket, until: deadline?.at)) {
                throw timedOutError()
            }
            guard PQconsumeInput(conn) == 1 else {
                // The server may have said why before it hung up (57P01 on a terminate or a
                // shutdown, PgBouncer's 08P01): libpq has that ErrorResponse parsed, so hand it on
                // as this statement's result, with its SQLSTATE and message.
                if let reason = serverReasonAfterLoss() { return reason }
                throw lostError()
            }
            consumedSinceSend = true
        }
        guard let result = PQgetResult(conn) else { return nil }
        let status = PQresultStatus(result)
        if status == PGRES_COPY_IN || status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
            // COPY would keep the connection in a sub-protocol this driver does not speak.
            PQclear(result)
            brokenFlag.store(true, ordering: .relaxed)
            throw DatabaseError(code: .server, detail: "COPY is not supported by the storage layer; the connection was retired")
        }
        return result
    }

    /// After a failed read: the error result libpq parsed from what the server sent before the
    /// connection ended, if it carries a SQLSTATE (libpq's own "server closed the connection"
    /// does not); `nil` otherwise. The connection is broken either way.
    private func serverReasonAfterLoss() -> OpaquePointer? {
        brokenFlag.store(true, ordering: .relaxed)
        guard PQisBusy(conn) == 0, let result = PQgetResult(conn) else { return nil }
        if PQresultStatus(result) == PGRES_FATAL_ERROR, PQresultErrorField(result, Int32(Character("C").asciiValue!)) != nil {
            return result
        }
        PQclear(result)
        return nil
    }

    private func tlsHasPendingData() -> Bool {
        guard PQsslInUse(conn) == 1, let pending = TLSPending.function,
              let ssl = PQsslStruct(conn, "OpenSSL") else { return false }
        return pending(OpaquePointer(ssl)) > 0
    }

    /// Reads every result of the current statement (or script); throws the first error after
    /// draining, returns the last result decoded.
    private func collect(decoding: Bool) async throws -> QueryResult {
        var last = QueryResult.empty
        var firstError: (any Error)?
        // A lost connection after the server's own error keeps the server's error.
        func next() async throws -> OpaquePointer? {
            do { return try await nextResult() } catch { throw firstError ?? error }
        }
        while let result = try await next() {
            if firstError == nil {
                let status = PQresultStatus(result)
                if status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE || status == PGRES_NONFATAL_ERROR {
                    firstError = error(from: result)
                } else if decoding {
                    do { last = try decodeResult(result) } catch { firstError = error }
                }
            }
            PQclear(result)
        }
        if let firstError { throw firstError }
        if PQstatus(conn) != CONNECTION_OK { throw lostError() }
        return last
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
        let refusal = state == "42501" ? DatabaseError.refusal(message) : nil
        // The server's (or PgBouncer's) words about the connection itself carry no data.
        let aboutConnection = state.hasPrefix("08") || state.hasPrefix("57P")
        return DatabaseError(
            code: PQstatus(conn) != CONNECTION_OK ? .connectionLost : code,
            sqlState: state,
            constraint: field("n"),
            table: field("t") ?? refusal?.table,
            column: field("c"),
            detail: refusal?.detail ?? (aboutConnection ? "the server ended the connection: \(message)" : nil),
            serverMessage: message
        )
    }

    /// The call's deadline passed with the server's answer still owed: ask the server to cancel
    /// the statement, and retire the connection (what it would read next belongs to the
    /// abandoned statement).
    private func timedOutError() -> DatabaseError {
        brokenFlag.store(true, ordering: .relaxed)
        PostgresCanceller.cancel(conn)
        let budget = deadline.map { " (\($0.budget.milliseconds) ms)" } ?? ""
        return DatabaseError(
            code: .timedOut,
            detail: "the server did not answer within the call's deadline\(budget); the statement was canceled and the connection closed"
        )
    }

    /// The connection cannot be trusted any more (I/O failed or the protocol state is lost):
    /// mark it so the pool closes it instead of handing it out again.
    private func lostError() -> DatabaseError {
        brokenFlag.store(true, ordering: .relaxed)
        return DatabaseError(code: .connectionLost, detail: "the connection to the server failed")
    }
}

/// Sends cancel requests for statements whose caller gave up, off the caller's path.
///
/// libpq 15's `PQcancel` blocks (it opens a connection to the server or pooler and waits for
/// it to close), so each runs on a short-lived thread of its own; at most ``limit`` run at once,
/// and beyond that a cancel is skipped: closing the connection and the server's own
/// `statement_timeout` still end the statement.
enum PostgresCanceller {
    static let limit = 4
    private static let running = Atomic<Int>(0)

    static func cancel(_ conn: OpaquePointer) {
        guard let cancel = PQgetCancel(conn) else { return }
        guard running.add(1, ordering: .relaxed).newValue <= limit else {
            running.subtract(1, ordering: .relaxed)
            PQfreeCancel(cancel)
            return
        }
        let handle = UnsafeSendable(cancel)
        Thread.detachNewThread {
            var message = [CChar](repeating: 0, count: 256)
            _ = PQcancel(handle.value, &message, Int32(message.count))
            PQfreeCancel(handle.value)
            running.subtract(1, ordering: .relaxed)
        }
    }
}

/// OpenSSL's `SSL_pending`, looked up at run time from the libssl that libpq already loaded,
/// so the kit needs no link-time dependency on OpenSSL.
enum TLSPending {
    typealias Function = @convention(c) (OpaquePointer?) -> Int32
    static let function: Function? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "SSL_pending") else { return nil }
        return unsafeBitCast(symbol, to: Function.self)
    }()
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
