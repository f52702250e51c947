import Crypto
import Foundation
public import RestartixCrypto
public import RestartixKit

/// What a backup is: stored as JSON beside its data object, written only once the data object
/// is complete (a backup without a manifest is not a backup: an interrupted run leaves nothing
/// ``EncryptedArchive/open(id:prefix:in:envelopeKey:)`` accepts).
///
/// The manifest carries the backup's data key, wrapped under `BACKUP_ENCRYPTION_KEY`
/// (``WrappedBackupKey``), and an HMAC-SHA256 of its own canonical JSON under a key derived
/// from that data key: whoever can write the bucket but does not hold the envelope key cannot
/// change a size, a checksum or a row count without the restore refusing the manifest
/// (`manifestTampered`).
public struct BackupManifest: Codable, Sendable, Equatable {
    /// The manifest format this kit writes and reads.
    public static let currentFormat = 1

    /// ``currentFormat`` when written.
    public var format: Int
    /// What the plaintext is: `postgres-custom-dump` (`pg_dump -Fc`) or `audit-month`.
    public var kind: String
    /// The backup's id: also the streaming cipher's associated data, so a data object copied
    /// under another backup's manifest does not open.
    public var id: String
    /// When the backup started (RFC 3339, UTC).
    public var createdAt: String
    /// The data object's key in the store.
    public var object: String
    /// How the plaintext is sealed.
    public var encryption: Encryption
    /// Length and SHA-256 of the plaintext (the dump as `pg_dump` wrote it).
    public var plaintext: Digest
    /// Length and SHA-256 of the data object as stored.
    public var ciphertext: Digest
    /// The data object's parts (``partSize`` bytes each, the last one shorter): their SHA-256,
    /// which the restore checks as it reads.
    public var partSize: Int
    public var parts: [Digest]
    /// The Object Lock the objects were written under, when any.
    public var lock: ObjectLock?
    /// Where the plaintext came from (`server_version`, `pg_dump_version`,
    /// `migration_version`, `database`...).
    public var source: [String: String]
    /// Rows per table as the dump's snapshot saw them; the restore compares.
    public var rowCounts: [String: Int]
    /// HMAC-SHA256 (hex) of the manifest's canonical JSON with this field absent.
    public var mac: String?

    /// The streaming cipher and the wrapped data key.
    public struct Encryption: Codable, Sendable, Equatable {
        /// `AES256_GCM_HKDF` with ``segmentSize``: Tink's streaming AEAD (``StreamingAEAD``).
        public var scheme: String
        public var segmentSize: Int
        public var key: WrappedBackupKey
    }

    /// A length and a SHA-256 (lower-case hex).
    public struct Digest: Codable, Sendable, Equatable {
        public var length: Int
        public var sha256: String
    }

    /// The scheme name ``Encryption/scheme`` takes.
    public static let scheme = "AES256_GCM_HKDF"

    /// The manifest's canonical JSON: sorted keys, no `mac`.
    func canonicalJSON() throws -> Data {
        var unsigned = self
        unsigned.mac = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(unsigned)
    }

    /// The MAC under `dataKey` (``mac``).
    func computeMAC(dataKey: SymmetricKey) throws -> String {
        let macKey = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: dataKey, info: Data("restartix backup manifest mac v1".utf8), outputByteCount: 32
        )
        return Hex.lower(HMAC<SHA256>.authenticationCode(for: try canonicalJSON(), using: macKey))
    }

    /// The manifest as stored: pretty enough for an operator to read, MAC included.
    public func encoded() throws(BackupError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        do { return Array(try encoder.encode(self)) + [0x0A] } catch {
            throw BackupError(.invalidInput, "the manifest could not be encoded")
        }
    }

    /// Reads a stored manifest: `manifestInvalid` when it is not JSON of this shape or of a
    /// format this kit does not know. Its MAC is checked when it is opened
    /// (``EncryptedArchive/open(id:prefix:in:envelopeKey:)``), which needs the key.
    public static func decode(_ bytes: [UInt8]) throws(BackupError) -> BackupManifest {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let manifest: BackupManifest
        do { manifest = try decoder.decode(BackupManifest.self, from: Data(bytes)) } catch {
            throw BackupError(.manifestInvalid, "the manifest is not a backup manifest (malformed JSON or missing fields)")
        }
        guard manifest.format == currentFormat else {
            throw BackupError(.manifestInvalid, "manifest format \(manifest.format) is not one this kit reads (\(currentFormat))")
        }
        guard manifest.encryption.scheme == scheme else {
            throw BackupError(.manifestInvalid, "unknown encryption scheme '\(manifest.encryption.scheme.prefix(40))'")
        }
        return manifest
    }
}
