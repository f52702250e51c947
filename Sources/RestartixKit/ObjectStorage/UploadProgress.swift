import Crypto

/// An upload's life, as every store's upload keeps it: the bytes accepted (counted and hashed),
/// ended once (completed or aborted), and broken by a write that failed, after which what the
/// store holds is unknown and only an abort is left. The stores keep it behind their lock, with
/// whatever else they need (the local file, S3's buffer and parts).
package struct UploadProgress: Sendable {
    private var hash = SHA256()
    private var size = 0
    private var ended = false
    private var broken = false

    package init() {}

    /// Throws `uploadFinished` once the upload has ended or broken.
    package func checkUsable() throws(ObjectStoreError) {
        guard !ended else { throw ObjectStoreError(.uploadFinished, "the upload was completed or aborted") }
        guard !broken else { throw ObjectStoreError(.uploadFinished, "an earlier write of this upload failed: abort it and start again") }
    }

    /// Counts and hashes bytes the store has accepted.
    package mutating func record(_ bytes: [UInt8]) {
        hash.update(data: bytes)
        size += bytes.count
    }

    /// A write failed: nothing but an abort is left.
    package mutating func markBroken() { broken = true }

    /// Ends the upload for its completion: the SHA-256 (lower-case hex) and size of every byte
    /// recorded; throws as ``checkUsable()`` does when it cannot complete.
    package mutating func complete() throws(ObjectStoreError) -> (sha256: String, size: Int) {
        try checkUsable()
        ended = true
        return (Hex.lower(hash.finalize()), size)
    }

    /// Ends the upload for an abort; `false` when it had ended already (nothing to discard).
    package mutating func abort() -> Bool {
        defer { ended = true }
        return !ended
    }
}
