import Crypto
import Foundation
@testable import RestartixKit
import Synchronization
import Testing

@Suite("Object store: keys and the local directory store")
struct ObjectStoreTests {
    /// A clock the test moves.
    final class TestClock: Sendable {
        let now: Mutex<Date>
        init(_ date: Date) { now = Mutex(date) }
        func set(_ date: Date) { now.withLock { $0 = date } }
        func read() -> Date { now.withLock { $0 } }
    }

    /// A store in a fresh directory, on `clock` when given.
    static func store(clock: TestClock? = nil) throws -> (LocalObjectStore, URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("objects-\(UUID().uuidString)")
        let store = try LocalObjectStore(directory: directory, clock: { clock?.read() ?? Date() })
        return (store, directory)
    }

    static func hex(_ bytes: [UInt8]) -> String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

    @Test("keys: segments only, nothing that climbs out, and the refusal never quotes the key")
    func keys() throws {
        for good in ["a", "org/0190a4c2/uploads/x.pdf", "backups/2026-12-06/dump.bin", "ünïcode/ключ", String(repeating: "k", count: 1024)] {
            #expect((try? ObjectKey(good)) != nil, "\(good.prefix(20))")
        }
        let bad = ["", "/etc/passwd", "a/", "a//b", "..", "../secret", "a/../../b", "a/./b", ".", "a\\b", "a\u{0}b", "a\nb", String(repeating: "k", count: 1025)]
        for key in bad {
            do {
                _ = try ObjectKey(key)
                Issue.record("accepted \(key.debugDescription.prefix(20))")
            } catch {
                #expect(error.code == .invalidKey)
                #expect(key.count < 3 || !error.safeDetail.contains(key), "the detail does not quote the key")
            }
        }
    }

    @Test("put, head with the SHA-256 and media type, ranged reads, list by prefix, delete")
    func roundTrip() async throws {
        let (store, directory) = try Self.store()
        defer { try? FileManager.default.removeItem(at: directory) }
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let key = try ObjectKey("org/a/files/report.pdf")
        let info = try await store.put(bytes, at: key, options: ObjectPutOptions(contentType: "application/pdf"))
        #expect(info.size == 10_000 && info.sha256 == Self.hex(bytes))
        let head = try #require(try await store.head(key))
        #expect(head.size == 10_000 && head.sha256 == Self.hex(bytes) && head.contentType == "application/pdf" && head.lock == nil)
        #expect(try await store.get(key) == bytes)
        #expect(try await store.read(key, range: 100..<200) == Array(bytes[100..<200]))
        #expect(try await store.read(key, range: 9_990..<20_000) == Array(bytes[9_990...]), "cut at the end")
        #expect(try await store.read(key, range: 10_000..<10_005) == [], "empty at the end")
        await #expect(throws: ObjectStoreError.self) { try await store.read(key, range: 10_001..<10_005) }
        #expect(try await store.get(try ObjectKey("org/a/files/other.pdf")) == nil)
        #expect(try await store.head(try ObjectKey("org/a/files")) == nil, "a directory is not an object")
        #expect(try await store.get(try ObjectKey("org/a/files")) == nil)

        try await store.put([1], at: try ObjectKey("org/a/files/b"))
        try await store.put([2], at: try ObjectKey("org/b/files/c"))
        #expect(try await store.list(prefix: "org/a/").map { $0.key.value } == ["org/a/files/b", "org/a/files/report.pdf"])
        #expect(try await store.list(prefix: "org/").count == 3)
        #expect(try await store.list(prefix: "nothing/").isEmpty)

        try await store.delete(key)
        #expect(try await store.get(key) == nil)
        #expect(try await store.head(key) == nil)
        try await store.delete(key)  // nothing there: no error
    }

    @Test("an upload is invisible until it completes; an aborted one leaves the old object and no file")
    func uploads() async throws {
        let (store, directory) = try Self.store()
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ObjectKey("backups/one")
        try await store.put([9, 9, 9], at: key)

        let upload = try await store.beginUpload(key, options: ObjectPutOptions())
        try await upload.write([1, 2, 3])
        try await upload.write([4, 5])
        #expect(try await store.get(key) == [9, 9, 9], "the old object until the new one completes")
        let info = try await upload.complete()
        #expect(info.size == 5 && info.sha256 == Self.hex([1, 2, 3, 4, 5]))
        #expect(try await store.get(key) == [1, 2, 3, 4, 5])
        await #expect(throws: ObjectStoreError.self) { try await upload.write([6]) }
        await #expect(throws: ObjectStoreError.self) { try await upload.complete() }

        let aborted = try await store.beginUpload(key, options: ObjectPutOptions())
        try await aborted.write([7, 7])
        await aborted.abort()
        await aborted.abort()
        #expect(try await store.get(key) == [1, 2, 3, 4, 5])
        let fresh = try await store.beginUpload(try ObjectKey("backups/two"), options: ObjectPutOptions())
        await fresh.abort()
        #expect(try await store.head(try ObjectKey("backups/two")) == nil)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("uploads").path)
        #expect(leftovers.isEmpty, "aborts leave no file")
    }

