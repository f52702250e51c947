public import RestartixAWS
public import RestartixCrypto
import Crypto
public import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(CoreFoundation)
// On a clean build Swift can attribute `struct stat`'s members to CoreFoundation's module
// (whichever module's headers defined the struct first; CI's fresh clone did); member import
// visibility then refuses them unless that module is imported too.
import CoreFoundation
#endif
public import RestartixKit

/// Where the keyring comes from. Loaded once at boot; a failure stops boot with a message
/// naming the problem and never any key bytes.
///
/// - ``document(_:name:)``, ``file(path:)``, ``secretsManager(secretID:versionStage:aws:)``
///   hold the `ENCRYPTION_KEYS` document itself (on AWS the Secrets Manager secret is
///   KMS-enveloped by the service: Phase 1).
/// - ``kms(_:aws:)`` wraps one of those holding a KMS keyring document, whose keys are KMS
///   ciphertext blobs opened with `kms:Decrypt` at boot (Phase 2, Documentation/RestartixCrypto.md).
///
/// Typed values only: the library reads no environment. The executables build the source from
/// `ENCRYPTION_KEYS`, `ENCRYPTION_KEYS_FILE`, `ENCRYPTION_KEYS_SECRET_ID` or
/// `ENCRYPTION_KEYS_KMS` and the AWS keys (Documentation/Configuration.md).
public indirect enum KeyringSource: Sendable, Hashable, CustomStringConvertible, CustomReflectable {
    /// The document itself (the value of `ENCRYPTION_KEYS`); `name` is what errors call it.
    case document(String, name: String = "ENCRYPTION_KEYS")
    /// A file holding the document (a mounted secret). Files readable by group or others are
    /// refused: the keyring is the crown jewel.
    case file(path: String)
    /// An AWS Secrets Manager secret: either the document itself, or a JSON object whose
    /// `ENCRYPTION_KEYS` member is the document (with `BACKUP_ENCRYPTION_KEY` beside it).
    case secretsManager(secretID: String, versionStage: String = "AWSCURRENT", aws: AWSConfiguration)
    /// A KMS keyring document read from another source; its keys are opened with `kms:Decrypt`.
    case kms(KeyringSource, aws: AWSConfiguration)

    /// Reads, decrypts where needed, and parses the keyring.
    ///
    /// The backup key (``Keyring/backupKey``) comes from the document
    /// (`backup_encryption_key`, or `encrypted_backup_encryption_key` in a KMS document), else
    /// from the secret's `BACKUP_ENCRYPTION_KEY` member, else from `backupKey` (the
    /// `BACKUP_ENCRYPTION_KEY` variable, base64); it is optional, but one that is set and
    /// malformed, or set in two of those places with different values, stops boot like a bad
    /// column key.
    public func load(backupKey: String? = nil) async throws(EncryptionError) -> Keyring {
        let (document, member) = try await contents()
        var keyring: Keyring
        switch self {
        case .kms(_, let aws): keyring = try await KMSKeyring.open(document, aws: aws)
        default: keyring = try Keyring(json: document)
        }
        var candidates: [(origin: String, key: SymmetricKey)] = []
        if let member { candidates.append(("the secret's BACKUP_ENCRYPTION_KEY", try Keyring.backupKey(base64: member, from: "the secret's BACKUP_ENCRYPTION_KEY"))) }
        if let backupKey, !backupKey.isEmpty {
            candidates.append(("BACKUP_ENCRYPTION_KEY", try Keyring.backupKey(base64: backupKey, from: "BACKUP_ENCRYPTION_KEY")))
        }
        for candidate in candidates {
            if let loaded = keyring.backupKey {
                guard loaded == candidate.key else {
                    throw EncryptionError(.invalidKeyring, "the backup key is set twice with different values (\(candidate.origin) and an earlier source); set it in one place")
                }
            } else {
                keyring = try keyring.with(backupKey: candidate.key)
            }
        }
        return keyring
    }

    /// The kind of source and where it is; never the document.
    public var description: String {
        switch self {
        case .document(_, let name): "document(\(name))"
        case .file(let path): "file(\(path))"
        case .secretsManager(let id, let stage, _): "secretsManager(\(id), \(stage))"
        case .kms(let inner, _): "kms(\(inner))"
        }
    }

    /// `dump()` and debuggers see the description only: a document holds keys.
    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .enum) }

    /// The document text this source holds, and the `BACKUP_ENCRYPTION_KEY` member of a secret
    /// of several values.
    private func contents() async throws(EncryptionError) -> (document: Data, backupKey: String?) {
        switch self {
        case .document(let text, let name):
            guard !text.isEmpty else {
                throw EncryptionError(.keyringUnavailable, "\(name) is empty")
            }
            return (Data(text.utf8), nil)
        case .file(let path):
            return (try Self.readPrivateFile(path), nil)
        case .secretsManager(let secretID, let stage, let aws):
            let value: SecretsManagerClient.SecretValue
            do {
                value = try await SecretsManagerClient(aws).getSecretValue(secretID, versionStage: stage)
            } catch {
                throw EncryptionError(.keyringUnavailable, "the keyring secret \(secretID) could not be read: \(error)")
            }
            let data: Data
            switch value {
            case .string(let text): data = Data(text.utf8)
            case .binary(let bytes): data = bytes
            }
            // A secret of several values: {"ENCRYPTION_KEYS": "<document>", "BACKUP_ENCRYPTION_KEY": ...}.
            if let wrapper = try? JSONDecoder().decode([String: String].self, from: data), let document = wrapper["ENCRYPTION_KEYS"] {
                return (Data(document.utf8), wrapper["BACKUP_ENCRYPTION_KEY"].flatMap { $0.isEmpty ? nil : $0 })
            }
            return (data, nil)
        case .kms(let inner, _):
            if case .kms = inner { break }
            return try await inner.contents()
        }
        throw EncryptionError(.invalidKeyring, "a KMS keyring document must come from a document, a file or a secret")
    }
}

