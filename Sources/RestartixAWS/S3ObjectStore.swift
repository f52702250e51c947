import Crypto
public import Foundation
public import RestartixKit
import Synchronization

/// An ``ObjectStore`` on an S3 bucket (moto in tests), through ``S3Client``.
///
/// An upload holds at most one part in memory: up to ``partSize`` bytes it is one `PutObject`
/// when it completes (with its SHA-256 as `x-amz-meta-sha256`, so ``head(_:)`` can give it);
/// past that it becomes a multipart upload, a part sent each time ``partSize`` bytes have
/// gathered, and nothing is visible at the key until `CompleteMultipartUpload`. An aborted
/// upload is aborted at S3; one whose process died stays an incomplete multipart upload, which
/// no reader sees (a bucket lifecycle rule, `AbortIncompleteMultipartUpload`, frees its parts).
/// A multipart object's SHA-256 is returned by ``ObjectUpload/complete()`` but not kept at S3
/// (its metadata is fixed before the bytes are known): a caller that needs it later records it
/// (the backup manifest does).
///
/// Limits: an object is at most 10,000 parts (78 GiB at the default 8 MiB parts; raise
/// ``partSize`` for more); `read(_:range: nil)` reads objects of up to 64 MiB whole, larger
/// ones in ranges. Uploads and deletes look at the object first (its retention), so the
/// credentials need `s3:GetObject` as well as `s3:PutObject`.
///
/// Object Lock headers go with the upload, with `Content-MD5` as S3 requires under a
/// retention. ``delete(_:)`` refuses a retained object itself (`objectLocked`): on a bucket
/// with Object Lock, S3 would answer a plain `DeleteObject` by hiding the object behind a
/// delete marker, which is not what a caller asking to delete means.
public final class S3ObjectStore: ObjectStore {
    /// The bucket's client.
    public let client: S3Client
    /// The size of a multipart upload's parts (S3: 5 MiB to 5 GiB; default 8 MiB).
    public let partSize: Int

    /// A store on `client`'s bucket.
    public init(client: S3Client, partSize: Int = 8 << 20) throws(ObjectStoreError) {
        guard partSize >= 5 << 20, partSize <= 5 << 30 else {
            throw ObjectStoreError(.failed, "an S3 part is 5 MiB to 5 GiB, not \(partSize) bytes")
        }
        self.client = client
        self.partSize = partSize
    }

    public func beginUpload(_ key: ObjectKey, options: ObjectPutOptions) async throws(ObjectStoreError) -> any ObjectUpload {
        S3Upload(store: self, key: key, options: options)
    }

    public func read(_ key: ObjectKey, range: Range<Int>?) async throws(ObjectStoreError) -> [UInt8]? {
        if let range, range.lowerBound < 0 { throw ObjectStoreError(.invalidRange, "a range starts at 0 or later") }
        do throws(AWSError) {
            let data: Data?
            if let range { data = try await client.get(key.value, range: range) } else { data = try await client.get(key.value) }
            return data.map { Array($0) }
        } catch {
            if case .service(type: "InvalidRange", _) = error.kind { throw ObjectStoreError(.invalidRange, "the range starts past the object's end") }
            throw Self.storeError(error, "read an object")
        }
    }

    public func head(_ key: ObjectKey) async throws(ObjectStoreError) -> ObjectInfo? {
        let head: S3Client.ObjectHead?
        do { head = try await client.head(key.value) } catch { throw Self.storeError(error, "read an object's metadata") }
        guard let head else { return nil }
        let lock = head.lockMode.flatMap(ObjectLock.Mode.init(rawValue:)).flatMap { mode in
            head.lockRetainUntil.map { ObjectLock(mode: mode, retainUntil: $0) }
        }
        return ObjectInfo(
            key: key, size: head.size, sha256: head.metadata["sha256"], contentType: head.contentType, lock: lock,
            serverSideEncryption: ServerSideEncryption(header: head.serverSideEncryption, kmsKeyID: head.kmsKeyID)
        )
    }

