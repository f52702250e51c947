public import Foundation

/// Secrets the embedded default generates for itself: random values written once into private
/// files (mode 0600, in a private directory) beside the SQLite file, which every process of the
/// machine's embedded default reads, so the Core API, the Telemetry API and `restartix-jobs`
/// agree on them without configuration. For development and test only: a shared environment
/// sets each secret's variable.
public enum LocalSecrets {
    /// The telemetry session tokens' secret (`TELEMETRY_SESSION_TOKEN_SECRET` when unset).
    public static let telemetrySessionSecret = "telemetry-session-secret"
    /// The service-account tokens' secret (`TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` when unset).
    public static let serviceAccountSecret = "service-account-secret"
    /// The local development issuer's secret (`RESTARTIX_DEV_TOKEN_SECRET` when unset).
    public static let devTokenSecret = "dev-token-secret"

    /// The secret in `directory/name`: 32 random bytes in base64, generated the first time.
    /// `what` names it in errors (which name the path, never the value).
    public static func secret(named name: String, what: String, in directory: URL) throws(ConfigurationError) -> String {
        let path = directory.appendingPathComponent(name).path
        let made = publishPrivateFileOnce(named: name, in: directory) {
            Data(Data((0..<32).map { _ in UInt8.random(in: .min ... .max) }).base64EncodedString().utf8)
        }
        guard made != .failed else {
            throw ConfigurationError(.invalidValue, "could not write the \(what) \(path)")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8), text.utf8.count >= 32 else {
            throw ConfigurationError(.invalidValue, "the \(what) \(path) cannot be read")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// What ``publishPrivateFileOnce(named:in:contents:)`` did.
    public enum Publication: Sendable {
        case created, existed, failed
    }

    /// Makes `directory/name` (mode 0600, in a private directory) from `contents` unless it
    /// exists. Published atomically and exclusively: written whole to a temporary file, then
    /// linked to its name, which fails if another process got there first; two processes
    /// starting on one embedded default at once end up with one file, complete.
    public static func publishPrivateFileOnce(named name: String, in directory: URL, contents: () -> Data) -> Publication {
        let path = directory.appendingPathComponent(name).path
        guard !FileManager.default.fileExists(atPath: path) else { return .existed }
        do { try SQLiteConfiguration.preparePrivateDirectory(directory.path) } catch { return .failed }
        let temporary = directory.appendingPathComponent(".\(name)-\(UUID().uuidString)").path
        defer { unlink(temporary) }
        guard FileManager.default.createFile(atPath: temporary, contents: contents(), attributes: [.posixPermissions: 0o600]) else { return .failed }
        if link(temporary, path) == 0 { return .created }
        return errno == EEXIST ? .existed : .failed
    }
}
