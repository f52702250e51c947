import Foundation
import RestartixKit
import Synchronization
import RestartixTestSupport
import Testing

@Suite("SQLite adapter", .timeLimit(.minutes(3)))
struct SQLiteTests {
    func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("restartix-sqlite-\(UUID().uuidString).sqlite").path
    }

    @Test("WAL, foreign keys and the busy timeout are on for every connection")
    func pragmas() async throws {
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: temporaryPath()), logger: TestBackend.logger)
        let journal = try await db.query("PRAGMA journal_mode").first?.decode(at: 0, as: String.self)
        #expect(journal == "wal")
        #expect(try await db.query("PRAGMA foreign_keys").first?.decode(at: 0, as: Int.self) == 1)
        #expect(try await db.query("PRAGMA busy_timeout").first?.decode(at: 0, as: Int.self) == 5000)
        let readerPragmas = try await db.read { conn in
            [
                try await conn.query("PRAGMA foreign_keys").first?.decode(at: 0, as: Int.self),
                try await conn.query("PRAGMA query_only").first?.decode(at: 0, as: Int.self),
            ]
        }
        #expect(readerPragmas == [1, 1])
        await db.shutdown()
    }

    @Test("a statement still running at the scope's deadline is interrupted: .timedOut, its transaction's writes undone, the connection fine")
    func deadlineInterrupts() async throws {
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: temporaryPath()), logger: TestBackend.logger)
        try await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        let endless: SQLQuery = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) AS c FROM n"
        for shape in ["read", "write transaction"] {
            let start = ContinuousClock.now
            let error = await #expect(throws: DatabaseError.self) {
                try await Database.withDeadline(.milliseconds(200)) {
                    switch shape {
                    case "read": _ = try await db.query(endless)
                    default:
                        try await db.transaction { tx in
                            try await tx.execute("INSERT INTO t (id) VALUES (1)")
                            _ = try await tx.query(endless)
                        }
                    }
                }
            }
            #expect(error?.code == .timedOut, "\(shape): \(String(describing: error))")
            // 200 ms by design; the margin is for a loaded two-core machine (timers there have
            // stalled for 1.7 s with the full suite running).
            #expect(ContinuousClock.now - start < .seconds(6), "\(shape)")
        }
        // Nothing of the interrupted transaction stayed; the same connection serves the next call.
        #expect(try await db.query("SELECT count(*) FROM t").first?.decode(at: 0, as: Int.self) == 0)
        try await db.execute("INSERT INTO t (id) VALUES (2)")
        // Control: without a deadline the same kind of statement runs to the end.
        #expect(try await db.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT count(*) AS c FROM n").first?.decode("c", as: Int.self) == 100_000)
        await db.shutdown()
    }

    @Test("readers run while the writer holds a transaction, and see committed data only")
    func parallelReaders() async throws {
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: temporaryPath()), logger: TestBackend.logger)
        try await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        try await db.execute("INSERT INTO t (id) VALUES (1)")
        try await db.transaction { tx in
            try await tx.execute("INSERT INTO t (id) VALUES (2)")
            let seen = try await db.read { conn in
                try await conn.query("SELECT count(*) FROM t").first?.decode(at: 0, as: Int.self)
            }
            #expect(seen == 1)
        }
        let after = try await db.read { try await $0.query("SELECT count(*) FROM t").first?.decode(at: 0, as: Int.self) }
        #expect(after == 2)
        let error = await #expect(throws: DatabaseError.self) {
            try await db.read { try await $0.execute("INSERT INTO t (id) VALUES (3)") }
        }
        #expect(error?.code == .insufficientPrivilege)
        await db.shutdown()
    }

    @Test("app-defined functions and the authorizer are installed on every connection")
    func hooks() async throws {
        var configuration = DatabaseConfiguration(sqlitePath: temporaryPath())
        let roles = Mutex<[String]>([])
        configuration.sqlite.connectionSetup = { handle in
            roles.withLock { $0.append(handle.role.description) }
            try handle.createFunction("double_it", argumentCount: 1, deterministic: true) { arguments in
                .integer(try Int64(sqlValue: arguments[0]) * 2)
            }
            try handle.createFunction("fail_it", argumentCount: 0, deterministic: false) { _ in
                throw DatabaseError(code: .server, detail: "refused by the function")
            }
            try handle.setAuthorizer { request in
                if request.action == SQLiteAuthorizerRequest.read, request.argument1 == "secrets" { return .deny }
                return .allow
            }
        }
        let db = Database(configuration: configuration, logger: TestBackend.logger)
        #expect(try await db.query("SELECT double_it(\(21)) AS v").first?.decode("v", as: Int.self) == 42)
        let failed = await #expect(throws: DatabaseError.self) { try await db.query("SELECT fail_it()") }
        #expect(failed?.code == .syntaxError || failed?.code == .server)
        try await db.execute("CREATE TABLE secrets (v TEXT)")
        let denied = await #expect(throws: DatabaseError.self) { try await db.query("SELECT v FROM secrets") }
        #expect(denied?.code == .insufficientPrivilege)
        let readerValue = try await db.read { try await $0.query("SELECT double_it(5)").first?.decode(at: 0, as: Int.self) }
        #expect(readerValue == 10)
        #expect(roles.withLock { Set($0) } == ["writer", "reader"])
        await db.shutdown()
    }

    @Test("the statement cache serves repeated queries; one statement per query")
    func statementCache() async throws {
        var configuration = try DatabaseConfiguration(url: "sqlite::memory:")
        configuration.sqlite.statementCacheCapacity = 4
        let db = Database(configuration: configuration, logger: TestBackend.logger)
        try await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        try await db.transaction { tx in
            for i in 0..<500 { try await tx.execute("INSERT INTO t (id, v) VALUES (\(i), \("v\(i % 7)"))") }
            // More distinct statements than the cache holds: eviction must not break anything.
            for i in 0..<10 { _ = try await tx.query(SQLQuery(unsafeSQL: "SELECT \(i) AS n")) }
        }
        #expect(try await count(db, "t") == 500)
        let error = await #expect(throws: DatabaseError.self) {
            try await db.execute("INSERT INTO t (id) VALUES (1000); DELETE FROM t")
        }
        #expect(error?.code == .syntaxError)
        #expect(try await count(db, "t") == 500)
        await db.shutdown()
    }

    @Test("in-memory databases keep their data across leases")
    func inMemory() async throws {
        let db = try Database(url: "sqlite::memory:", logger: TestBackend.logger)
        try await db.execute("CREATE TABLE t (v INTEGER)")
        try await db.execute("INSERT INTO t VALUES (1)")
        #expect(try await db.read { try await $0.query("SELECT v FROM t").count } == 1)
        await db.shutdown()
        let error = await #expect(throws: DatabaseError.self) { try await db.query("SELECT 1") }
        #expect(error?.code == .poolClosed)
    }

    @Test("an unopenable file is a clear connection error")
    func unopenable() async throws {
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: "/proc/no/such/dir/x.sqlite"), logger: TestBackend.logger)
        let error = await #expect(throws: DatabaseError.self) { try await db.query("SELECT 1") }
        #expect(error?.code == .connectionFailed)
        await db.shutdown()
    }
}