    /// A SigV4 presigned URL (query-string authentication) for `access` to `key`: a download
    /// signs the host only; an upload signs its content type, content length and encryption
    /// header too, so S3 refuses a PUT with any other (403 `SignatureDoesNotMatch`), and one
    /// after the expiry (403 `AccessDenied`, "Request has expired"); and `If-None-Match: *`,
    /// so S3 refuses to replace an object that is there (412 `PreconditionFailed`).
    public func presign(_ key: ObjectKey, for access: PresignedAccess, expires: Duration) throws(ObjectStoreError) -> PresignedRequest {
        try access.validate(expires: expires)
        let now = Date()
        let url: URL
        do {
            switch access {
            case .download:
                url = try client.presignedURL("GET", for: key.value, expires: expires, date: now)
            case .upload(let type, let length, let encryption):
                url = try client.presignedURL(
                    "PUT", for: key.value, expires: expires, contentType: type, contentLength: length,
                    headers: Self.createOnly + (encryption?.headers ?? []), date: now
                )
            }
        } catch {
            throw ObjectStoreError(.invalidPresign, "the URL could not be presigned: \(error.codeName)")
        }
        // SigV4 counts from the signing second. Temporary keys end the URL's life with theirs
        // (S3 refuses a URL whose keys have expired): the expiry reported is the earlier one.
        let signedAt = now.timeIntervalSince1970.rounded(.down)
        var expiresAt = Date(timeIntervalSince1970: signedAt + Double(expires.components.seconds))
        if let keys = client.credentials.current.expiration, keys < expiresAt { expiresAt = keys }
        return PresignedRequest(method: access.method, url: url, headers: access.requiredHeaders, expiresAt: expiresAt)
    }

    public func delete(_ key: ObjectKey) async throws(ObjectStoreError) {
        if let lock = try await head(key)?.lock, lock.retainUntil > Date() {
            throw ObjectStoreError(.objectLocked, "the object is retained (\(lock.mode.rawValue)) until \(lock.retainUntil)")
        }
        do { try await client.delete(key.value) } catch { throw Self.storeError(error, "delete an object") }
    }

    /// Key and size of each object (S3's listing carries no more; ``head(_:)`` has the rest).
    public func list(prefix: String) async throws(ObjectStoreError) -> [ObjectInfo] {
        let entries: [(key: String, size: Int)]
        do { entries = try await client.list(prefix: prefix) } catch { throw Self.storeError(error, "list objects") }
        return entries.compactMap { entry in
            (try? ObjectKey(entry.key)).map { ObjectInfo(key: $0, size: entry.size, sha256: nil, contentType: nil, lock: nil) }
        }.sorted { $0.key < $1.key }
    }

    /// An S3 failure as the store's: unreachable or a server error is `unavailable` (try
    /// again), anything else `failed`; the detail names S3's error code, never a body.
    static func storeError(_ error: AWSError, _ what: String) -> ObjectStoreError {
        switch error.kind {
        case .unreachable: return ObjectStoreError(.unavailable, "S3 could not be reached to \(what)")
        // If-None-Match: * met an object (412), or lost to a concurrent conditional write (409).
        case .service("PreconditionFailed", 412), .service("ConditionalRequestConflict", 409):
            return ObjectStoreError(.alreadyExists, "an object is at this key already (S3 refused to \(what) over it)")
        case .service(let type, let status) where status >= 500: return ObjectStoreError(.unavailable, "S3 answered \(type) (HTTP \(status)) to \(what)")
        case .service(let type, let status): return ObjectStoreError(.failed, "S3 refused to \(what): \(type) (HTTP \(status))")
        default: return ObjectStoreError(.failed, "could not \(what): \(error.codeName)")
        }
    }

    /// S3's create-only condition: the write fails (412) when an object is at the key.
    static let createOnly = [("if-none-match", "*")]

    /// The conditions of the request that places an upload's object (PutObject, or
    /// CompleteMultipartUpload; not CreateMultipartUpload): ``createOnly`` for
    /// ``ObjectPutOptions/ifAbsent``.
    func conditions(_ options: ObjectPutOptions) -> [(String, String)] { options.ifAbsent ? Self.createOnly : [] }

    /// Headers for an upload's options (encryption, Object Lock), plus `Content-MD5` of `body`
    /// under a retention.
    func headers(_ options: ObjectPutOptions, body: Data?) -> [(String, String)] {
        var headers: [(String, String)] = options.serverSideEncryption?.headers ?? []
        if let lock = options.lock {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            headers += [("x-amz-object-lock-mode", lock.mode.rawValue), ("x-amz-object-lock-retain-until-date", formatter.string(from: lock.retainUntil))]
            if let body { headers.append(("content-md5", Data(Insecure.MD5.hash(data: body)).base64EncodedString())) }
        }
        return headers
    }
}

/// An upload to an ``S3ObjectStore``: one part buffered at a time.
final class S3Upload: ObjectUpload, @unchecked Sendable {
    // Not for two tasks at once (``ObjectUpload``); `state` keeps its parts in order.
    private let store: S3ObjectStore
    private let key: ObjectKey
    private let options: ObjectPutOptions
    private struct State {
        /// Accepted into `buffer` counts as recorded; a part that fails to go breaks it (the
        /// object would miss bytes).
        var progress = UploadProgress()
        var buffer = Data()
        var uploadID: String?
        var parts: [(number: Int, etag: String)] = []

