import Crypto
import Foundation
import RestartixBackup
import RestartixCrypto
import RestartixKit
import RestartixTestSupport
import Testing

/// Encrypted archives on the local store: round trips at every size that matters, and every
/// way a stored archive can be damaged, each refused with its own code before any plaintext of
/// the damaged part is handed out.
@Suite("Encrypted archives: round trips and tampering")
struct ArchiveTests {
    /// Small segments and parts, so a few KiB make many of each.
    static let segmentSize = 256
    static let partSize = 1024

    struct Fixture {
        let directory: TemporaryDirectory
        let store: LocalObjectStore
        let envelope = SymmetricKey(size: .bits256)
        let prefix = "postgres"

        init() throws {
            directory = try TemporaryDirectory("archive")
            store = try LocalObjectStore(directory: directory.url)
        }

        func write(_ plaintext: [UInt8], id: String = EncryptedArchive.makeID(), chunk: Int = 700) async throws -> BackupManifest {
            let writer = try await EncryptedArchiveWriter.begin(
                id: id, kind: "test", prefix: prefix, in: store, envelopeKey: envelope, partSize: ArchiveTests.partSize,
                segmentSize: ArchiveTests.segmentSize
            )
            var offset = 0
            while offset < plaintext.count {
                let end = min(offset + chunk, plaintext.count)
                try await writer.write(Array(plaintext[offset..<end]))
                offset = end
            }
            return try await writer.finish(source: ["test": "yes"], rowCounts: ["public.t": 3])
        }

        func read(_ id: String, key: SymmetricKey? = nil) async throws(BackupError) -> [UInt8] {
            let archive = try await EncryptedArchive.open(id: id, prefix: prefix, in: store, envelopeKey: key ?? envelope)
            var out: [UInt8] = []
            try await archive.read { (bytes: [UInt8]) throws(BackupError) in out += bytes }
            return out
        }

        func object(_ id: String) async throws -> [UInt8] {
            try #require(try await store.get(try EncryptedArchive.objectKey(prefix: prefix, id: id)))
        }

        /// Replaces the data object (an attacker with write access to the bucket).
        func replaceObject(_ id: String, with bytes: [UInt8]) async throws {
            try await store.put(bytes, at: try EncryptedArchive.objectKey(prefix: prefix, id: id))
        }

        func code(_ id: String, key: SymmetricKey? = nil) async -> String? {
            do {
                _ = try await read(id, key: key)
                return nil
            } catch {
                return error.code.name
            }
        }
    }

    static func plaintext(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    @Test("round trip at sizes around segment and part boundaries; the manifest records sizes, parts and checksums", arguments: [0, 1, 215, 216, 217, 1_000, 4_096, 20_000])
    func roundTrip(size: Int) async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let data = Self.plaintext(size)
        let manifest = try await fixture.write(data)
        #expect(try await fixture.read(manifest.id) == data)
        #expect(manifest.plaintext.length == size)
        #expect(manifest.plaintext.sha256 == Hex.lower(SHA256.hash(data: data)))
        let object = try await fixture.object(manifest.id)
        #expect(manifest.ciphertext.length == object.count)
        #expect(manifest.parts.count == (object.count + Self.partSize - 1) / Self.partSize)
        #expect(manifest.parts.map(\.length).reduce(0, +) == object.count)
        #expect(manifest.parts.first?.sha256 == Hex.lower(SHA256.hash(data: object.prefix(Self.partSize))))
        #expect(try await EncryptedArchive.list(in: fixture.store, prefix: fixture.prefix) == [manifest.id])
        // Nothing of the plaintext is in the stored object.
        if size >= 64 { #expect(object.firstRange(of: data.prefix(64)) == nil) }
    }

    /// Segment `index`'s byte range in the stored object (the header sits in segment 0).
    static func segment(_ index: Int) -> Range<Int> { (index * segmentSize)..<((index + 1) * segmentSize) }

    @Test("a flipped byte in any segment: authenticationFailed (in the header's length byte: invalidHeader)")
    func flippedByte() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let manifest = try await fixture.write(Self.plaintext(5_000))
        let object = try await fixture.object(manifest.id)
        for position in [0, StreamingAEAD.headerSize + 3, Self.segmentSize + 17, object.count / 2, object.count - 1] {
            var changed = object
            changed[position] ^= 0x01
            try await fixture.replaceObject(manifest.id, with: changed)
            let code = await fixture.code(manifest.id)
            #expect(code == (position == 0 ? "invalidHeader" : "authenticationFailed"), "byte \(position): \(code ?? "accepted")")
        }
    }

    @Test("a dropped segment: segmentMissing; two swapped: segmentsReordered; truncated: truncated; appended: trailingData")
    func structure() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let manifest = try await fixture.write(Self.plaintext(5_000))
        let object = try await fixture.object(manifest.id)
        #expect(object.count > 6 * Self.segmentSize)

        var dropped = object
        dropped.removeSubrange(Self.segment(3))
        try await fixture.replaceObject(manifest.id, with: dropped)
        #expect(await fixture.code(manifest.id) == "segmentMissing")

        var swapped = object
        swapped.replaceSubrange(Self.segment(2), with: object[Self.segment(3)])
        swapped.replaceSubrange(Self.segment(3), with: object[Self.segment(2)])
        try await fixture.replaceObject(manifest.id, with: swapped)
        #expect(await fixture.code(manifest.id) == "segmentsReordered")

        // Cut at a segment boundary (the last segment's flag is what is missing) and mid-segment.
        for cut in [4 * Self.segmentSize, 4 * Self.segmentSize + 100] {
            try await fixture.replaceObject(manifest.id, with: Array(object.prefix(cut)))
            let code = await fixture.code(manifest.id)
            #expect(code == "truncated", "cut at \(cut): \(code ?? "accepted")")
        }