@Suite("Handles from isolated code", .timeLimit(.minutes(3)))
struct IsolationContextTests {
    /// Connection and transaction handles are Sendable: actor-isolated code (a main-actor
    /// handler, top-level code) can use them without data-race diagnostics.
    @MainActor
    @Test("handles work from the main actor")
    func mainActor() async throws {
        let db = try Database(url: "sqlite::memory:", logger: TestBackend.logger)
        try await db.transaction { tx in
            try await tx.execute("CREATE TABLE t (v INTEGER)")
            try await tx.execute("INSERT INTO t VALUES (\(1))")
        }
        let n = try await db.withConnection { conn in
            try await conn.first("SELECT count(*) AS n FROM t")?.decode("n", as: Int.self)
        }
        #expect(n == 1)
        await db.shutdown()
    }
}

/// The embedded database's files hold patients' data: 0600 files in 0700 directories, and a
/// clear refusal (changing nothing) when an existing file or directory is open to others.
@Suite("SQLite file permissions", .timeLimit(.minutes(3)))
struct SQLiteFilePermissionTests {
    func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    func scratch() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("restartix-perm-\(UUID().uuidString)")
    }

    @Test("a new database: directories 0700, the file and its -wal and -shm 0600 (the umask would give 0755 and 0644)")
    func created() async throws {
        let root = scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        let path = root.appendingPathComponent("nested/dir/db.sqlite").path
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TestBackend.logger)
        try await db.execute("CREATE TABLE t (v TEXT)")
        try await db.execute("INSERT INTO t (v) VALUES ('x')")
        _ = try await db.read { try await $0.query("SELECT v FROM t") }
        #expect(try mode(root.path) == 0o700)
        #expect(try mode(root.appendingPathComponent("nested/dir").path) == 0o700)
        for suffix in ["", "-wal", "-shm"] {
            #expect(try mode(path + suffix) == 0o600, "db\(suffix)")
        }
        await db.shutdown()
    }

    @Test("an existing file open to others, or a directory others may write, is refused by name; nothing changes")
    func refused() async throws {
        let root = scratch()
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let path = root.appendingPathComponent("db.sqlite").path
        #expect(FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644]))
        let db = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TestBackend.logger)
        let error = await #expect(throws: DatabaseError.self) { try await db.execute("CREATE TABLE t (v TEXT)") }
        #expect(error?.code == .configuration)
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("0644") == true)
        #expect(error?.description.contains("chmod 600") == true)
        #expect(try mode(path) == 0o644)
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 0)
        await db.shutdown()

        // Fixed as told, it opens; a -wal left open to others is refused the same way.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        #expect(FileManager.default.createFile(atPath: path + "-wal", contents: nil, attributes: [.posixPermissions: 0o664]))
        let again = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TestBackend.logger)
        let wal = await #expect(throws: DatabaseError.self) { try await again.execute("CREATE TABLE t (v TEXT)") }
        #expect(wal?.description.contains("-wal") == true)
        await again.shutdown()
        try FileManager.default.removeItem(atPath: path + "-wal")
        let fixed = Database(configuration: DatabaseConfiguration(sqlitePath: path), logger: TestBackend.logger)
        try await fixed.execute("CREATE TABLE t (v TEXT)")
        await fixed.shutdown()

        // A directory anyone may write (no sticky bit) could have the file swapped under it.
        let open = root.appendingPathComponent("shared")
        try FileManager.default.createDirectory(at: open, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o777])
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: open.path)
        let shared = Database(configuration: DatabaseConfiguration(sqlitePath: open.appendingPathComponent("db.sqlite").path), logger: TestBackend.logger)
        let directory = await #expect(throws: DatabaseError.self) { try await shared.execute("SELECT 1") }
        #expect(directory?.description.contains("chmod 700") == true)
        #expect(!FileManager.default.fileExists(atPath: open.appendingPathComponent("db.sqlite").path))
        await shared.shutdown()

        // A 0600 file another user made (in a directory others may enter) is not ours to trust.
        if geteuid() == 0 {
            let foreign = root.appendingPathComponent("foreign.sqlite").path
            #expect(FileManager.default.createFile(atPath: foreign, contents: nil, attributes: [.posixPermissions: 0o600]))
            #expect(chown(foreign, 65534, 65534) == 0)
            let theirs = Database(configuration: DatabaseConfiguration(sqlitePath: foreign), logger: TestBackend.logger)
            let owned = await #expect(throws: DatabaseError.self) { try await theirs.execute("SELECT 1") }
            #expect(owned?.description.contains("belongs to another user") == true)
            await theirs.shutdown()
        }

        // An application's own state directory must be 0700 outright.
        let state = root.appendingPathComponent("state")
        try SQLiteConfiguration.preparePrivateDirectory(state.path)
        #expect(try mode(state.path) == 0o700)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: state.path)
        #expect(throws: DatabaseError.self) { try SQLiteConfiguration.preparePrivateDirectory(state.path) }
    }
}