    @Test("a key that names a directory deletes nothing under it; a failed write leaves only abort")
    func directoryKeysAndBrokenUploads() async throws {
        let (store, directory) = try Self.store()
        defer { try? FileManager.default.removeItem(at: directory) }
        try await store.put([1], at: try ObjectKey("org/a/x"))
        try await store.put([2], at: try ObjectKey("org/a/y"), options: ObjectPutOptions(lock: ObjectLock(mode: .compliance, retainUntil: Date(timeIntervalSinceNow: 3_600))))
        try await store.delete(try ObjectKey("org/a"))
        try await store.delete(try ObjectKey("org"))
        #expect(try await store.get(try ObjectKey("org/a/x")) == [1], "not swept away by a delete of its directory")
        #expect(try await store.get(try ObjectKey("org/a/y")) == [2])

        // A write that fails for real (its file closed underneath it) breaks the upload: its bytes
        // are unknown, so neither another write nor complete() goes through, only abort().
        let upload = try await store.beginUpload(try ObjectKey("org/b"), options: ObjectPutOptions())
        try await upload.write([1, 2])
        let local = try #require(upload as? LocalUpload)
        local.closeFileForTesting()
        var failure: ObjectStoreError?
        do { try await upload.write([3]) } catch { failure = error }
        #expect(failure?.code == .failed, "the write itself fails")
        failure = nil
        do { try await upload.write([4]) } catch { failure = error }
        #expect(failure?.code == .uploadFinished, "then the upload takes nothing more")
        await #expect(throws: ObjectStoreError.self) { try await upload.complete() }
        await upload.abort()
        #expect(try await store.head(try ObjectKey("org/b")) == nil)

        // Metadata that is unreadable is never taken for "no retention".
        try Data("not json".utf8).write(to: directory.appendingPathComponent("meta/org/a/y.json"))
        var refused: ObjectStoreError?
        do { try await store.delete(try ObjectKey("org/a/y")) } catch { refused = error }
        #expect(refused?.code == .failed)
        #expect(try await store.get(try ObjectKey("org/a/y")) == [2])
    }

    @Test("Object Lock: a retained object is neither deleted nor replaced until its retention ends")
    func objectLock() async throws {
        let now = TestClock(Date(timeIntervalSince1970: 1_800_000_000))
        let (store, directory) = try Self.store(clock: now)
        defer { try? FileManager.default.removeItem(at: directory) }
        let key = try ObjectKey("backups/locked")
        let lock = ObjectLock(mode: .compliance, retainUntil: Date(timeIntervalSince1970: 1_800_003_600))
        try await store.put([1, 2], at: key, options: ObjectPutOptions(lock: lock))
        #expect(try await store.head(key)?.lock == lock)
        await #expect(throws: ObjectStoreError.self) { try await store.delete(key) }
        var refused: ObjectStoreError?
        do { try await store.put([3], at: key) } catch { refused = error }
        #expect(refused?.code == .objectLocked, "a retained object is not replaced")
        #expect(refused?.httpStatus == 409)
        #expect(try await store.get(key) == [1, 2])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("uploads").path)
        #expect(leftovers.isEmpty, "the refused replacement left no file")

        now.set(Date(timeIntervalSince1970: 1_800_003_601))
        try await store.delete(key)
        #expect(try await store.get(key) == nil)
    }

    @Test("uploads whose process died are cleared once stale; live ones stay")
    func staleUploads() async throws {
        let now = TestClock(Date())
        let (store, directory) = try Self.store(clock: now)
        defer { try? FileManager.default.removeItem(at: directory) }
        let abandoned = try await store.beginUpload(try ObjectKey("a"), options: ObjectPutOptions())
        try await abandoned.write([1])
        #expect(try await store.removeStaleUploads(olderThan: 3_600) == 0, "an hour has not passed")
        now.set(now.read().addingTimeInterval(7_200))
        #expect(try await store.removeStaleUploads(olderThan: 3_600) == 1)
        #expect(try await store.head(try ObjectKey("a")) == nil)
    }
}
