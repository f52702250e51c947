public import Foundation

/// Where the keyring document comes from. Loaded once at boot; a failure stops boot with a
/// message naming the problem and never any key bytes.
///
/// AWS Secrets Manager and direct KMS sources arrive with the AWS clients (the crypto issue).
public enum KeyringSource: Sendable, Hashable {
    /// An environment variable holding the document (`ENCRYPTION_KEYS`).
    case environment(variable: String = "ENCRYPTION_KEYS")
    /// A file holding the document (a mounted secret). Files readable by group or others are
    /// refused: the keyring is the crown jewel.
    case file(path: String)

    /// Reads and parses the keyring.
    public func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws(EncryptionError) -> Keyring {
        switch self {
        case .environment(let variable):
            guard let text = environment[variable], !text.isEmpty else {
                throw EncryptionError(.keyringUnavailable, "\(variable) is not set")
            }
            return try Keyring(json: Data(text.utf8))
        case .file(let path):
            let attributes: [FileAttributeKey: Any]
            do {
                attributes = try FileManager.default.attributesOfItem(atPath: path)
            } catch {
                throw EncryptionError(.keyringUnavailable, "the keyring file \(path) cannot be read")
            }
            if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
                throw EncryptionError(.keyringUnavailable, "the keyring file \(path) is readable by group or others (mode \(String(mode, radix: 8))); chmod 600 it")
            }
            if let size = attributes[.size] as? Int, size > 1 << 20 {
                throw EncryptionError(.invalidKeyring, "the keyring file \(path) is larger than 1 MiB")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw EncryptionError(.keyringUnavailable, "the keyring file \(path) cannot be read")
            }
            return try Keyring(json: data)
        }
    }
}
