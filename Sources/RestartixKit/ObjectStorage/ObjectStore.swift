public import Foundation
public import RestartixCore

/// Objects by key: a local directory (``LocalObjectStore``, the embedded default) or an S3
/// bucket. Writes stream (``beginUpload(_:options:)``): nothing is visible at a key until its
/// upload completes, and an upload that is aborted, or whose process dies, leaves nothing a
/// reader would take for the object. Reads take byte ranges, so a reader of a large object
/// holds one range at a time.
public protocol ObjectStore: Sendable {
    /// Starts writing `key`. Feed the upload with ``ObjectUpload/write(_:)``, then
    /// ``ObjectUpload/complete()``; or ``ObjectUpload/abort()``.
    func beginUpload(_ key: ObjectKey, options: ObjectPutOptions) async throws(ObjectStoreError) -> any ObjectUpload
    /// The object's bytes in `range` (all of it when `nil`); `nil` when there is no object.
    /// A range past the end is cut at the end.
    func read(_ key: ObjectKey, range: Range<Int>?) async throws(ObjectStoreError) -> [UInt8]?
    /// What the store knows of the object, or `nil` when there is none.
    func head(_ key: ObjectKey) async throws(ObjectStoreError) -> ObjectInfo?
    /// Deletes the object (nothing when there is none); `objectLocked` while it is retained.
    func delete(_ key: ObjectKey) async throws(ObjectStoreError)
    /// The objects whose keys start with `prefix`, in key order.
    func list(prefix: String) async throws(ObjectStoreError) -> [ObjectInfo]
    /// A URL that lets its holder download or upload `key` for `expires`
    /// (``PresignedAccess/downloadLifetime`` and ``PresignedAccess/uploadLifetime`` are the
    /// platform's), with nothing else: another key, method, content type or length, or a later
    /// time, is refused by whoever serves it (S3, or the local store's
    /// ``LocalObjectStore/verifyPresigned(method:key:query:headers:)``). `invalidPresign` for a
    /// lifetime or an access that cannot be signed; `presignUnavailable` when this store has no
    /// way to serve one.
    func presign(_ key: ObjectKey, for access: PresignedAccess, expires: Duration) throws(ObjectStoreError) -> PresignedRequest
}

/// One object being written. Not for use from two tasks at once.
public protocol ObjectUpload: Sendable {
    /// Appends bytes to the object.
    func write(_ bytes: [UInt8]) async throws(ObjectStoreError)
    /// Makes the object visible at its key, whole, and says what was stored.
    func complete() async throws(ObjectStoreError) -> ObjectInfo
    /// Drops everything written; the key is as it was. Never throws.
    func abort() async
}

extension ObjectStore {
    /// Writes `bytes` at `key` in one upload.
    @discardableResult
    public func put(_ bytes: [UInt8], at key: ObjectKey, options: ObjectPutOptions = ObjectPutOptions()) async throws(ObjectStoreError) -> ObjectInfo {
        let upload = try await beginUpload(key, options: options)
        do {
            try await upload.write(bytes)
            return try await upload.complete()
        } catch {
            await upload.abort()
            throw error
        }
    }

    /// The whole object, or `nil` when there is none.
    public func get(_ key: ObjectKey) async throws(ObjectStoreError) -> [UInt8]? {
        try await read(key, range: nil)
    }
}

/// A key: 1 to 1,024 bytes of UTF-8 in `/`-separated segments, none of them empty, `.` or
/// `..`, without control characters or backslashes. So a key names a place inside its store
/// and nothing else: it cannot climb out of the local store's directory, and S3 and the
/// directory read it the same way.
public struct ObjectKey: Sendable, Hashable, CustomStringConvertible, Comparable {
    /// The key's text.
    public let value: String

    // By bytes, as the stores compare keys: `String`'s `==` would call two different keys equal
    // when they are canonically equivalent Unicode (é as one scalar or two).
    public static func == (lhs: ObjectKey, rhs: ObjectKey) -> Bool { lhs.value.utf8.elementsEqual(rhs.value.utf8) }
    public func hash(into hasher: inout Hasher) { for byte in value.utf8 { hasher.combine(byte) } }

    /// A key, or `invalidKey` naming the rule it breaks (never the key: it may carry ids).
    public init(_ value: String) throws(ObjectStoreError) {
        let bytes = value.utf8.count
        guard (1...1024).contains(bytes) else { throw ObjectStoreError(.invalidKey, "a key is 1 to 1024 bytes, this one is \(bytes)") }
        guard !value.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F || $0 == "\\" }) else {
            throw ObjectStoreError(.invalidKey, "a key holds no control characters or backslashes")
        }
        for segment in value.split(separator: "/", omittingEmptySubsequences: false) {
            guard !segment.isEmpty else { throw ObjectStoreError(.invalidKey, "a key has no empty segment (no leading, trailing or double slash)") }
            guard segment != ".", segment != ".." else { throw ObjectStoreError(.invalidKey, "a key has no '.' or '..' segment") }
        }
        self.value = value
    }

    public var description: String { value }

    public static func < (lhs: ObjectKey, rhs: ObjectKey) -> Bool { lhs.value.utf8.lexicographicallyPrecedes(rhs.value.utf8) }
}

