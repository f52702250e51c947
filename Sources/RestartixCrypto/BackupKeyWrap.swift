public import Crypto
public import Foundation
public import RestartixKit

/// A per-backup data key, sealed under the backup envelope key (`BACKUP_ENCRYPTION_KEY`,
/// ``Keyring/backupKey``) for the backup's manifest.
///
/// Every backup gets a fresh random 32-byte data key (its ``StreamingAEAD`` key), so the
/// envelope key only ever seals 32 bytes, and rotating it means re-wrapping manifests, never
/// re-encrypting dumps. The wrap is AES-256-GCM with a random nonce and the backup's id as
/// associated data (a wrapped key moved to another backup's manifest does not open), next to
/// the envelope key's ``keyID(of:)``: a backup made under another envelope key is refused as
/// `wrongKey`, naming both ids, before anything is decrypted, rather than as a failed tag.
public struct WrappedBackupKey: Sendable, Hashable, Codable {
    /// The envelope key's id (``keyID(of:)``): which `BACKUP_ENCRYPTION_KEY` opens this.
    public let keyID: String
    /// Nonce, ciphertext and tag of the data key (12 + 32 + 16 bytes), base64.
    public let sealed: String

    enum CodingKeys: String, CodingKey {
        case keyID = "key_id"
        case sealed
    }

    /// A 16-hex-digit id of an envelope key: the start of HMAC-SHA256(key, a fixed label).
    /// Says which key, never anything about it that helps to guess it.
    public static func keyID(of envelopeKey: SymmetricKey) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Data("restartix backup envelope key id v1".utf8), using: envelopeKey)
        return Hex.lower(mac.prefix(8))
    }

    /// A new random data key for `backupID`, and its wrap under `envelopeKey`.
    public static func generate(for backupID: String, under envelopeKey: SymmetricKey) throws(EncryptionError) -> (dataKey: SymmetricKey, wrapped: WrappedBackupKey) {
        let dataKey = SymmetricKey(size: .bits256)
        return (dataKey, try wrap(dataKey, for: backupID, under: envelopeKey))
    }

    /// Wraps `dataKey` (32 bytes) for `backupID` under `envelopeKey` (32 bytes).
    public static func wrap(_ dataKey: SymmetricKey, for backupID: String, under envelopeKey: SymmetricKey) throws(EncryptionError) -> WrappedBackupKey {
        guard envelopeKey.bitCount == 256, dataKey.bitCount == 256 else {
            throw EncryptionError(.invalidInput, "the backup envelope key and data key must be 32 bytes each")
        }
        let sealed: AES.GCM.SealedBox
        do {
            sealed = try dataKey.withUnsafeBytes { try AES.GCM.seal($0, using: envelopeKey, authenticating: associatedData(backupID)) }
        } catch {
            throw EncryptionError(.invalidInput, "AES-GCM refused to wrap the backup's data key")
        }
        guard let combined = sealed.combined else { throw EncryptionError(.invalidInput, "AES-GCM gave no combined form") }
        return WrappedBackupKey(keyID: keyID(of: envelopeKey), sealed: combined.base64EncodedString())
    }

    /// The data key, opened with `envelopeKey` for `backupID`. `wrongKey` when the backup was
    /// made under another envelope key; `authenticationFailed` when the wrap was changed or
    /// belongs to another backup; `truncated` when it is not a wrap at all.
    public func unwrap(for backupID: String, with envelopeKey: SymmetricKey) throws(EncryptionError) -> SymmetricKey {
        let loaded = Self.keyID(of: envelopeKey)
        guard loaded == keyID else {
            throw EncryptionError(.wrongKey, "the backup was made under envelope key \(keyID); the loaded BACKUP_ENCRYPTION_KEY is \(loaded)")
        }
        guard let bytes = Data(base64Encoded: sealed), bytes.count == 12 + 32 + 16 else {
            throw EncryptionError(.truncated, "the wrapped data key is not 60 bytes of base64")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: bytes)
            return SymmetricKey(data: try AES.GCM.open(box, using: envelopeKey, authenticating: Self.associatedData(backupID)))
        } catch {
            throw EncryptionError(.authenticationFailed, "the wrapped data key does not open for this backup: changed, or another backup's")
        }
    }

    private static func associatedData(_ backupID: String) -> Data { Data("restartix backup data key v1\u{0}\(backupID)".utf8) }

    private init(keyID: String, sealed: String) {
        self.keyID = keyID
        self.sealed = sealed
    }
}

extension ErrorCode where Domain == EncryptionErrorDomain {
    /// Sealed under another key than the one loaded (a backup made before a rotation of
    /// `BACKUP_ENCRYPTION_KEY`, or in another environment): the detail names both key ids.
    public static var wrongKey: Self { Self("wrongKey") }
}
