public import Foundation
import Synchronization

/// An ``ObjectStore`` in a local directory: the embedded default, and the store of tests and
/// development. Under `directory`: `objects/<key>` the bytes, `meta/<key>.json` what an upload
/// recorded (SHA-256, media type, Object Lock), `uploads/` uploads in progress.
///
/// An upload writes a file of its own under `uploads/` and, on completion, syncs it and renames
/// it into place (after its metadata), so a reader sees the old object or the new one, whole,
/// never a part; an aborted upload, or one whose process died, leaves only a file under
/// `uploads/`, which ``removeStaleUploads(olderThan:)`` clears. Object Lock is kept as S3 keeps
/// it: a retained object cannot be deleted, nor (with no versions here) replaced, until its
/// retention ends. File I/O runs on a thread of the store's own, never on the cooperative
/// pool. Unlike S3, a key cannot be both an object and the start of another's path (`a` and
/// `a/b`): the second write fails with `failed`.
public final class LocalObjectStore: ObjectStore {
    /// The store's directory.
    public let directory: URL
    /// How the store signs URLs, when it does (``presign(_:for:expires:)``).
    public let presigning: Presigning?
    private let worker: BlockingWorker
    let clock: @Sendable () -> Date

    /// A store in `directory` (created if missing); with `presigning`, it hands out presigned
    /// URLs for the route that serves them and verifies them (``verifyPresigned(method:key:query:headers:)``).
    public convenience init(directory: URL, presigning: Presigning? = nil) throws(ObjectStoreError) {
        try self.init(directory: directory, presigning: presigning, clock: { Date() })
    }

    init(directory: URL, presigning: Presigning? = nil, clock: @escaping @Sendable () -> Date) throws(ObjectStoreError) {
        self.directory = directory.standardizedFileURL
        self.presigning = presigning
        self.clock = clock
        self.worker = BlockingWorker(name: "restartix.objects")
        for sub in ["objects", "meta", "uploads"] {
            do {
                try FileManager.default.createDirectory(at: self.directory.appendingPathComponent(sub), withIntermediateDirectories: true)
            } catch {
                throw ObjectStoreError(.failed, "cannot create the store's \(sub) directory")
            }
        }
    }

    deinit { worker.stop() }

    /// What `meta/<key>.json` holds.
    struct Metadata: Codable {
        var sha256: String
        var size: Int
        var contentType: String
        var lock: ObjectLock?
    }

    func objectURL(_ key: ObjectKey) -> URL { directory.appendingPathComponent("objects").appendingPathComponent(key.value) }
    func metaURL(_ key: ObjectKey) -> URL { directory.appendingPathComponent("meta").appendingPathComponent(key.value + ".json") }

    /// Runs file work on the store's thread; any error that is not already the store's becomes
    /// `failed` (its text may quote a path, which holds the key).
    func io<T: Sendable>(_ what: String, _ body: @escaping @Sendable () throws -> T) async throws(ObjectStoreError) -> T {
        do {
            return try await worker.run(body)
        } catch let error as ObjectStoreError {
            throw error
        } catch {
            throw ObjectStoreError(.failed, "the local store could not \(what)")
        }
    }

    public func beginUpload(_ key: ObjectKey, options: ObjectPutOptions) async throws(ObjectStoreError) -> any ObjectUpload {
        let file = directory.appendingPathComponent("uploads").appendingPathComponent(UUID().uuidString)
        let handle = try await io("start an upload") { () -> FileHandle in
            guard FileManager.default.createFile(atPath: file.path, contents: nil) else { throw CocoaError(.fileWriteUnknown) }
            return try FileHandle(forWritingTo: file)
        }
        return LocalUpload(store: self, key: key, options: options, file: file, handle: handle)
    }

    public func read(_ key: ObjectKey, range: Range<Int>?) async throws(ObjectStoreError) -> [UInt8]? {
        if let range, range.lowerBound < 0 { throw ObjectStoreError(.invalidRange, "a range starts at 0 or later") }
        let url = objectURL(key)
        return try await io("read an object") { () -> [UInt8]? in
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                  let handle = FileHandle(forReadingAtPath: url.path) else { return nil }
            defer { try? handle.close() }
            let size = Int(try handle.seekToEnd())
            let wanted = range ?? 0..<size
            guard wanted.lowerBound <= size else { throw ObjectStoreError(.invalidRange, "the range starts past the object's end (\(size) bytes)") }
            try handle.seek(toOffset: UInt64(wanted.lowerBound))
            let count = min(wanted.upperBound, size) - wanted.lowerBound
            return count == 0 ? [] : Array(try handle.read(upToCount: count) ?? Data())
        }
    }

