import Foundation
import RestartixCore

/// A configuration value that cannot be used: a deployment defect, so the executable refuses to
/// start (500 if it ever ends a request). The detail names the key and what it must be, never
/// the value (it may be a secret).
public typealias ConfigurationError = DomainError<ConfigurationErrorDomain>

/// The `configuration` error domain.
public enum ConfigurationErrorDomain: ErrorDomain {
    public static let name = "configuration"

    /// 500: a deployment defect.
    public static func httpStatus(for code: ErrorCode<ConfigurationErrorDomain>) -> Int { 500 }
}

extension ErrorCode where Domain == ConfigurationErrorDomain {
    /// A value that does not parse or is out of range.
    public static var invalidValue: Self { Self("invalidValue") }
    /// A key that must be set (in this environment, or with another key) is not.
    public static var missing: Self { Self("missing") }
}

/// Where a service runs, from `APP_ENV`. Anything unknown is an error, never a default.
public enum DeploymentEnvironment: String, Sendable, CaseIterable {
    case development
    case test
    case staging
    case production

    /// Parses `APP_ENV`; unset or empty means development (the embedded default).
    public init(appEnv: String?) throws(ConfigurationError) {
        guard let value = appEnv?.trimmingCharacters(in: .whitespaces).lowercased(), !value.isEmpty else {
            self = .development
            return
        }
        guard let environment = DeploymentEnvironment(rawValue: value) else {
            throw ConfigurationError(.invalidValue, "APP_ENV must be one of: \(Self.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        self = environment
    }
}
