public import Crypto
public import Foundation
public import RestartixCrypto
public import RestartixKit

/// Encrypted archives in an object store: a data object sealed with ``StreamingAEAD`` under a
/// fresh per-archive key, and a ``BackupManifest`` beside it that holds the key (wrapped under
/// the envelope key), the sizes and the checksums.
///
/// Layout under a prefix: `{prefix}/{id}/data.enc` and `{prefix}/{id}/manifest.json`, the
/// manifest written last. ``EncryptedArchiveWriter`` streams in; ``OpenedArchive/read(into:)``
/// streams out. Memory is one part (``EncryptedArchiveWriter/defaultPartSize``) and one
/// segment, whatever the archive's size.
public enum EncryptedArchive {
    /// The data object's key.
    public static func objectKey(prefix: String, id: String) throws(BackupError) -> ObjectKey {
        try key(prefix, id, "data.enc")
    }

    /// The manifest's key.
    public static func manifestKey(prefix: String, id: String) throws(BackupError) -> ObjectKey {
        try key(prefix, id, "manifest.json")
    }

    private static func key(_ prefix: String, _ id: String, _ name: String) throws(BackupError) -> ObjectKey {
        try validate(id: id)
        do { return try ObjectKey("\(prefix)/\(id)/\(name)") } catch {
            throw BackupError(.invalidInput, "the backup prefix is not a valid object key prefix")
        }
    }

    /// An id is 1 to 100 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
    public static func validate(id: String) throws(BackupError) {
        let allowed = id.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x2E || byte == 0x5F
        }
        guard (1...100).contains(id.utf8.count), allowed, !id.hasPrefix(".") else {
            throw BackupError(.invalidInput, "a backup id is 1 to 100 letters, digits, '.', '_' or '-'")
        }
    }

    /// A new id: the UTC time to the millisecond, then 8 random hex digits (ids sort by time).
    public static func makeID(at date: Date = Date()) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond], from: date)
        func two(_ value: Int?) -> String { let v = value ?? 0; return v < 10 ? "0\(v)" : "\(v)" }
        let millis = (c.nanosecond ?? 0) / 1_000_000
        let three = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        var random = SystemRandomNumberGenerator()
        let suffix = Hex.lower((0..<4).map { _ in UInt8.random(in: 0...255, using: &random) })
        return "\(c.year ?? 0)\(two(c.month))\(two(c.day))T\(two(c.hour))\(two(c.minute))\(two(c.second))\(three)Z-\(suffix)"
    }

    /// The ids of the archives under `prefix` that have a manifest, oldest first.
    public static func list(in store: any ObjectStore, prefix: String) async throws(BackupError) -> [String] {
        let objects: [ObjectInfo]
        do { objects = try await store.list(prefix: prefix + "/") } catch {
            throw BackupError(error, while: "listing the backups")
        }
        return objects.compactMap { info -> String? in
            let parts = info.key.value.dropFirst(prefix.count + 1).split(separator: "/")
            guard parts.count == 2, parts[1] == "manifest.json" else { return nil }
            return String(parts[0])
        }.sorted()
    }

    /// Reads the manifest of archive `id`, opens its data key with `envelopeKey` and checks the
    /// manifest's MAC. Throws `notFound`, `manifestInvalid`, `wrongKey` (another envelope key:
    /// both ids named), `manifestTampered`; nothing of the data object is read yet.
    public static func open(id: String, prefix: String, in store: any ObjectStore, envelopeKey: SymmetricKey) async throws(BackupError) -> OpenedArchive {
        let manifestKey = try manifestKey(prefix: prefix, id: id)
        let bytes: [UInt8]?
        do { bytes = try await store.get(manifestKey) } catch { throw BackupError(error, while: "reading the manifest of backup \(id)") }
        guard let bytes else { throw BackupError(.notFound, "there is no backup \(id) (no \(manifestKey))") }
        let manifest = try BackupManifest.decode(bytes)
        guard manifest.id == id, manifest.object == (try objectKey(prefix: prefix, id: id)).value else {
            throw BackupError(.manifestTampered, "the manifest at \(manifestKey) describes another backup")
        }
        let dataKey: SymmetricKey
        do { dataKey = try manifest.encryption.key.unwrap(for: id, with: envelopeKey) } catch {
            throw BackupError(error, while: "opening backup \(id)'s data key")
        }
        let expected: String
        do { expected = try manifest.computeMAC(dataKey: dataKey) } catch {
            throw BackupError(.manifestInvalid, "the manifest of backup \(id) could not be re-encoded")
        }
        guard let mac = manifest.mac, constantTimeEqual(mac, expected) else {
            throw BackupError(.manifestTampered, "the manifest of backup \(id) was changed after it was written (its MAC does not verify)")
        }
        let aead: StreamingAEAD
        do { aead = try StreamingAEAD(key: dataKey, segmentSize: manifest.encryption.segmentSize) } catch {
            throw BackupError(.manifestInvalid, "backup \(id): \(error.detail)")
        }
        guard manifest.partSize > 0 else { throw BackupError(.manifestInvalid, "backup \(id): part size \(manifest.partSize)") }
        return OpenedArchive(manifest: manifest, store: store, aead: aead, objectKey: try objectKey(prefix: prefix, id: id))
    }
}