extension KeyringSource {
    /// Reads a file that only its owner may read: opened first (following symlinks, as a
    /// Kubernetes secret mount is), then checked on the open descriptor, so what is checked is
    /// what is read. Group or other permission bits, another owner, or an unreadable mode: refused.
    static func readPrivateFile(_ path: String) throws(EncryptionError) -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw EncryptionError(.keyringUnavailable, "the keyring file \(path) cannot be opened") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw EncryptionError(.keyringUnavailable, "the keyring file \(path) is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw EncryptionError(
                .keyringUnavailable,
                "the keyring file \(path) is readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it (Kubernetes: defaultMode 0400)"
            )
        }
        guard info.st_uid == getuid() else {
            throw EncryptionError(.keyringUnavailable, "the keyring file \(path) belongs to another user")
        }
        guard info.st_size <= 1 << 20 else { throw EncryptionError(.invalidKeyring, "the keyring file \(path) is larger than 1 MiB") }
        var data = Data(count: Int(info.st_size))
        let count = data.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count == Int(info.st_size) else { throw EncryptionError(.keyringUnavailable, "the keyring file \(path) could not be read") }
        return data
    }
}

/// The KMS keyring document: the `ENCRYPTION_KEYS` shape with KMS ciphertext blobs instead of
/// keys. Each blob is decrypted with an encryption context naming its role, so a blob cannot be
/// moved to another key id or used as the blind-index key:
/// `{"restartix:purpose": "column-key", "restartix:key-id": "<id>"}` for column keys,
/// `{"restartix:purpose": "blind-index-key"}` for the blind-index key and
/// `{"restartix:purpose": "backup-key"}` for the optional backup key
/// (`encrypted_backup_encryption_key`).
///
/// ```json
/// {
///   "kms_key_id": "arn:aws:kms:eu-central-1:111122223333:key/...",
///   "keys": [{"id": 2, "status": "primary", "encrypted_key": "<base64 KMS blob>"}],
///   "encrypted_blind_index_key": "<base64 KMS blob>"
/// }
/// ```
public enum KMSKeyring {
    struct Document: Decodable {
        struct Entry: Decodable {
            let id: Int64
            let status: String
            let encrypted_key: String
            let organization_id: String?
        }
        let kms_key_id: String?
        let keys: [Entry]
        let encrypted_blind_index_key: String
        let encrypted_backup_encryption_key: String?
    }

    /// The encryption context of a column key's blob; a clinic's own key (BYOK) also names
    /// the clinic, so its blob cannot be passed off as another clinic's or a platform key.
    public static func context(keyID: UInt32, organizationID: UUID? = nil) -> [String: String] {
        var context = ["restartix:purpose": "column-key", "restartix:key-id": "\(keyID)"]
        if let organizationID { context["restartix:organization-id"] = organizationID.lowercasedString }
        return context
    }

    /// The encryption context of the blind-index key's blob.
    public static let blindIndexContext = ["restartix:purpose": "blind-index-key"]

    /// The encryption context of the backup key's blob (`BACKUP_ENCRYPTION_KEY`).
    public static let backupKeyContext = ["restartix:purpose": "backup-key"]

    static func open(_ json: Data, aws: AWSConfiguration) async throws(EncryptionError) -> Keyring {
        let document: Document
        do { document = try JSONDecoder().decode(Document.self, from: json) } catch {
            throw EncryptionError(.invalidKeyring, "the KMS keyring is not a JSON document of the documented shape (keys[].encrypted_key, encrypted_blind_index_key)")
        }
        let client: KMSClient
        do {
            client = try await KMSClient(aws)
        } catch {
            throw EncryptionError(.keyringUnavailable, "KMS is misconfigured: \(error)")
        }
        func decrypt(_ base64: String, _ context: [String: String], _ what: String) async throws(EncryptionError) -> SymmetricKey {
            guard let blob = Data(base64Encoded: base64) else { throw EncryptionError(.invalidKeyring, "\(what) is not base64") }
            do {
                return SymmetricKey(data: try await client.decrypt(blob, keyID: document.kms_key_id, encryptionContext: context))
            } catch {
                throw EncryptionError(.keyringUnavailable, "KMS could not decrypt \(what): \(error)")
            }
        }
        var keys: [Keyring.Entry] = []
        for entry in document.keys {
            let (id, status) = try Keyring.validated(id: entry.id, status: entry.status)
            let organization = try Keyring.organization(entry.organization_id, key: id)
            let key = try await decrypt(entry.encrypted_key, context(keyID: id, organizationID: organization), "key \(id)")
            keys.append(Keyring.Entry(id: id, status: status, key: key, organizationID: organization))
        }
        let blind = try await decrypt(document.encrypted_blind_index_key, blindIndexContext, "the blind-index key")
        var backup: SymmetricKey?
        if let blob = document.encrypted_backup_encryption_key {
            backup = try await decrypt(blob, backupKeyContext, "the backup key")
        }
        return try Keyring(entries: keys, blindIndexKey: blind, backupKey: backup)
    }
}
