import Foundation
@testable import RestartixKit
import Testing

@Suite("Storage units (no services)", .timeLimit(.minutes(3)))
struct StorageUnitTests {
    @Test("interpolation renders binds per dialect and never splices values")
    func rendering() {
        let id = UUID()
        let name = "O'Brien; DROP TABLE patients; --"
        let query: SQLQuery = "SELECT * FROM t WHERE id = \(id) AND name = \(name) AND n IN (\(1), \(2))"
        let postgres = query.render(for: .postgres)
        #expect(postgres.sql == "SELECT * FROM t WHERE id = $1 AND name = $2 AND n IN ($3, $4)")
        #expect(postgres.binds == [.uuid(id), .text(name), .integer(1), .integer(2)])
        let sqlite = query.render(for: .sqlite)
        #expect(sqlite.sql == "SELECT * FROM t WHERE id = ? AND name = ? AND n IN (?, ?)")
        #expect(!query.description.contains("O'Brien"))

        var combined: SQLQuery = "SELECT \(1)"
        combined.append(" , \(2)")
        let nested: SQLQuery = "\(combined) UNION SELECT \(3), \(identifier: "we\"ird")"
        #expect(nested.render(for: .postgres).sql == "SELECT $1 , $2 UNION SELECT $3, \"we\"\"ird\"")
        #expect(nested.binds.count == 3)
    }

    @Test("SQLValue descriptions show the kind, never the value")
    func valueDescriptions() {
        #expect(SQLValue.text("Jane Doe").description == "SQLValue(text)")
        #expect(!"\(SQLValue.bytes(Data("x".utf8)))".contains("x\""))
    }

    @Test("URLs: schemes, SQLite paths and clear errors", arguments: [
        ("postgres://u:p@localhost:5432/db?sslmode=require", true),
        ("postgresql://localhost/db", true),
        ("postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write", true),
        ("postgres:///db?host=/var/run/postgresql", true),
        ("sqlite::memory:", true),
        ("sqlite:///tmp/restartix.sqlite", true),
        ("sqlite:relative/restartix.sqlite", true),
        ("mysql://u:p@localhost/db", false),
        ("localhost:5432", false),
        ("no-scheme-at-all", false),
        ("sqlite:", false),
        ("sqlite:///", false),
        ("postgres://u:p@localhost:notaport/db", false),
        ("postgres://u:p@localhost/db?nosuchoption=1", false),
    ])
    func urls(url: String, valid: Bool) {
        do {
            _ = try DatabaseConfiguration(url: url)
            #expect(valid, "\(url) should be rejected")
        } catch {
            #expect(!valid, "\(url) should be accepted: \(error)")
            #expect(error.code == .configuration)
        }
    }

    @Test("configuration errors never contain the password")
    func redaction() throws {
        let secret = "s3cr%ZZet-pw"
        let error = try #require(throws: DatabaseError.self) {
            try DatabaseConfiguration(url: "postgres://user:\(secret)@localhost:badport/db")
        }
        #expect(!error.description.contains("s3cr"))
        #expect(error.description.contains("user:***@localhost"))
        #expect(DatabaseConfiguration.redact("postgres://u:pw@h/db?password=pw2&sslmode=require")
            == "postgres://u:***@h/db?password=***&sslmode=require")
        #expect(DatabaseConfiguration.redact("postgres://h/db") == "postgres://h/db")
        #expect(DatabaseConfiguration.redact("postgres://u@h/db") == "postgres://u@h/db")
        let sqlite = try DatabaseConfiguration(url: "sqlite:///var/lib/x.sqlite")
        #expect(sqlite.sqliteFilePath == "/var/lib/x.sqlite")
        #expect(try DatabaseConfiguration(url: "sqlite:data/x.sqlite").sqliteFilePath == "data/x.sqlite")
        #expect(try DatabaseConfiguration(url: "sqlite::memory:").sqliteFilePath == nil)
        #expect(try DatabaseConfiguration(url: "postgres://localhost/db").dialect == .postgres)
    }

    @Test("UTC timestamps format fixed-width and parse ISO 8601 forms")
    func timestamps() throws {
        let date = Date(timeIntervalSince1970: 1_764_057_600.000_042)  // 2025-11-25T08:00:00.000042Z
        #expect(UTCTimestamp.format(date) == "2025-11-25T08:00:00.000042Z")
        #expect(UTCTimestamp.format(Date(timeIntervalSince1970: -1.5)) == "1969-12-31T23:59:58.500000Z")
        #expect(UTCTimestamp.parse("2025-11-25T08:00:00.000042Z")?.timeIntervalSince1970 == date.timeIntervalSince1970)
        #expect(UTCTimestamp.parse("2025-11-25 10:30:00+02:30")?.timeIntervalSince1970 == 1_764_057_600)
        #expect(UTCTimestamp.parse("2025-11-25 08:00:00")?.timeIntervalSince1970 == 1_764_057_600)
        #expect(UTCTimestamp.parse("2025-11-25")?.timeIntervalSince1970 == 1_764_028_800)
        #expect(UTCTimestamp.parse("2024-02-29T23:59:59.5-0100")?.timeIntervalSince1970 == 1_709_254_799.5)
        for bad in ["", "2025-13-01", "2025-11-25T25:00", "2025/11/25", "2025-11-25T08:00:00.Z", "2025-11-25Tx"] {
            #expect(UTCTimestamp.parse(bad) == nil, "\(bad)")
        }
        // Round trip over a range of instants, including before 1970.
        for seconds in stride(from: -2_000_000_000.0, through: 4_000_000_000.0, by: 123_456_789.987_654) {
            let instant = Date(timeIntervalSince1970: (seconds * 1_000_000).rounded() / 1_000_000)
            let parsed = try #require(UTCTimestamp.parse(UTCTimestamp.format(instant)))
            #expect(abs(parsed.timeIntervalSince1970 - instant.timeIntervalSince1970) < 0.000_001)
        }
    }

    @Test("UUIDv7: version, variant, timestamp, strictly increasing")
    func uuidV7() throws {
        let now = Date()
        var previous = UUIDv7.generate(now: now)
        for _ in 0..<10_000 {
            let next = UUIDv7.generate(now: now)
            #expect(next.uuidString > previous.uuidString)
            previous = next
        }
        let id = UUIDv7.generate()
        #expect(id.uuid.6 >> 4 == 7)
        #expect(id.uuid.8 >> 6 == 0b10)
        let stamp = try #require(UUIDv7.timestamp(of: id))
        #expect(abs(stamp.timeIntervalSinceNow) < 5)
        #expect(UUIDv7.timestamp(of: UUID()) == nil)
    }

    @Test("UUIDv7: the random bytes are random (tails all distinct, 11-bit counter seeds spread)")
    func uuidV7Randomness() {
        // The generator's source itself (the shared generator's state would make this depend on
        // what other tests generate meanwhile).
        var tails = Set<UInt64>(), seeds = Set<UInt16>()
        for _ in 0..<512 {
            let random = UUIDv7.RandomBytes()
            tails.insert(random.tail)
            seeds.insert(random.seed & 0x7FF)
        }
        #expect(tails.count == 512, "64 random bits never repeat in 512 draws")
        #expect(seeds.count > 200, "512 draws of 11 bits: about 450 distinct values, not a constant")
    }

    @Test("Postgres numeric binary decodes to exact decimal text")
    func numeric() throws {
        func decode(_ words: [Int16]) throws -> String {
            let bytes = words.flatMap { withUnsafeBytes(of: $0.bigEndian) { Array($0) } }
            return try bytes.withUnsafeBytes { try PostgresBinary.numericText($0, column: "n") }
        }
        // 12345.678: digits [1, 2345, 6780], weight 1, positive, scale 3
        #expect(try decode([3, 1, 0, 3, 1, 2345, 6780]) == "12345.678")
        // -0.0012: digits [12], weight -1, negative, scale 4
        #expect(try decode([1, -1, 0x4000, 4, 12]) == "-0.0012")
        // 0.00000001: digits [1], weight -2 (the 10000^-2 place), scale 8
        #expect(try decode([1, -2, 0, 8, 1]) == "0.00000001")
        #expect(try decode([1, -2, 0, 8, 100]) == "0.00000100")
        #expect(try decode([0, 0, 0, 0]) == "0")
        #expect(try decode([1, 2, 0, 0, 5]) == "500000000")
        #expect(try decode([0, 0, Int16(bitPattern: 0xC000), 0]) == "NaN")
        #expect(throws: DatabaseError.self) { try decode([3, 0, 0]) }
    }

    @Test("SQLite extended codes map to typed errors")
    func sqliteCodes() {
        #expect(SQLiteConnection.error(extended: 2067, message: "UNIQUE constraint failed: users.email").code == .uniqueViolation)
        #expect(SQLiteConnection.error(extended: 2067, message: "UNIQUE constraint failed: users.email").table == "users")
        #expect(SQLiteConnection.error(extended: 1555, message: "").code == .uniqueViolation)
        #expect(SQLiteConnection.error(extended: 787, message: "").code == .foreignKeyViolation)
        #expect(SQLiteConnection.error(extended: 275, message: "").code == .checkViolation)
        #expect(SQLiteConnection.error(extended: 1299, message: "").code == .notNullViolation)
        #expect(SQLiteConnection.error(extended: 517, message: "").code == .serializationFailure)
        #expect(SQLiteConnection.error(extended: 5, message: "").code == .busy)
        #expect(SQLiteConnection.error(extended: 23, message: "").code == .insufficientPrivilege)
        #expect(SQLiteConnection.error(extended: 1811, message: "row-level security violation").code == .rowLevelSecurityViolation)
    }
}

@Suite("UUID text")
struct UUIDTextTests {
    @Test("lowercasedString is the canonical lower-case form")
    func canonical() throws {
        let fixed = try #require(UUID(uuidString: "0190A4C2-7B3D-7E1F-8A2B-C3D4E5F60718"))
        #expect(fixed.lowercasedString == "0190a4c2-7b3d-7e1f-8a2b-c3d4e5f60718")
        for _ in 0..<1000 {
            let id = UUID()
            #expect(id.lowercasedString == id.uuidString.lowercased())
        }
    }
}
