import Crypto
import Foundation
import RestartixBackup
import RestartixKit
import RestartixTestSupport
import Testing

/// The gzip streams the audit archive writes its lines through: round trips in pieces of any
/// size, the gzip format (`gzip -d` reads it), and corruption refused.
@Suite("gzip streams")
struct GzipTests {
    static func lines(_ count: Int) -> [UInt8] {
        Array((0..<count).map { #"{"id":\#($0),"organization_id":null,"metadata":{"note":"ünïcode \"quoted\""}}"# + "\n" }.joined().utf8)
    }

    static func compress(_ plain: [UInt8], piece: Int) throws -> [UInt8] {
        let gzip = try GzipCompressor()
        var out: [UInt8] = []
        var offset = 0
        while offset < plain.count {
            let end = min(offset + piece, plain.count)
            try gzip.compress(Array(plain[offset..<end]), into: &out)
            offset = end
        }
        try gzip.finish(into: &out)
        return out
    }

    static func decompress(_ packed: [UInt8], piece: Int) throws -> [UInt8] {
        let gunzip = try GzipDecompressor()
        var out: [UInt8] = []
        var offset = 0
        while offset < packed.count {
            let end = min(offset + piece, packed.count)
            try gunzip.decompress(Array(packed[offset..<end]), into: &out)
            offset = end
        }
        return out
    }

    @Test("round trips in pieces of any size", arguments: [(0, 7), (1, 1), (1_000, 3), (50_000, 65_536), (50_000, 1 << 20)])
    func roundTrip(lines count: Int, piece: Int) throws {
        let plain = Self.lines(count)
        let packed = try Self.compress(plain, piece: piece)
        if plain.count > 1_000 { #expect(packed.count < plain.count / 3, "lines compress") }
        #expect(try Self.decompress(packed, piece: piece) == plain)
        #expect(try Self.decompress(packed, piece: 5) == plain)
    }

    @Test("the output is gzip: gzip -d reads it")
    func format() async throws {
        let plain = Self.lines(2_000)
        let directory = try TemporaryDirectory("gzip")
        defer { directory.remove() }
        let file = directory.url.appendingPathComponent("lines.gz")
        try Data(try Self.compress(plain, piece: 4_096)).write(to: file)
        let out = try await ChildProcess.capture(URL(fileURLWithPath: "/bin/sh"), ["-c", "gzip -dc \"$0\" | sha256sum", file.path], environment: ["PATH": "/usr/bin:/bin"])
        #expect(out.status == 0 && out.stdout.hasPrefix(Hex.lower(SHA256.hash(data: plain))), "\(out.stderr)")
    }

    @Test("corrupt or trailing bytes are refused")
    func corrupt() throws {
        let packed = try Self.compress(Self.lines(500), piece: 1_000)
        var changed = packed
        changed[changed.count / 2] ^= 0xFF
        #expect(throws: BackupError.self) { _ = try Self.decompress(changed, piece: 1 << 20) }
        #expect(throws: BackupError.self) { _ = try Self.decompress(packed + [1, 2, 3], piece: 1 << 20) }
    }
}

/// What of pg_dump's and pg_restore's standard error reaches an error message.
@Suite("tool messages")
struct ToolMessageTests {
    @Test("quoted values are cut from error lines; identifiers stay")
    func redaction() {
        let line: Substring = #"pg_restore: error: COPY failed for table "patients": ERROR:  invalid input syntax for type uuid: "ana@example.com, 555-0100""#
        let redacted = ChildProcess.redactQuotedValues(line)
        #expect(redacted.contains(#""patients""#) && !redacted.contains("ana@example.com") && redacted.contains(#"uuid: "…""#), "\(redacted)")
        #expect(ChildProcess.redactQuotedValues(#"pg_dump: error: an "unterminated value"#) == #"pg_dump: error: an "…"#)
        #expect(ChildProcess.redactQuotedValues("pg_dump: error: no quotes at all") == "pg_dump: error: no quotes at all")
    }
}