    public func head(_ key: ObjectKey) async throws(ObjectStoreError) -> ObjectInfo? {
        let url = objectURL(key), meta = metaURL(key)
        return try await io("read an object's metadata") { () -> ObjectInfo? in
            guard let size = Self.regularFileSize(url) else { return nil }
            let metadata = try Self.metadata(meta, size: size)
            return ObjectInfo(key: key, size: size, sha256: metadata?.sha256, contentType: metadata?.contentType, lock: metadata?.lock)
        }
    }

    /// The size of the regular file at `url`; nil when there is none (a directory is not an object).
    static func regularFileSize(_ url: URL) -> Int? {
        var status = stat()
        guard lstat(url.path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(status.st_size)
    }

    /// The metadata of an object of `size` bytes: nil when there is none or it belongs to other
    /// bytes (an upload that died between its two renames); `failed` when it exists but cannot
    /// be read, so that a retention is never taken for absent.
    static func metadata(_ meta: URL, size: Int) throws -> Metadata? {
        guard FileManager.default.fileExists(atPath: meta.path) else { return nil }
        guard let data = try? Data(contentsOf: meta), let metadata = try? JSONDecoder().decode(Metadata.self, from: data) else {
            throw ObjectStoreError(.failed, "an object's metadata is unreadable")
        }
        return metadata.size == size ? metadata : nil
    }

    /// Refuses when the object at `url` is retained; run inside the same job as the change it
    /// guards, so no upload can place a retained object in between.
    func refuseIfRetained(_ url: URL, meta: URL, _ doing: String) throws {
        guard let size = Self.regularFileSize(url), let lock = try Self.metadata(meta, size: size)?.lock, lock.retainUntil > clock() else { return }
        throw ObjectStoreError(.objectLocked, "the object is retained (\(lock.mode.rawValue)) until \(lock.retainUntil): it cannot be \(doing)")
    }

    public func delete(_ key: ObjectKey) async throws(ObjectStoreError) {
        let url = objectURL(key), meta = metaURL(key)
        try await io("delete an object") {
            // Only a regular file is an object: a key that names a directory (the start of
            // other keys) deletes nothing, as on S3.
            guard Self.regularFileSize(url) != nil else { return }
            try self.refuseIfRetained(url, meta: meta, "deleted")
            guard unlink(url.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
            _ = unlink(meta.path)
        }
    }

    public func list(prefix: String) async throws(ObjectStoreError) -> [ObjectInfo] {
        let root = directory.appendingPathComponent("objects")
        let paths = try await io("list objects") { () -> [String] in
            guard let walker = FileManager.default.enumerator(atPath: root.path) else { return [] }
            var found: [String] = []
            while let path = walker.nextObject() as? String {
                var isDirectory: ObjCBool = false
                if path.hasPrefix(prefix),
                   FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    found.append(path)
                }
            }
            return found
        }
        var infos: [ObjectInfo] = []
        for path in paths {
            guard let key = try? ObjectKey(path), let info = try await head(key) else { continue }
            infos.append(info)
        }
        return infos.sorted { $0.key < $1.key }
    }

    /// Removes uploads that were never completed or aborted (their process died) and were last
    /// written more than `age` ago. Returns how many it removed.
    @discardableResult
    public func removeStaleUploads(olderThan age: TimeInterval) async throws(ObjectStoreError) -> Int {
        let uploads = directory.appendingPathComponent("uploads"), cutoff = clock().addingTimeInterval(-age)
        return try await io("clear stale uploads") { () -> Int in
            var removed = 0
            for name in try FileManager.default.contentsOfDirectory(atPath: uploads.path) {
                let url = uploads.appendingPathComponent(name)
                let modified = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date
                if let modified, modified < cutoff {
                    try FileManager.default.removeItem(at: url)
                    removed += 1
                }
            }
            return removed
        }
    }

    /// Puts a finished upload in place, in one job with the retention check: its metadata, then
    /// its bytes, each synced and renamed (directories synced too); with `ifAbsent`, the bytes
    /// first, linked so that an object already there is never replaced, then the metadata. Should the second rename
    /// fail, the old metadata is put back. Should the process die between the two, readers
    /// ignore metadata whose size is not the file's (``metadata(_:size:)``); only an old object
    /// of exactly the new one's size would show the new metadata until the key is written again.
    func place(_ key: ObjectKey, from file: URL, metadata: Metadata, ifAbsent: Bool) async throws(ObjectStoreError) -> ObjectInfo {
        let url = objectURL(key), meta = metaURL(key), uploads = directory.appendingPathComponent("uploads")
        try await io("complete an upload") {
            try self.refuseIfRetained(url, meta: meta, "replaced")
            let manager = FileManager.default
            try manager.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try manager.createDirectory(at: meta.deletingLastPathComponent(), withIntermediateDirectories: true)
            let metaFile = uploads.appendingPathComponent(UUID().uuidString + ".json")
            try JSONEncoder().encode(metadata).write(to: metaFile)
            try Self.sync(metaFile)
            if ifAbsent {
                // The bytes first, by link(2), which fails rather than replace: of two writers
                // of one key, one wins and the other changes nothing. The metadata follows.
                guard link(file.path, url.path) == 0 else {
                    let failure = errno
                    _ = unlink(metaFile.path)
                    if failure == EEXIST { throw ObjectStoreError(.alreadyExists, "an object is at this key already") }
                    throw CocoaError(.fileWriteUnknown)
                }
                _ = unlink(file.path)
                guard rename(metaFile.path, meta.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
                try Self.sync(meta.deletingLastPathComponent())
                try Self.sync(url.deletingLastPathComponent())
                return
            }
            // Replacing: the metadata first, then the bytes (see above).
            let previous = try? Data(contentsOf: meta)
            guard rename(metaFile.path, meta.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
            guard rename(file.path, url.path) == 0 else {
                if let previous { try? previous.write(to: meta) } else { _ = unlink(meta.path) }
                throw CocoaError(.fileWriteUnknown)
            }
            try Self.sync(meta.deletingLastPathComponent())
            try Self.sync(url.deletingLastPathComponent())
        }
        return ObjectInfo(key: key, size: metadata.size, sha256: metadata.sha256, contentType: metadata.contentType, lock: metadata.lock)
    }

    /// `fsync` of a file or a directory.
    static func sync(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw CocoaError(.fileReadUnknown) }
        defer { _ = close(fd) }
        guard fsync(fd) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }
}

/// An upload into a ``LocalObjectStore``: a file under `uploads/`, hashed as it is written.
final class LocalUpload: ObjectUpload, @unchecked Sendable {
    // Not for two tasks at once (``ObjectUpload``); `state` guards against use after the end.
    private let store: LocalObjectStore
    private let key: ObjectKey
    private let options: ObjectPutOptions
    private let file: URL
    private let handle: FileHandle
    private let state = Mutex(UploadProgress())

    init(store: LocalObjectStore, key: ObjectKey, options: ObjectPutOptions, file: URL, handle: FileHandle) {
        self.store = store
        self.key = key
        self.options = options
        self.file = file
        self.handle = handle
    }

    func write(_ bytes: [UInt8]) async throws(ObjectStoreError) {
        try state.withLock { state throws(ObjectStoreError) in try state.checkUsable() }
        let handle = handle
        do {
            try await store.io("write an upload") { try handle.write(contentsOf: bytes) }
        } catch {
            state.withLock { $0.markBroken() }
            throw error
        }
        state.withLock { $0.record(bytes) }
    }

    func complete() async throws(ObjectStoreError) -> ObjectInfo {
        let (digest, size) = try state.withLock { state throws(ObjectStoreError) in try state.complete() }
        let handle = handle
        do {
            try await store.io("finish an upload") {
                try handle.synchronize()
                try handle.close()
            }
            return try await store.place(
                key, from: file, metadata: .init(sha256: digest, size: size, contentType: options.contentType, lock: options.lock), ifAbsent: options.ifAbsent
            )
        } catch {
            await discard()
            throw error
        }
    }

    func abort() async {
        guard state.withLock({ $0.abort() }) else { return }
        await discard()
    }

    /// Closes the upload's file under it, so that the next write fails as a full disk or an I/O
    /// error would (tests of the failure path).
    func closeFileForTesting() { try? handle.close() }

    private func discard() async {
        let handle = handle, file = file
        _ = try? await store.io("abort an upload") {
            try? handle.close()
            try? FileManager.default.removeItem(at: file)
        }
    }
}