        /// The first whole part of `buffer`, taken out of it; nil while less than a part is in.
        /// The rest is copied into a new buffer: `Data.removeFirst` only moves a slice's start,
        /// so the storage kept every part ever written (RSS grew a part's size per part).
        mutating func takePart(_ size: Int) -> Data? {
            guard buffer.count >= size else { return nil }
            let part = Data(buffer.prefix(size))
            buffer = Data(buffer.dropFirst(size))
            return part
        }
    }
    private let state = Mutex(State())

    init(store: S3ObjectStore, key: ObjectKey, options: ObjectPutOptions) {
        self.store = store
        self.key = key
        self.options = options
    }

    func write(_ bytes: [UInt8]) async throws(ObjectStoreError) {
        let full = try state.withLock { state throws(ObjectStoreError) -> Data? in
            try state.progress.checkUsable()
            state.progress.record(bytes)
            // A whole part with nothing buffered (the backup writer's case) goes as it is.
            if state.buffer.isEmpty, bytes.count == store.partSize { return Data(bytes) }
            state.buffer.append(contentsOf: bytes)
            return state.takePart(store.partSize)
        }
        if let full { try await send(full) }
        // More than a part came in one write: send the rest of the whole parts too.
        while let more = state.withLock({ $0.takePart(store.partSize) }) {
            try await send(more)
        }
    }

    /// Sends one part, starting the multipart upload first if this is the first.
    private func send(_ part: Data) async throws(ObjectStoreError) {
        let client = store.client
        do {
            var uploadID = state.withLock { $0.uploadID }
            if uploadID == nil {
                let id = try await client.createMultipartUpload(at: key.value, contentType: options.contentType, headers: store.headers(options, body: nil))
                state.withLock { $0.uploadID = id }
                uploadID = id
            }
            let number = state.withLock { $0.parts.count + 1 }
            let etag = try await client.uploadPart(part, at: key.value, uploadID: uploadID!, number: number, headers: options.lock == nil ? [] : [
                ("content-md5", Data(Insecure.MD5.hash(data: part)).base64EncodedString()),
            ])
            state.withLock { $0.parts.append((number, etag)) }
        } catch {
            state.withLock { $0.progress.markBroken() }
            throw S3ObjectStore.storeError(error, "upload a part")
        }
    }

    func complete() async throws(ObjectStoreError) -> ObjectInfo {
        let (rest, digest, size, uploadID) = try state.withLock { state throws(ObjectStoreError) in
            let (digest, size) = try state.progress.complete()
            let rest = state.buffer
            state.buffer = Data()
            return (rest, digest, size, state.uploadID)
        }
        let client = store.client
        do throws(ObjectStoreError) {
            if let existing = try await store.head(key)?.lock, existing.retainUntil > Date() {
                throw ObjectStoreError(.objectLocked, "the object at this key is retained (\(existing.mode.rawValue)) until \(existing.retainUntil): it cannot be replaced")
            }
            if let uploadID {
                if !rest.isEmpty || state.withLock({ $0.parts.isEmpty }) { try await send(rest) }
                let parts = state.withLock { $0.parts }
                do {
                    try await client.completeMultipartUpload(
                        at: key.value, uploadID: uploadID, parts: parts, headers: store.conditions(options)
                    )
                } catch {
                    throw S3ObjectStore.storeError(error, "complete an upload")
                }
            } else {
                do {
                    try await client.put(
                        rest, at: key.value, contentType: options.contentType,
                        headers: [("x-amz-meta-sha256", digest)] + store.headers(options, body: rest) + store.conditions(options)
                    )
                } catch {
                    throw S3ObjectStore.storeError(error, "store an object")
                }
            }
        } catch {
            await discard()
            throw error
        }
        if uploadID != nil, let lock = options.lock {
            // Sent with CreateMultipartUpload too; set again on the object, as not every S3
            // implementation applies it from there (moto does not). The object is stored by now:
            // a failure here must not abort it, and says so.
            var lastError: AWSError?
            for attempt in 0..<3 {
                if attempt > 0 { try? await Task.sleep(for: .milliseconds(200 * attempt)) }
                do {
                    try await client.putRetention(key.value, mode: lock.mode.rawValue, retainUntil: lock.retainUntil)
                    lastError = nil
                    break
                } catch {
                    lastError = error
                }
            }
            if let lastError {
                throw ObjectStoreError(.failed, "the object is stored but its retention could not be confirmed (\(lastError.codeName)): set it again before relying on it")
            }
        }
        return ObjectInfo(key: key, size: size, sha256: digest, contentType: options.contentType, lock: options.lock)
    }

    func abort() async {
        guard state.withLock({ $0.progress.abort() }) else { return }
        await discard()
    }

    private func discard() async {
        let uploadID = state.withLock { state in
            state.buffer = Data()
            return state.uploadID
        }
        if let uploadID { try? await store.client.abortMultipartUpload(at: key.value, uploadID: uploadID) }
    }
}