extension EncryptedArchive {
    /// Checks archive `id` whole without using it: the manifest's key and MAC, every segment,
    /// every part's and the plaintext's checksum (``OpenedArchive/read(into:)`` into nothing).
    /// Returns the manifest.
    public static func verify(id: String, prefix: String, in store: any ObjectStore, envelopeKey: SymmetricKey) async throws(BackupError) -> BackupManifest {
        let archive = try await open(id: id, prefix: prefix, in: store, envelopeKey: envelopeKey)
        try await archive.read { (_: [UInt8]) throws(BackupError) in }
        return archive.manifest
    }
}

/// An archive whose manifest checked out (``EncryptedArchive/open(id:prefix:in:envelopeKey:)``).
public struct OpenedArchive: Sendable {
    /// The verified manifest.
    public let manifest: BackupManifest
    let store: any ObjectStore
    let aead: StreamingAEAD
    let objectKey: ObjectKey

    /// Reads the data object part by part, opens it and hands the plaintext to `sink` in
    /// order, authenticated segment by segment (nothing unauthenticated ever reaches `sink`).
    /// Ends with the checks against the manifest: the object's length and parts' SHA-256, the
    /// plaintext's length and SHA-256. A damaged object fails with the cipher's code
    /// (`authenticationFailed`, `segmentMissing`, `segmentsReordered`, `truncated`,
    /// `trailingData`) first, `manifestMismatch` when it opens but differs from the manifest.
    /// To check a backup without using it, pass a sink that does nothing.
    public func read(into sink: ([UInt8]) async throws(BackupError) -> Void) async throws(BackupError) {
        let id = manifest.id
        let info: ObjectInfo?
        do { info = try await store.head(objectKey) } catch { throw BackupError(error, while: "looking up backup \(id)'s data") }
        guard let info else { throw BackupError(.notFound, "backup \(id) has a manifest but its data object \(objectKey) is gone") }
        var decryptor = aead.makeDecryptor(associatedData: Data(id.utf8))
        var plainHash = SHA256(), cipherHash = SHA256()
        var plainLength = 0, cipherLength = 0
        var firstBadPart: Int?
        var plaintext: [UInt8] = []
        plaintext.reserveCapacity(manifest.partSize + aead.segmentSize)
        var offset = 0, part = 0
        while offset < info.size {
            let end = min(offset + manifest.partSize, info.size)
            let bytes: [UInt8]?
            do { bytes = try await store.read(objectKey, range: offset..<end) } catch {
                throw BackupError(error, while: "reading backup \(id) at byte \(offset)")
            }
            guard let bytes, !bytes.isEmpty else { break }
            cipherHash.update(data: bytes)
            cipherLength += bytes.count
            if firstBadPart == nil, part >= manifest.parts.count || manifest.parts[part] != BackupManifest.Digest(length: bytes.count, sha256: Hex.lower(SHA256.hash(data: bytes))) {
                firstBadPart = part
            }
            plaintext.removeAll(keepingCapacity: true)
            do { try decryptor.update(bytes, appendingTo: &plaintext) } catch {
                throw BackupError(error, while: "opening backup \(id)")
            }
            if !plaintext.isEmpty {
                plainHash.update(data: plaintext)
                plainLength += plaintext.count
                try await sink(plaintext)
            }
            offset += bytes.count
            part += 1
        }
        plaintext.removeAll(keepingCapacity: true)
        do { try decryptor.finish(appendingTo: &plaintext) } catch {
            // An object cut inside a segment leaves a last piece that opens as nothing, which
            // the cipher alone can only call unauthentic; the manifest knows the length.
            if error.code == .authenticationFailed, cipherLength < manifest.ciphertext.length {
                throw BackupError(.truncated, "opening backup \(id): the object ends at byte \(cipherLength) of the \(manifest.ciphertext.length) its manifest records")
            }
            throw BackupError(error, while: "opening backup \(id)")
        }
        if !plaintext.isEmpty {
            plainHash.update(data: plaintext)
            plainLength += plaintext.count
            try await sink(plaintext)
        }
        // The cipher accepted every byte: what is left to disagree is the manifest.
        if let firstBadPart {
            throw BackupError(.manifestMismatch, "backup \(id): part \(firstBadPart + 1) is not the part the manifest records")
        }
        guard part == manifest.parts.count, cipherLength == manifest.ciphertext.length, Hex.lower(cipherHash.finalize()) == manifest.ciphertext.sha256 else {
            throw BackupError(.manifestMismatch, "backup \(id): the data object (\(cipherLength) bytes in \(part) parts) is not the one the manifest records (\(manifest.ciphertext.length) bytes in \(manifest.parts.count) parts)")
        }
        guard plainLength == manifest.plaintext.length, Hex.lower(plainHash.finalize()) == manifest.plaintext.sha256 else {
            throw BackupError(.manifestMismatch, "backup \(id): the plaintext (\(plainLength) bytes) is not the one the manifest records (\(manifest.plaintext.length) bytes)")
        }
    }
}

