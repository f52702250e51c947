import Foundation
import RestartixKit
import RestartixTestSupport
import Testing

/// One suite, run identically on SQLite, Postgres direct and Postgres through PgBouncer.
@Suite("Storage conformance", .timeLimit(.minutes(3)))
struct StorageConformanceTests {
    static let typesPostgres = """
        id bigint PRIMARY KEY, i bigint, i4 integer, d double precision, b boolean, t text, raw bytea,
        u uuid, ts timestamptz, j jsonb
        """
    static let typesSQLite = """
        id INTEGER PRIMARY KEY, i INTEGER, i4 INTEGER, d REAL, b INTEGER, t TEXT, raw BLOB, u TEXT, ts TEXT, j TEXT
        """

    struct Payload: Codable, Equatable, Sendable {
        var name: String
        var tags: [String]
        var score: Double
    }

    @Test("every type round-trips, NULL included", arguments: TestBackend.all)
    func roundTrip(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: Self.typesPostgres, sqlite: Self.typesSQLite) { db, table in
            var bytes = [UInt8](repeating: 0, count: 1 << 20)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
            let blob = Data(bytes)
            let text = "Zoë 🧑🏽‍⚕️ — مرحبا — 日本語 — e\u{301}"
            let id = UUID()
            let instant = Date(timeIntervalSince1970: 1_764_000_000.123456)
            let payload = Payload(name: "knee", tags: ["a", "ü"], score: 0.5)
            let inserted = try await db.execute(
                """
                INSERT INTO \(unsafeRaw: table) (id, i, i4, d, b, t, raw, u, ts, j)
                VALUES (\(1), \(Int64.max), \(Int32.min), \(-0.125), \(true), \(text), \(blob), \(id), \(instant), \(json: payload))
                """
            )
            #expect(inserted == 1)
            try await db.execute(
                """
                INSERT INTO \(unsafeRaw: table) (id, i, i4, d, b, t, raw, u, ts, j)
                VALUES (\(2), \(Int64?.none), \(Int32?.none), \(Double?.none), \(Bool?.none), \(String?.none),
                        \(Data?.none), \(UUID?.none), \(Date?.none), \(SQLValue.null))
                """
            )
            // An empty blob is not NULL.
            try await db.execute("INSERT INTO \(unsafeRaw: table) (id, raw, t) VALUES (\(3), \(Data()), \(""))")

            let rows = try await db.query("SELECT * FROM \(unsafeRaw: table) ORDER BY id")
            #expect(rows.count == 3)
            let row = rows[0]
            #expect(try row.decode("i", as: Int64.self) == Int64.max)
            #expect(try row.decode("i4", as: Int32.self) == Int32.min)
            #expect(try row.decode("d", as: Double.self) == -0.125)
            #expect(try row.decode("b", as: Bool.self) == true)
            #expect(try row.decode("t", as: String.self) == text)
            #expect(try row.decode("raw", as: Data.self) == blob)
            #expect(try row.decode("u", as: UUID.self) == id)
            let decodedInstant = try row.decode("ts", as: Date.self)
            #expect(abs(decodedInstant.timeIntervalSince1970 - instant.timeIntervalSince1970) < 0.000_001)
            #expect(try row.decode("j", as: SQLJSON<Payload>.self).value == payload)

            let nulls = rows[1]
            #expect(try nulls.decode("i", as: Int64?.self) == nil)
            #expect(try nulls.decode("i4", as: Int32?.self) == nil)
            #expect(try nulls.decode("d", as: Double?.self) == nil)
            #expect(try nulls.decode("b", as: Bool?.self) == nil)
            #expect(try nulls.decode("t", as: String?.self) == nil)
            #expect(try nulls.decode("raw", as: Data?.self) == nil)
            #expect(try nulls.decode("u", as: UUID?.self) == nil)
            #expect(try nulls.decode("ts", as: Date?.self) == nil)
            #expect(try nulls.decode("j", as: SQLJSON<Payload>?.self) == nil)
            #expect(try nulls.decode("id", as: Int.self) == 2)

            #expect(try rows[2].decode("raw", as: Data?.self) == Data())
            #expect(try rows[2].decode("t", as: String?.self) == "")
        }
    }

    @Test("a timestamp written with a UTC offset reads back as the same instant", arguments: TestBackend.all)
    func timestampWithTimeZone(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: "id integer PRIMARY KEY, ts timestamptz", sqlite: "id INTEGER PRIMARY KEY, ts TEXT") { db, table in
            try await db.execute("INSERT INTO \(unsafeRaw: table) (id, ts) VALUES (1, '2026-03-29T01:30:00.250+05:30')")
            let row = try #require(try await db.query("SELECT ts FROM \(unsafeRaw: table)").first)
            let expected = Date(timeIntervalSince1970: 1_774_728_000.25)  // 2026-03-28T20:00:00.25Z
            #expect(try row.decode("ts", as: Date.self).timeIntervalSince1970 == expected.timeIntervalSince1970)
        }
    }

    @Test("a decoding mismatch names the column", arguments: TestBackend.all)
    func decodingErrorNamesColumn(backend: TestBackend) async throws {
        let db = try backend.makeDatabase()
        let row = try #require(try await db.query("SELECT 'not a number' AS amount").first)
        let error = try #require(throws: DatabaseError.self) { try row.decode("amount", as: Int.self) }
        #expect(error.code == .decoding)
        #expect(error.column == "amount")
        #expect(!error.description.contains("not a number"))
        let missing = try #require(throws: DatabaseError.self) { try row.decode("nope", as: Int.self) }
        #expect(missing.code == .decoding)
        await db.shutdown()
    }

    @Test("commit on return, rollback on throw", arguments: TestBackend.all)
    func transactions(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: "id integer PRIMARY KEY", sqlite: "id INTEGER PRIMARY KEY") { db, table in
            struct Boom: Error {}
            await #expect(throws: Boom.self) {
                try await db.transaction { tx in
                    try await tx.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (1)")
                    try await tx.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (2)")
                    throw Boom()
                }
            }
            #expect(try await count(db, table) == 0)

            let value = try await db.transaction { tx in
                try await tx.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (3)")
                return 42
            }
            #expect(value == 42)
            #expect(try await count(db, table) == 1)
        }
    }

    @Test("a caught statement error still aborts the transaction", arguments: TestBackend.all)
    func caughtErrorAborts(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: "id integer PRIMARY KEY", sqlite: "id INTEGER PRIMARY KEY") { db, table in
            try await db.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (1)")
            let error = await #expect(throws: DatabaseError.self) {
                try await db.transaction { tx in
                    try await tx.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (2)")
                    do {
                        try await tx.execute("INSERT INTO \(unsafeRaw: table) (id) VALUES (1)")
                    } catch {
                        // Swallowed on purpose: the kit must not commit the row with id 2.
                    }
                }
            }
            #expect(error?.code == .transactionAborted)
            #expect(try await count(db, table) == 1)
        }
    }

    @Test("constraint errors map to typed codes", arguments: TestBackend.all)
    func constraintErrors(backend: TestBackend) async throws {
        try await backend.withScratchTable(
            postgres: "id integer PRIMARY KEY, email text UNIQUE, n integer NOT NULL CHECK (n > 0), parent integer REFERENCES %TABLE% (id)",
            sqlite: "id INTEGER PRIMARY KEY, email TEXT UNIQUE, n INTEGER NOT NULL CHECK (n > 0), parent INTEGER REFERENCES %TABLE% (id)"
        ) { db, table in
            try await db.execute("INSERT INTO \(unsafeRaw: table) (id, email, n, parent) VALUES (1, \("secret-phi@example.com"), 1, NULL)")

            let unique = await #expect(throws: DatabaseError.self) {
                try await db.execute("INSERT INTO \(unsafeRaw: table) (id, email, n) VALUES (2, \("secret-phi@example.com"), 1)")
            }
            #expect(unique?.code == .uniqueViolation)
            let foreignKey = await #expect(throws: DatabaseError.self) {
                try await db.execute("INSERT INTO \(unsafeRaw: table) (id, n, parent) VALUES (3, 1, \(987_654))")
            }
            #expect(foreignKey?.code == .foreignKeyViolation)
            let check = await #expect(throws: DatabaseError.self) {
                try await db.execute("INSERT INTO \(unsafeRaw: table) (id, n) VALUES (4, \(-5))")
            }
            #expect(check?.code == .checkViolation)
            let notNull = await #expect(throws: DatabaseError.self) {
                try await db.execute("INSERT INTO \(unsafeRaw: table) (id, n) VALUES (5, \(Int?.none))")
            }
            #expect(notNull?.code == .notNullViolation)
            if backend.isPostgres {
                #expect(unique?.sqlState == "23505")
                #expect(unique?.table == table)
                #expect(foreignKey?.sqlState == "23503")
                #expect(check?.sqlState == "23514")
                #expect(notNull?.sqlState == "23502")
                #expect(notNull?.column == "n")
            }
            // The bound value is in the server's message (Postgres DETAIL), never in ours.
            for error in [unique, foreignKey, check, notNull].compactMap({ $0 }) {
                #expect(!error.description.contains("secret-phi"))
                #expect(!String(reflecting: error).contains("secret-phi"))
                #expect(!"\(error)".contains("987654"))
            }
            #expect(try await count(db, table) == 1)
        }
    }

    @Test("a bind value never appears in an error description", arguments: TestBackend.all)
    func bindValuesStayOutOfErrors(backend: TestBackend) async throws {
        let db = try backend.makeDatabase()
        let secret = "PATIENT-Jane-Doe-1970-01-01"
        let sql: SQLQuery = backend.isPostgres
            ? "SELECT \(secret)::uuid"
            : "SELECT * FROM \(unsafeRaw: "no_such_table") WHERE x = \(secret)"
        let error = await #expect(throws: DatabaseError.self) { try await db.query(sql) }
        let unwrapped = try #require(error)
        #expect(!unwrapped.description.contains(secret))
        #expect(!String(reflecting: unwrapped).contains(secret))
        #expect(!"\(sql)".contains(secret))
        if backend.isPostgres {
            #expect(unwrapped.code == .invalidValue)
            #expect(unwrapped.sqlState == "22P02")
        } else {
            #expect(unwrapped.code == .syntaxError)
        }
        await db.shutdown()
    }

    @Test("every SQLSTATE class maps to its typed error", arguments: TestBackend.postgres)
    func sqlStateMapping(backend: TestBackend) async throws {
        let db = try backend.makeDatabase()
        let cases: [(state: String, message: String, code: DatabaseError.Code)] = [
            ("40001", "could not serialize access", .serializationFailure),
            ("40P01", "deadlock detected", .deadlock),
            ("42501", "permission denied for table t", .insufficientPrivilege),
            ("42501", "new row violates row-level security policy for table \"t\"", .rowLevelSecurityViolation),
            ("23505", "duplicate key", .uniqueViolation),
            ("57014", "canceling statement due to statement timeout", .queryCanceled),
            ("22023", "invalid parameter", .invalidValue),
            ("P0001", "raised", .server),
        ]
        for (state, message, code) in cases {
            let escaped = message.replacingOccurrences(of: "'", with: "''")
            let error = await #expect(throws: DatabaseError.self) {
                try await db.execute(SQLQuery(unsafeSQL: "DO $$ BEGIN RAISE EXCEPTION '\(escaped)' USING ERRCODE = '\(state)'; END $$"))
            }
            #expect(error?.code == code, "SQLSTATE \(state)")
            #expect(error?.sqlState == state)
        }
        await db.shutdown()
    }

    @Test("a real serialization failure is typed", arguments: TestBackend.postgres)
    func realSerializationFailure(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: "id integer PRIMARY KEY, v integer", sqlite: "", maximumConnections: 2) { db, table in
            try await db.execute("INSERT INTO \(unsafeRaw: table) (id, v) VALUES (1, 0)")
            let read = Gate()
            let written = Gate()
            async let other: Void = {
                await read.wait()
                try await db.execute("UPDATE \(unsafeRaw: table) SET v = v + 1 WHERE id = 1")
                await written.open()
            }()
            let error = await #expect(throws: DatabaseError.self) {
                try await db.transaction { tx in
                    try await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    _ = try await tx.query("SELECT v FROM \(unsafeRaw: table) WHERE id = 1")
                    await read.open()
                    await written.wait()
                    try await tx.execute("UPDATE \(unsafeRaw: table) SET v = v + 10 WHERE id = 1")
                }
            }
            try await other
            #expect(error?.code == .serializationFailure)
            #expect(error?.isTransient == true)
            let v = try #require(try await db.query("SELECT v FROM \(unsafeRaw: table)").first).decode("v", as: Int.self)
            #expect(v == 1)
        }
    }

    @Test("insufficient privilege and row-level security violations are typed", arguments: TestBackend.postgres)
    func privilegeErrors(backend: TestBackend) async throws {
        let appURL = try TestBackend.require(backend == .pgbouncer ? "DATABASE_APP_URL" : "DATABASE_APP_DIRECT_URL")
        // In a schema of its own: a table the app role can reach in the platform's schema would
        // (rightly) fail the tenancy boot checks running beside this test.
        let schema = "scratch_rls_\(UUID().uuidString.prefix(8).lowercased())"
        let table = "\(schema).scratch"
        let owner = Database(configuration: try DatabaseConfiguration(url: TestBackend.require("DATABASE_DIRECT_URL")), logger: TestBackend.logger)
        try await owner.withConnection { conn in
            try await conn.executeScript(
                """
                BEGIN;
                CREATE SCHEMA \(schema);
                GRANT USAGE ON SCHEMA \(schema) TO restartix_app;
                CREATE TABLE \(table) (id integer PRIMARY KEY, org integer NOT NULL);
                CREATE TABLE \(table)_private (id integer);
                ALTER TABLE \(table) ENABLE ROW LEVEL SECURITY;
                ALTER TABLE \(table) FORCE ROW LEVEL SECURITY;
                CREATE POLICY only_org_one ON \(table) USING (org = 1) WITH CHECK (org = 1);
                GRANT SELECT, INSERT ON \(table) TO restartix_app;
                COMMIT;
                """
            )
        }
        let app = Database(configuration: try DatabaseConfiguration(url: appURL), logger: TestBackend.logger)
        do {
            let denied = await #expect(throws: DatabaseError.self) {
                try await app.query(SQLQuery(unsafeSQL: "SELECT * FROM \(table)_private"))
            }
            #expect(denied?.code == .insufficientPrivilege)
            let rls = await #expect(throws: DatabaseError.self) {
                try await app.execute("INSERT INTO \(unsafeRaw: table) (id, org) VALUES (1, \(2))")
            }
            #expect(rls?.code == .rowLevelSecurityViolation)
            #expect(rls?.sqlState == "42501")
            try await app.execute("INSERT INTO \(unsafeRaw: table) (id, org) VALUES (2, \(1))")
        } catch {
            Issue.record(error)
        }
        await app.shutdown()
        try await owner.withConnection {
            try await $0.executeScript("DROP SCHEMA \(schema) CASCADE")
        }
        await owner.shutdown()
    }

    @Test("an exhausted pool fails with a timeout instead of hanging", arguments: TestBackend.all)
    func poolExhaustion(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1, acquireTimeout: .milliseconds(300))
        // The pool's one connection first: on a loaded machine a connect can take longer than
        // the 300 ms under test (a pool timeout, or libpq's own connect timeout through
        // PgBouncer), and the pool keeps a connection that opened late, so a retry finds it.
        let warm = ContinuousClock.now + .seconds(60)
        while true {
            do {
                _ = try await db.query("SELECT 1")
                break
            } catch let error as DatabaseError where error.isTransient && ContinuousClock.now < warm {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let holding = Gate()
        let release = Gate()
        async let holder: Void = db.withConnection { conn in
            // Whatever happens, the test goes on (and fails) rather than waiting forever.
            defer { Task { await holding.open() } }
            _ = try await conn.query("SELECT 1")
            await holding.open()
            await release.wait()
        }
        await holding.wait()
        let started = ContinuousClock.now
        let error = await #expect(throws: DatabaseError.self) {
            try await db.withConnection { _ = try await $0.query("SELECT 1") }
        }
        let waited = ContinuousClock.now - started
        #expect(error?.code == .poolTimeout)
        #expect(waited >= .milliseconds(250))
        #expect(waited < .seconds(5))
        await release.open()
        try await holder
        // The pool recovers once the connection is back.
        #expect(try await db.query("SELECT 1 AS one").first?.decode("one", as: Int.self) == 1)
        await db.shutdown()
    }

    @Test("many concurrent tasks share a small pool", arguments: TestBackend.all)
    func concurrency(backend: TestBackend) async throws {
        // 60 waiters on SQLite's single writer: the wait is about correctness, not speed, so a
        // loaded machine (the whole suite in parallel on 2 cores) must not fail it.
        let db = try backend.makeDatabase(maximumConnections: 3, acquireTimeout: .seconds(30))
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<60 {
                group.addTask { try #require(try await db.query("SELECT \(i) AS n").first).decode("n", as: Int.self) }
            }
            return try await group.reduce(0, +)
        }
        #expect(sum == (0..<60).reduce(0, +))
        await db.shutdown()
    }

    @Test("tasks that prefer the Postgres I/O executor run correctly", arguments: TestBackend.postgres)
    func ioExecutorPreference(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 4)
        let executor = try #require(db.taskExecutor)
        let sum = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<40 {
                group.addTask(executorPreference: executor) {
                    try await db.transaction { tx in
                        try #require(try await tx.first("SELECT \(i) + 1 AS n")).decode("n", as: Int.self)
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(sum == (1...40).reduce(0, +))
        // Errors surface the same way on the I/O executor.
        let error = await withTaskExecutorPreference(executor) {
            await #expect(throws: DatabaseError.self) { try await db.query("SELECT * FROM no_such_table_here") }
        }
        #expect(error?.code == .syntaxError)
        await db.shutdown()
        #expect(try backend.makeDatabase().taskExecutor != nil)
        #expect(try TestBackend.sqlite.makeDatabase().taskExecutor == nil)
    }

    @Test("a connection killed server-side is replaced", arguments: TestBackend.postgres)
    func killedConnectionIsReplaced(backend: TestBackend) async throws {
        // Through PgBouncer, a server connection is shared by every client of its (database,
        // user) pool: killing one used by other running tests would break them. The owner role
        // through PgBouncer has a pool of its own that no other test uses.
        let ownerDirect = try TestBackend.require("DATABASE_DIRECT_URL")
        let db = try backend == .pgbouncer
            ? Database(url: Self.ownerThroughPgBouncer(ownerDirect: ownerDirect, pgbouncer: try #require(backend.url)), logger: TestBackend.logger)
            : backend.makeDatabase(maximumConnections: 1)
        let owner = Database(configuration: try DatabaseConfiguration(url: ownerDirect), logger: TestBackend.logger)
        let pid = try #require(try await db.query("SELECT pg_backend_pid() AS pid").first).decode("pid", as: Int.self)
        let killed = try #require(try await owner.query("SELECT pg_terminate_backend(\(pid)::integer) AS ok").first).decode("ok", as: Bool.self)
        #expect(killed)
        // Wait until the backend is gone.
        for _ in 0..<100 {
            let alive = try await owner.query("SELECT 1 FROM pg_stat_activity WHERE pid = \(pid)::integer")
            if alive.isEmpty { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        let next = try #require(try await db.query("SELECT pg_backend_pid() AS pid").first).decode("pid", as: Int.self)
        #expect(next != pid)
        await db.shutdown()
        await owner.shutdown()
    }

    @Test("a connection killed inside a transaction fails with connectionLost; the pool recovers", arguments: TestBackend.postgres)
    func killedMidTransaction(backend: TestBackend) async throws {
        // Direct only makes the kill deterministic: through PgBouncer the client connection
        // survives and PgBouncer reports the server's loss in its own words.
        guard backend == .postgresDirect else { return }
        let db = try backend.makeDatabase(maximumConnections: 1)
        let owner = try Database(url: TestBackend.require("DATABASE_DIRECT_URL"), logger: TestBackend.logger)
        let error = await #expect(throws: DatabaseError.self) {
            try await db.transaction { tx in
                let pid = try #require(try await tx.first("SELECT pg_backend_pid() AS pid")).decode("pid", as: Int.self)
                _ = try await owner.query("SELECT pg_terminate_backend(\(pid)::integer)")
                try await tx.execute("SELECT 1")
            }
        }
        #expect(error?.code == .connectionLost)
        #expect(error?.isTransient == true)
        #expect(try await db.query("SELECT 1 AS one").first?.decode("one", as: Int.self) == 1)
        await db.shutdown()
        await owner.shutdown()
    }

    @Test("COPY is refused cleanly and the pool recovers", arguments: TestBackend.postgres)
    func copyIsRefused(backend: TestBackend) async throws {
        let db = try backend.makeDatabase(maximumConnections: 1)
        let error = await #expect(throws: DatabaseError.self) { try await db.query("COPY (SELECT 1) TO STDOUT") }
        #expect(error?.description.contains("COPY is not supported") == true)
        #expect(try await db.query("SELECT 2 AS two").first?.decode("two", as: Int.self) == 2)
        await db.shutdown()
    }

    @Test("pipelined statements return one result each; a failure stops the rest", arguments: TestBackend.all)
    func pipeline(backend: TestBackend) async throws {
        try await backend.withScratchTable(postgres: "id integer PRIMARY KEY", sqlite: "id INTEGER PRIMARY KEY") { db, table in
            let results = try await db.withConnection { conn in
                try await conn.pipeline([
                    "INSERT INTO \(unsafeRaw: table) (id) VALUES (\(1))",
                    "INSERT INTO \(unsafeRaw: table) (id) VALUES (\(2))",
                    "SELECT count(*) AS n FROM \(unsafeRaw: table)",
                ])
            }
            #expect(results.count == 3)
            #expect(results[0].affectedRows == 1)
            #expect(try results[2].rows.first?.decode("n", as: Int.self) == 2)

            await #expect(throws: DatabaseError.self) {
                try await db.transaction { tx in
                    try await tx.pipeline([
                        "INSERT INTO \(unsafeRaw: table) (id) VALUES (\(3))",
                        "INSERT INTO \(unsafeRaw: table) (id) VALUES (\(1))",
                        "INSERT INTO \(unsafeRaw: table) (id) VALUES (\(4))",
                    ])
                }
            }
            #expect(try await count(db, table) == 2)
        }
    }

    @Test("wrong password and missing database give clear errors without the password", arguments: TestBackend.postgres)
    func connectionErrors(backend: TestBackend) async throws {
        let url = try #require(backend.url)
        let password = try #require(Self.password(in: url))
        let wrong = url.replacingOccurrences(of: ":\(password)@", with: ":not-the-password-x9@")
        let db = try Database(url: wrong, logger: TestBackend.logger)
        let error = await #expect(throws: DatabaseError.self) { try await db.query("SELECT 1") }
        #expect(error?.code == .authenticationFailed)
        #expect(error.map { !$0.description.contains("not-the-password-x9") } == true)
        await db.shutdown()

        if backend == .postgresDirect {
            let missing = url.replacingOccurrences(of: "/restartix?", with: "/no_such_database?")
            let db = try Database(url: missing, logger: TestBackend.logger)
            let error = await #expect(throws: DatabaseError.self) { try await db.query("SELECT 1") }
            #expect(error?.code == .databaseNotFound)
            #expect(error.map { !$0.description.contains(password) } == true)
            await db.shutdown()
        }
    }

    @Test("libpq options in the URL reach libpq", arguments: TestBackend.postgres)
    func libpqOptions(backend: TestBackend) async throws {
        let url = try #require(backend.url)
        // Several hosts (the first unreachable) and target_session_attrs: libpq fails over.
        let multiHost = url.replacingOccurrences(of: "@127.0.0.1:", with: "@127.0.0.1:1,127.0.0.1:")
            + "&target_session_attrs=any&application_name=restartix-test&connect_timeout=5"
        let db = try Database(url: multiHost, logger: TestBackend.logger)
        let row = try #require(try await db.query("SELECT current_setting('application_name') AS app").first)
        if backend == .postgresDirect {
            #expect(try row.decode("app", as: String.self) == "restartix-test")
        }
        await db.shutdown()
    }

    /// The owner's credentials with PgBouncer's host and port.
    static func ownerThroughPgBouncer(ownerDirect: String, pgbouncer: String) throws -> String {
        let direct = try #require(ownerDirect.range(of: #"@[^/]+/"#, options: .regularExpression))
        let bouncer = try #require(pgbouncer.range(of: #"@[^/]+/"#, options: .regularExpression))
        return ownerDirect.replacingCharacters(in: direct, with: pgbouncer[bouncer])
    }

    static func password(in url: String) -> String? {
        guard let scheme = url.range(of: "://"), let at = url.lastIndex(of: "@") else { return nil }
        let userinfo = url[scheme.upperBound..<at]
        guard let colon = userinfo.firstIndex(of: ":") else { return nil }
        return String(userinfo[userinfo.index(after: colon)...])
    }
}

func count(_ db: Database, _ table: String) async throws -> Int {
    try #require(try await db.query("SELECT count(*) AS n FROM \(unsafeRaw: table)").first).decode("n", as: Int.self)
}
