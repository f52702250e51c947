import Crypto
import Foundation
import RestartixAWS
@testable import RestartixKit
import Testing

/// The object-store contract, run on both stores, then what only S3 has (multipart parts, a
/// bucket with Object Lock), against moto.
@Suite("Object store contract: local directory and S3 (moto)", .timeLimit(.minutes(3)))
struct S3ObjectStoreTests {
    static func hex(_ bytes: some Sequence<UInt8>) -> String { SHA256.hash(data: Array(bytes)).map { String(format: "%02x", $0) }.joined() }

    static func bucket(locked: Bool = false) async throws -> S3Client? { try await S3ClientTests.bucket(locked: locked) }

    /// What every store must do.
    static func contract(_ store: any ObjectStore) async throws {
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let key = try ObjectKey("org-1/uploads/ståmp notes+1.bin")
        let stored = try await store.put(bytes, at: key, options: ObjectPutOptions(contentType: "application/x-test"))
        #expect(stored.size == bytes.count && stored.sha256 == hex(bytes))
        let head = try #require(try await store.head(key))
        #expect(head.size == bytes.count && head.sha256 == hex(bytes) && head.contentType == "application/x-test")
        #expect(try await store.get(key) == bytes)
        #expect(try await store.read(key, range: 1_000..<1_100) == Array(bytes[1_000..<1_100]))
        #expect(try await store.read(key, range: 69_990..<80_000) == Array(bytes[69_990...]), "cut at the end")
        #expect(try await store.read(key, range: 70_000..<70_010) == [], "empty at the end")
        do {
            _ = try await store.read(key, range: 70_001..<70_010)
            Issue.record("a range past the end was read")
        } catch {
            #expect(error.code == .invalidRange)
        }
        let missing = try ObjectKey("org-1/uploads/none")
        #expect(try await store.get(missing) == nil)
        #expect(try await store.read(missing, range: 0..<10) == nil)
        #expect(try await store.head(missing) == nil)

        // A streamed upload is invisible until complete; the old object stays until then.
        let upload = try await store.beginUpload(key, options: ObjectPutOptions())
        try await upload.write([1, 2, 3])
        #expect(try await store.get(key) == bytes)
        try await upload.write([4])
        let replaced = try await upload.complete()
        #expect(replaced.size == 4 && replaced.sha256 == hex([1, 2, 3, 4]))
        #expect(try await store.get(key) == [1, 2, 3, 4])
        do {
            try await upload.write([5])
            Issue.record("a completed upload took more bytes")
        } catch {
            #expect(error.code == .uploadFinished)
        }
        let aborted = try await store.beginUpload(try ObjectKey("org-1/uploads/aborted"), options: ObjectPutOptions())
        try await aborted.write([9])
        await aborted.abort()
        #expect(try await store.head(try ObjectKey("org-1/uploads/aborted")) == nil)

        try await store.put([7], at: try ObjectKey("org-1/other/a"))
        try await store.put([8], at: try ObjectKey("org-2/uploads/b"))
        #expect(try await store.list(prefix: "org-1/").map { $0.key.value } == ["org-1/other/a", "org-1/uploads/ståmp notes+1.bin"])
        #expect(try await store.list(prefix: "org-1/uploads/").map { $0.size } == [4])
        #expect(try await store.list(prefix: "org-3/").isEmpty)
        // A '+' in a query value (S3 reads a bare '+' as a space; the signature covers %2B).
        #expect(try await store.list(prefix: "org-1/uploads/ståmp notes+").map { $0.size } == [4])
        try await store.delete(key)
        #expect(try await store.get(key) == nil)
        try await store.delete(key)

        // Create-only: the first write stands; a later one, and all but one of a race, fail with
        // alreadyExists and change nothing.
        let once = try ObjectKey("org-1/uploads/once.bin")
        try await store.put([1], at: once, options: ObjectPutOptions(ifAbsent: true))
        do {
            try await store.put([2, 2], at: once, options: ObjectPutOptions(ifAbsent: true))
            Issue.record("an ifAbsent put replaced an object")
        } catch {
            #expect(error.code == .alreadyExists && error.httpStatus == 409)
        }
        #expect(try await store.get(once) == [1])
        let raced = try ObjectKey("org-1/uploads/raced.bin")
        let outcomes = await withTaskGroup(of: (UInt8, ObjectStoreError.Code?).self) { group in
            for writer in UInt8(1)...8 {
                group.addTask {
                    do throws(ObjectStoreError) {
                        try await store.put([UInt8](repeating: writer, count: 1_000), at: raced, options: ObjectPutOptions(ifAbsent: true))
                        return (writer, nil)
                    } catch { return (writer, error.code) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let winners = outcomes.filter { $0.1 == nil }.map(\.0)
        #expect(winners.count == 1 && outcomes.filter { $0.1 == .alreadyExists }.count == 7, "\(outcomes)")
        #expect(try await store.get(raced) == [UInt8](repeating: winners.first ?? 0, count: 1_000), "the winner's bytes")
        try await store.delete(once)
        try await store.delete(raced)
    }

    @Test("the contract on the local directory store")
    func local() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("contract-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try await Self.contract(try LocalObjectStore(directory: directory))
    }

    @Test("the contract on S3")
    func s3() async throws {
        guard let client = try await Self.bucket() else { return }
        try await Self.contract(try S3ObjectStore(client: client))
    }

    @Test("S3 multipart: parts sent as they fill, nothing visible before completion, an abort leaves nothing")
    func multipart() async throws {
        guard let client = try await Self.bucket() else { return }
        let store = try S3ObjectStore(client: client, partSize: 5 << 20)
        let key = try ObjectKey("backups/dump.bin")
        let piece = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let upload = try await store.beginUpload(key, options: ObjectPutOptions())
        var all: [UInt8] = []
        for index in 0..<12 {
            let bytes = piece.map { $0 &+ UInt8(index) }
            try await upload.write(bytes)
            all += bytes
        }
        #expect(try await store.head(key) == nil, "two parts sent, nothing visible")
        let info = try await upload.complete()
        #expect(info.size == 12 << 20 && info.sha256 == Self.hex(all))
        #expect(try await store.head(key)?.size == 12 << 20)
        #expect(try await store.read(key, range: (5 << 20) - 10..<(5 << 20) + 10) == Array(all[((5 << 20) - 10)..<((5 << 20) + 10)]), "across a part boundary")
        #expect(try await store.read(key, range: (12 << 20) - 3..<(12 << 20)) == Array(all.suffix(3)))

        let abandoned = try await store.beginUpload(try ObjectKey("backups/abandoned.bin"), options: ObjectPutOptions())
        for _ in 0..<6 { try await abandoned.write(piece) }
        #expect(try await client.listMultipartUploads(prefix: "backups/").map(\.key) == ["backups/abandoned.bin"], "a part went: the upload exists at S3")
        await abandoned.abort()
        #expect(try await client.listMultipartUploads(prefix: "backups/").isEmpty, "aborted at S3, its parts freed")
        #expect(try await store.head(try ObjectKey("backups/abandoned.bin")) == nil)
        #expect(try await store.list(prefix: "backups/").map { $0.key.value } == ["backups/dump.bin"])

        // Create-only across parts: CompleteMultipartUpload carries If-None-Match too.
        let again = try await store.beginUpload(key, options: ObjectPutOptions(ifAbsent: true))
        for _ in 0..<6 { try await again.write(piece) }
        do {
            _ = try await again.complete()
            Issue.record("an ifAbsent multipart upload replaced an object")
        } catch {
            #expect(error.code == .alreadyExists)
        }
        #expect(try await store.head(key)?.size == 12 << 20, "the first object stays")
        #expect(try await client.listMultipartUploads(prefix: "backups/").isEmpty, "the refused upload was aborted")
    }

    @Test("S3 Object Lock: the retention travels with the upload; a retained object is neither deleted nor replaced")
    func objectLock() async throws {
        guard let client = try await Self.bucket(locked: true) else { return }
        let store = try S3ObjectStore(client: client, partSize: 5 << 20)
        let key = try ObjectKey("backups/locked.bin")
        let until = Date(timeIntervalSinceNow: 3_600).addingTimeInterval(-Date().timeIntervalSince1970.truncatingRemainder(dividingBy: 1))
        let lock = ObjectLock(mode: .compliance, retainUntil: until)
        try await store.put([1, 2, 3], at: key, options: ObjectPutOptions(lock: lock))
        let head = try #require(try await store.head(key))
        #expect(head.lock?.mode == .compliance)
        #expect(abs((head.lock?.retainUntil.timeIntervalSince1970 ?? 0) - until.timeIntervalSince1970) < 1)
        var refused: ObjectStoreError?
        do { try await store.delete(key) } catch { refused = error }
        #expect(refused?.code == .objectLocked)
        refused = nil
        do { try await store.put([4], at: key) } catch { refused = error }
        #expect(refused?.code == .objectLocked)
        #expect(try await store.get(key) == [1, 2, 3])

        // A multipart upload carries the retention too.
        let big = try await store.beginUpload(try ObjectKey("backups/locked-big.bin"), options: ObjectPutOptions(lock: lock))
        for _ in 0..<6 { try await big.write([UInt8](repeating: 5, count: 1 << 20)) }
        _ = try await big.complete()
        #expect(try await store.head(try ObjectKey("backups/locked-big.bin"))?.lock?.mode == .compliance)
    }
}