/// Writes one archive: ``begin(id:kind:prefix:in:envelopeKey:lock:partSize:segmentSize:)``, then
/// ``write(_:)`` as the plaintext comes, then ``finish(source:rowCounts:)`` (or ``abort()``).
/// The data object becomes visible only when complete, the manifest after it; a run that dies
/// before ``finish(source:rowCounts:)`` returns leaves no manifest, so no backup a restore
/// would take. Not for use from two tasks at once.
public final class EncryptedArchiveWriter {
    /// The part size: the S3 multipart part and the unit of the manifest's checksums.
    public static let defaultPartSize = 8 << 20

    /// The archive's id.
    public let id: String
    private let kind: String
    private let prefix: String
    private let store: any ObjectStore
    private let lock: ObjectLock?
    private let partSize: Int
    private let segmentSize: Int
    private let createdAt: Date
    private let dataKey: SymmetricKey
    private let wrapped: WrappedBackupKey
    private let encryptor: StreamEncryptor
    private let upload: any ObjectUpload
    private var pending: [UInt8] = []
    private var parts: [BackupManifest.Digest] = []
    private var plainHash = SHA256(), cipherHash = SHA256()
    private var plainLength = 0, cipherLength = 0
    private var ended = false

    private init(
        id: String, kind: String, prefix: String, store: any ObjectStore, lock: ObjectLock?, partSize: Int, segmentSize: Int,
        dataKey: SymmetricKey, wrapped: WrappedBackupKey, encryptor: StreamEncryptor, upload: any ObjectUpload
    ) {
        self.id = id
        self.kind = kind
        self.prefix = prefix
        self.store = store
        self.lock = lock
        self.partSize = partSize
        self.segmentSize = segmentSize
        self.createdAt = Date()
        self.dataKey = dataKey
        self.wrapped = wrapped
        self.encryptor = encryptor
        self.upload = upload
        pending.reserveCapacity(partSize + segmentSize)
    }

    /// Starts archive `id` (a fresh data key wrapped under `envelopeKey`, the data object's
    /// upload begun). `lock` applies to both objects.
    public static func begin(
        id: String, kind: String, prefix: String, in store: any ObjectStore, envelopeKey: SymmetricKey, lock: ObjectLock? = nil,
        partSize: Int = defaultPartSize, segmentSize: Int = StreamingAEAD.defaultSegmentSize
    ) async throws(BackupError) -> EncryptedArchiveWriter {
        guard (1024...(1 << 32)).contains(partSize) else {
            throw BackupError(.invalidInput, "the part size must be 1 KiB to 4 GiB, not \(partSize)")
        }
        let objectKey = try EncryptedArchive.objectKey(prefix: prefix, id: id)
        let manifestKey = try EncryptedArchive.manifestKey(prefix: prefix, id: id)
        let existing: ObjectInfo?
        do { existing = try await store.head(manifestKey) } catch { throw BackupError(error, while: "checking backup \(id)") }
        guard existing == nil else { throw BackupError(.invalidInput, "backup \(id) exists already") }
        let generated: (dataKey: SymmetricKey, wrapped: WrappedBackupKey)
        let aead: StreamingAEAD
        do {
            generated = try WrappedBackupKey.generate(for: id, under: envelopeKey)
            aead = try StreamingAEAD(key: generated.dataKey, segmentSize: segmentSize)
        } catch { throw BackupError(.invalidInput, error.detail) }
        let upload: any ObjectUpload
        do {
            upload = try await store.beginUpload(objectKey, options: ObjectPutOptions(contentType: "application/octet-stream", lock: lock))
        } catch { throw BackupError(error, while: "starting the upload of backup \(id)") }
        return EncryptedArchiveWriter(
            id: id, kind: kind, prefix: prefix, store: store, lock: lock, partSize: partSize, segmentSize: segmentSize,
            dataKey: generated.dataKey, wrapped: generated.wrapped, encryptor: aead.makeEncryptor(associatedData: Data(id.utf8)), upload: upload
        )
    }