        // Segment 1 again after the end.
        try await fixture.replaceObject(manifest.id, with: object + object[Self.segment(1)])
        #expect(await fixture.code(manifest.id) == "trailingData")

        // The original, put back, opens.
        try await fixture.replaceObject(manifest.id, with: object)
        #expect(await fixture.code(manifest.id) == nil)
    }

    @Test("another envelope key: wrongKey naming both key ids; before any byte is read")
    func wrongKey() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let manifest = try await fixture.write(Self.plaintext(3_000))
        let other = SymmetricKey(size: .bits256)
        do {
            _ = try await EncryptedArchive.open(id: manifest.id, prefix: fixture.prefix, in: fixture.store, envelopeKey: other)
            Issue.record("opened under another key")
        } catch {
            #expect(error.code == .wrongKey)
            #expect(error.detail.contains(WrappedBackupKey.keyID(of: fixture.envelope)) && error.detail.contains(WrappedBackupKey.keyID(of: other)))
        }
    }

    @Test("a changed manifest: manifestTampered; another backup's data object: refused; a manifest of another format: manifestInvalid")
    func manifest() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        let first = try await fixture.write(Self.plaintext(3_000), id: "20261201T000000Z-aaaaaaaa")
        let second = try await fixture.write(Self.plaintext(3_000), id: "20261202T000000Z-bbbbbbbb")
        let key = try EncryptedArchive.manifestKey(prefix: fixture.prefix, id: first.id)
        let stored = try #require(try await fixture.store.get(key))

        // A row count changed in place: the MAC fails.
        var edited = try BackupManifest.decode(stored)
        edited.rowCounts["public.t"] = 4
        try await fixture.store.put(try edited.encoded(), at: key)
        #expect(await fixture.code(first.id) == "manifestTampered")

        // The second backup's data object under the first's (valid) manifest: the stream's
        // associated data is the id, so its first segment does not open.
        try await fixture.store.put(stored, at: key)
        try await fixture.replaceObject(first.id, with: try await fixture.object(second.id))
        #expect(await fixture.code(first.id) == "authenticationFailed")

        // The second's manifest copied over the first's: it names another backup.
        try await fixture.store.put(try #require(try await fixture.store.get(try EncryptedArchive.manifestKey(prefix: fixture.prefix, id: second.id))), at: key)
        #expect(await fixture.code(first.id) == "manifestTampered")

        try await fixture.store.put(Array(#"{"format": 2}"#.utf8), at: key)
        #expect(await fixture.code(first.id) == "manifestInvalid")
        try await fixture.store.put(Array("not json".utf8), at: key)
        #expect(await fixture.code(first.id) == "manifestInvalid")
    }

    @Test("missing pieces: no manifest and no data object are notFound; an aborted or unfinished writer leaves no backup")
    func missing() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        #expect(await fixture.code("20261201T000000Z-00000000") == "notFound")
        let manifest = try await fixture.write(Self.plaintext(2_000))
        try await fixture.store.delete(try EncryptedArchive.objectKey(prefix: fixture.prefix, id: manifest.id))
        #expect(await fixture.code(manifest.id) == "notFound")

        let aborted = try await EncryptedArchiveWriter.begin(id: "20261203T000000Z-cccccccc", kind: "test", prefix: fixture.prefix, in: fixture.store, envelopeKey: fixture.envelope, partSize: Self.partSize, segmentSize: Self.segmentSize)
        try await aborted.write(Self.plaintext(5_000))
        await aborted.abort()
        // Written past a part, never finished (a killed run): no manifest, so no backup.
        let unfinished = try await EncryptedArchiveWriter.begin(id: "20261204T000000Z-dddddddd", kind: "test", prefix: fixture.prefix, in: fixture.store, envelopeKey: fixture.envelope, partSize: Self.partSize, segmentSize: Self.segmentSize)
        try await unfinished.write(Self.plaintext(5_000))
        #expect(try await EncryptedArchive.list(in: fixture.store, prefix: fixture.prefix) == [manifest.id])
        #expect(await fixture.code("20261203T000000Z-cccccccc") == "notFound")
        #expect(await fixture.code("20261204T000000Z-dddddddd") == "notFound")
        #expect(try await fixture.store.head(try EncryptedArchive.objectKey(prefix: fixture.prefix, id: "20261203T000000Z-cccccccc")) == nil)
        #expect(try await fixture.store.head(try EncryptedArchive.objectKey(prefix: fixture.prefix, id: "20261204T000000Z-dddddddd")) == nil, "an upload is invisible until complete")
        await unfinished.abort()
    }

    @Test("bad ids and an existing backup are refused")
    func badInput() async throws {
        let fixture = try Fixture()
        defer { fixture.directory.remove() }
        for id in ["", "../x", "a/b", ".hidden", String(repeating: "a", count: 101), "id with space"] {
            await #expect(throws: BackupError.self, "\(id)") {
                _ = try await EncryptedArchiveWriter.begin(id: id, kind: "test", prefix: fixture.prefix, in: fixture.store, envelopeKey: fixture.envelope)
            }
        }
        let manifest = try await fixture.write([1, 2, 3])
        do {
            _ = try await EncryptedArchiveWriter.begin(id: manifest.id, kind: "test", prefix: fixture.prefix, in: fixture.store, envelopeKey: fixture.envelope)
            Issue.record("a second backup under the same id began")
        } catch {
            #expect(error.code == .invalidInput)
        }
    }
}
