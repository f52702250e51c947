public import Configuration
public import Foundation
public import Logging
public import RestartixKit

/// Which executable reads a key.
public enum Executable: String, Sendable, Hashable, CaseIterable, Comparable {
    case coreAPI = "restartix-core-api"
    case telemetryAPI = "restartix-telemetry-api"
    case jobs = "restartix-jobs"

    public static func < (lhs: Executable, rhs: Executable) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One configuration key of the executables: its name (the environment variable), what it
/// means, its default, whether it is a secret (never printed, never in an error), and who
/// reads it. ``ServiceKeys/all`` lists every one, and Documentation/Configuration.md is
/// generated from that list (a test fails when the page is stale).
public struct ServiceKey: Sendable, Hashable {
    /// The environment variable.
    public let name: String
    /// What it sets.
    public let meaning: String
    /// The value when unset, in words.
    public let defaultValue: String
    /// A secret: swift-configuration redacts it in its access logs, and the kit's errors name
    /// the key, never the value.
    public let isSecret: Bool
    /// The executables that read it.
    public let usedBy: Set<Executable>

    init(_ name: String, _ meaning: String, default defaultValue: String = "unset", secret: Bool = false, _ usedBy: Set<Executable>) {
        self.name = name
        self.meaning = meaning
        self.defaultValue = defaultValue
        self.isSecret = secret
        self.usedBy = usedBy
    }
}

/// The executables' one configuration layer: swift-configuration's `ConfigReader` over the
/// process environment, with every secret key marked, and typed readers for what more than one
/// executable reads (listen address, log level and format, the environment, pool sizes). Each
/// executable turns it into its own typed configuration; the libraries never read the
/// environment themselves.
public struct ServiceEnvironment: Sendable {
    /// The underlying reader (redacts the keys ``ServiceKeys/all`` marks secret).
    public let reader: ConfigReader
    /// The configuration in `variables` (the process environment by default).
    public init(_ variables: [String: String] = ProcessInfo.processInfo.environment) {
        let secrets = Set(ServiceKeys.all.filter(\.isSecret).map(\.name))
        self.reader = ConfigReader(
            provider: EnvironmentVariablesProvider(environmentVariables: variables, secretsSpecifier: .specific(secrets))
        )
    }

    /// The value of `key`, trimmed; nil when unset or empty (an empty variable counts as unset,
    /// as a shell's `VAR=` does).
    public func string(_ key: String) -> String? {
        value(key, isSecret: ServiceKeys.secretNames.contains(key))
    }

    /// The value of `key` read as a secret whatever ``ServiceKeys`` says of it (for a variable
    /// an operator names, such as `restartix-jobs restore --backup-key-variable`), trimmed; nil
    /// when unset or empty.
    public func secret(_ key: String) -> String? {
        value(key, isSecret: true)
    }

    private func value(_ key: String, isSecret: Bool) -> String? {
        guard let value = reader.string(forKey: ConfigKey(key), isSecret: isSecret)?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
            return nil
        }
        return value
    }

    /// The integer in `key` within `range`, or nil when unset.
    public func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw ConfigurationError(.invalidValue, "\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// The embedded default's SQLite file when `RESTARTIX_SQLITE_PATH` is unset.
    public static let defaultSQLitePath = ".restartix/restartix.sqlite"

    /// `RESTARTIX_SQLITE_PATH`: the embedded default's SQLite file (``defaultSQLitePath``
    /// unless set); its folder also holds the local keyring and the development token secret.
    public func sqlitePath() -> String {
        string("RESTARTIX_SQLITE_PATH") ?? Self.defaultSQLitePath
    }

    /// `APP_ENV`: development (the default), test, staging or production.
    public func deployment() throws(ConfigurationError) -> DeploymentEnvironment {
        try DeploymentEnvironment(appEnv: string("APP_ENV"))
    }

    /// `HOST` and `PORT`: where to listen (`127.0.0.1` by default; a container behind a load
    /// balancer sets `HOST=0.0.0.0`).
    public func listenAddress(defaultPort: Int) throws(ConfigurationError) -> (host: String, port: Int) {
        (string("HOST") ?? "127.0.0.1", try int("PORT", in: 0...65535) ?? defaultPort)
    }

    /// `LOG_LEVEL` (`info` by default): one of swift-log's levels; anything else is an error,
    /// in every executable.
    public func logLevel() throws(ConfigurationError) -> Logger.Level {
        guard let text = string("LOG_LEVEL") else { return .info }
        guard let level = Logger.Level(rawValue: text.lowercased()) else {
            throw ConfigurationError(.invalidValue, "LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
        }
        return level
    }

    /// `LOG_FORMAT`: `json` (one JSON object a line, what the platform's log pipeline reads)
    /// or `text`; by default JSON in staging and production, text elsewhere.
    public func logFormat(for deployment: DeploymentEnvironment) throws(ConfigurationError) -> LogFormat {
        guard let text = string("LOG_FORMAT") else { return deployment == .staging || deployment == .production ? .json : .text }
        guard let format = LogFormat(rawValue: text.lowercased()) else {
            throw ConfigurationError(.invalidValue, "LOG_FORMAT must be json or text")
        }
        return format
    }

    /// A token secret and, during a rotation, the previous one (`<variable>_PREVIOUS`), the
    /// current first, as the token types' `init(secrets:)` take them; nil when neither is set.
    /// Each must be at least 32 bytes, and a previous one needs a current one; the error names
    /// the variable and the rule, never the value.
    public func tokenSecrets(_ variable: String) throws(ConfigurationError) -> [String]? {
        let previousVariable = variable + "_PREVIOUS"
        let current = string(variable), previous = string(previousVariable)
        guard let current else {
            if previous != nil { throw ConfigurationError(.missing, "\(previousVariable) is set without \(variable): set the new secret in \(variable)") }
            return nil
        }
        for (name, secret) in [(variable, current), (previousVariable, previous)] {
            if let secret, secret.utf8.count < 32 {
                throw ConfigurationError(.invalidValue, "\(name) is \(secret.utf8.count) bytes; token secrets are at least 32")
            }
        }
        return [current] + (previous.map { [$0] } ?? [])
    }

    /// The pool size for a role's database: `DB_POOL_MAX` (admin and owner pools) or
    /// `DB_APP_POOL_MAX` (the app role's pool), applied to `configuration` when set.
    public func applyPoolSize(_ key: String, to configuration: inout DatabaseConfiguration) throws(ConfigurationError) {
        if let size = try int(key, in: 1...1000) { configuration.maximumConnections = size }
    }
}

/// Ends the process with status 1 and one line on standard error: `executable: error`. The
/// kit's errors describe themselves safely (names, never values or secrets).
public func exitWithError(_ executable: Executable, _ error: any Error) -> Never {
    LogWriter.standardError.flush()  // the log lines before it, in order
    FileHandle.standardError.write(Data("\(executable.rawValue): \(error)\n".utf8))
    exit(1)
}