    /// Seals and uploads `plaintext` (in whole parts; less than a part stays buffered).
    public func write(_ plaintext: [UInt8]) async throws(BackupError) {
        guard !ended else { throw BackupError(.invalidInput, "backup \(id) is finished") }
        plainHash.update(data: plaintext)
        plainLength += plaintext.count
        do { try encryptor.update(plaintext, appendingTo: &pending) } catch { throw BackupError(.invalidInput, error.detail) }
        try await flush(final: false)
    }

    private func flush(final: Bool) async throws(BackupError) {
        var start = 0
        while pending.count - start >= partSize || (final && start < pending.count) {
            let end = min(start + partSize, pending.count)
            let part = Array(pending[start..<end])
            parts.append(BackupManifest.Digest(length: part.count, sha256: Hex.lower(SHA256.hash(data: part))))
            cipherHash.update(data: part)
            cipherLength += part.count
            // One part goes up while the next is read and sealed: waiting for each upload
            // before reading on would stall the producer (pg_dump blocks on its full pipe) for
            // every part's round trip. At most one part in flight, so memory stays two parts.
            try await awaitUpload()
            let upload = self.upload, number = parts.count
            inFlight = (number, Task { try await upload.write(part) })
            start = end
        }
        if start > 0 { pending.removeFirst(start) }
    }

    /// The part upload in flight, if any: its number and task.
    private var inFlight: (number: Int, task: Task<Void, any Error>)?

    /// Waits for the part in flight; its failure is this archive's.
    private func awaitUpload() async throws(BackupError) {
        guard let (number, task) = inFlight else { return }
        inFlight = nil
        do { try await task.value } catch let error as ObjectStoreError {
            throw BackupError(error, while: "uploading part \(number) of backup \(id)")
        } catch {
            throw BackupError(.storage, "uploading part \(number) of backup \(id) failed")
        }
    }

    /// Seals the last segment, completes the data object, then writes the manifest (with
    /// `source` and `rowCounts`) and returns it. After this the backup exists.
    public func finish(source: [String: String], rowCounts: [String: Int]) async throws(BackupError) -> BackupManifest {
        guard !ended else { throw BackupError(.invalidInput, "backup \(id) is finished") }
        do { try encryptor.finish(appendingTo: &pending) } catch { throw BackupError(.invalidInput, error.detail) }
        try await flush(final: true)
        try await awaitUpload()
        ended = true
        do { _ = try await upload.complete() } catch { throw BackupError(error, while: "completing backup \(id)'s data object") }
        var manifest = BackupManifest(
            format: BackupManifest.currentFormat, kind: kind, id: id, createdAt: RFC3339UTC.string(createdAt),
            object: (try EncryptedArchive.objectKey(prefix: prefix, id: id)).value,
            encryption: .init(scheme: BackupManifest.scheme, segmentSize: segmentSize, key: wrapped),
            plaintext: .init(length: plainLength, sha256: Hex.lower(plainHash.finalize())),
            ciphertext: .init(length: cipherLength, sha256: Hex.lower(cipherHash.finalize())),
            partSize: partSize, parts: parts, lock: lock, source: source, rowCounts: rowCounts, mac: nil
        )
        do { manifest.mac = try manifest.computeMAC(dataKey: dataKey) } catch {
            throw BackupError(.invalidInput, "the manifest could not be encoded")
        }
        let bytes = try manifest.encoded()
        let manifestKey = try EncryptedArchive.manifestKey(prefix: prefix, id: id)
        do {
            try await store.put(bytes, at: manifestKey, options: ObjectPutOptions(contentType: "application/json", lock: lock))
        } catch { throw BackupError(error, while: "writing backup \(id)'s manifest") }
        return manifest
    }

    /// Drops the upload: nothing of this archive is stored.
    public func abort() async {
        guard !ended else { return }
        ended = true
        if let (_, task) = inFlight {
            inFlight = nil
            _ = await task.result
        }
        await upload.abort()
    }
}

/// Compares two MACs in time that does not depend on where they differ.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    guard x.count == y.count else { return false }
    var difference: UInt8 = 0
    for index in x.indices { difference |= x[index] ^ y[index] }
    return difference == 0
}

/// RFC 3339 in UTC to the second.
enum RFC3339UTC {
    static func string(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