/// How an object is written.
public struct ObjectPutOptions: Sendable, Hashable {
    /// The object's media type.
    public var contentType: String
    /// S3 Object Lock for the object: its mode and the time until which it cannot be deleted
    /// (nor, locally, replaced).
    public var lock: ObjectLock?
    /// S3 server-side encryption headers sent with the upload (S3 only; ignored locally).
    public var serverSideEncryption: ServerSideEncryption?
    /// Store only if no object is at the key when the upload completes: otherwise it fails with
    /// `alreadyExists` (409) and what was there stays. Atomic against concurrent writers (S3:
    /// `If-None-Match: *`; the local store: link(2), which never replaces).
    public var ifAbsent: Bool

    public init(
        contentType: String = "application/octet-stream", lock: ObjectLock? = nil, serverSideEncryption: ServerSideEncryption? = nil,
        ifAbsent: Bool = false
    ) {
        self.contentType = contentType
        self.lock = lock
        self.serverSideEncryption = serverSideEncryption
        self.ifAbsent = ifAbsent
    }
}

/// S3 Object Lock retention: `compliance` cannot be shortened or removed by anyone until it
/// ends; `governance` can by a principal with the bypass permission (S3's terms).
public struct ObjectLock: Sendable, Hashable, Codable {
    /// S3's two modes.
    public enum Mode: String, Sendable, Codable { case governance = "GOVERNANCE", compliance = "COMPLIANCE" }
    public var mode: Mode
    /// Until when the object is retained.
    public var retainUntil: Date

    public init(mode: Mode, retainUntil: Date) {
        self.mode = mode
        self.retainUntil = retainUntil
    }
}

/// What a store knows of an object.
public struct ObjectInfo: Sendable, Hashable {
    public let key: ObjectKey
    /// Size in bytes.
    public let size: Int
    /// SHA-256 of the bytes, lower-case hex, when the store has it: an upload's `complete()`
    /// always returns it; `head` gives it for the local store's objects and for S3 objects of up
    /// to one part (S3 keeps no checksum of a multipart object); `list` only where the store has
    /// it at hand (the local store).
    public let sha256: String?
    public let contentType: String?
    public let lock: ObjectLock?
    /// How S3 encrypts the object at rest, as `head` reports it (nil locally, and from `list`).
    public let serverSideEncryption: ServerSideEncryption?

    public init(key: ObjectKey, size: Int, sha256: String?, contentType: String?, lock: ObjectLock?, serverSideEncryption: ServerSideEncryption? = nil) {
        self.serverSideEncryption = serverSideEncryption
        self.key = key
        self.size = size
        self.sha256 = sha256
        self.contentType = contentType
        self.lock = lock
    }
}

/// An object-store failure. Details name keys' rules, sizes and states, never a key's text or
/// an object's bytes.
public typealias ObjectStoreError = DomainError<ObjectStoreErrorDomain>

/// The `objectStore` error domain.
public enum ObjectStoreErrorDomain: ErrorDomain {
    public static let name = "objectStore"

    public static func httpStatus(for code: ErrorCode<ObjectStoreErrorDomain>) -> Int {
        switch code {
        case .invalidKey, .invalidRange, .invalidPresign: 400
        case .presignExpired, .presignRefused: 403
        case .objectLocked, .alreadyExists: 409
        case .presignUnavailable: 501
        case .unavailable: 503
        default: 500
        }
    }

    public static func isTransient(_ code: ErrorCode<ObjectStoreErrorDomain>) -> Bool { code == .unavailable }
}

extension ErrorCode where Domain == ObjectStoreErrorDomain {
    /// The key breaks a rule of ``ObjectKey``.
    public static var invalidKey: Self { Self("invalidKey") }
    /// A range that starts past its end or below zero.
    public static var invalidRange: Self { Self("invalidRange") }
    /// An upload made ``ObjectPutOptions/ifAbsent`` found an object at its key.
    public static var alreadyExists: Self { Self("alreadyExists") }
    /// The object is retained (Object Lock) and cannot be deleted or replaced yet.
    public static var objectLocked: Self { Self("objectLocked") }
    /// The upload was completed or aborted already.
    public static var uploadFinished: Self { Self("uploadFinished") }
    /// The store could not be reached or answered with a server error: try again.
    public static var unavailable: Self { Self("unavailable") }
    /// The store refused or failed in a way trying again will not fix (permissions, a full disk).
    public static var failed: Self { Self("failed") }
    /// A presigned URL cannot be made for this lifetime or access (``PresignedAccess/validate(expires:)``).
    public static var invalidPresign: Self { Self("invalidPresign") }
    /// This store cannot serve presigned URLs (a local store without a base URL and key).
    public static var presignUnavailable: Self { Self("presignUnavailable") }
    /// A presigned request came after its URL expired.
    public static var presignExpired: Self { Self("presignExpired") }
    /// A presigned request does not match its signature: another key, method, expiry, content
    /// type or length than the ones signed, or no signature at all.
    public static var presignRefused: Self { Self("presignRefused") }
}
