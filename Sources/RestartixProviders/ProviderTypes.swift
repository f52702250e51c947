public import Foundation
public import RestartixKit

/// The two kinds of provider name, for ``ProviderName``.
public protocol ProviderNameRole: Sendable {
    /// What a name of this role is called in errors ("capability").
    static var noun: String { get }
}

/// A name stored in `platform_service_providers`: `^[a-z][a-z0-9_]{0,31}$`, as the table's
/// check constraint says. An open set: any valid name works, the common ones are constants.
public struct ProviderName<Role: ProviderNameRole>: Sendable, Hashable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The stored name.
    public let name: String

    /// A name, checked.
    public init(_ name: String) throws(ProviderError) {
        guard Self.valid(name) else {
            throw ProviderError(.invalidArgument, "a \(Role.noun) is 1-32 characters of a-z, 0-9 and _, starting with a letter")
        }
        self.name = name
    }

    /// A name written in code; a bad literal is a programming error.
    public init(stringLiteral value: String) {
        precondition(Self.valid(value), "invalid provider \(Role.noun) literal")
        self.name = value
    }

    static func valid(_ name: String) -> Bool {
        guard (1...32).contains(name.utf8.count), let first = name.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) else { return false }
        return name.utf8.allSatisfy { (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_") }
    }

    public var description: String { name }
}

/// The role of capability names.
public enum CapabilityRole: ProviderNameRole {
    public static let noun = "capability"
}

/// The role of provider-kind names.
public enum KindRole: ProviderNameRole {
    public static let noun = "provider kind"
}

/// What a provider does for the platform (`email`, `objectstore`, `auth`, `video`, `ai`, ...).
public typealias ProviderCapability = ProviderName<CapabilityRole>

/// Which service implements a capability (`ses`, `s3`, `clerk`, `daily`, `anthropic`, ...).
public typealias ProviderKind = ProviderName<KindRole>

extension ProviderName where Role == CapabilityRole {
    /// Transactional email (SES).
    public static let email: ProviderCapability = "email"
    /// Object storage (S3).
    public static let objectstore: ProviderCapability = "objectstore"
    /// Authentication (Clerk).
    public static let auth: ProviderCapability = "auth"
    /// Video calls (Daily).
    public static let video: ProviderCapability = "video"
    /// Inference (Anthropic).
    public static let ai: ProviderCapability = "ai"
}

extension ProviderName where Role == KindRole {
    /// Amazon SES.
    public static let ses: ProviderKind = "ses"
    /// Amazon S3 (or a compatible store).
    public static let s3: ProviderKind = "s3"
    /// Clerk.
    public static let clerk: ProviderKind = "clerk"
    /// Daily.
    public static let daily: ProviderKind = "daily"
    /// Anthropic.
    public static let anthropic: ProviderKind = "anthropic"
}

/// A provider's health as `check-providers` last saw it.
public enum ProviderStatus: String, Sendable, Hashable, CaseIterable {
    /// Answering.
    case active
    /// Failing, not yet for long enough to be called down.
    case degraded
    /// Failed the configured number of checks in a row.
    case down
}

/// A provider's secrets (API keys, access keys), decrypted. Never printed: `description`,
/// `debugDescription` and `dump()` show the field names only.
public struct ProviderSecrets: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable, Codable {
    /// The secret values by name (`api_key`, `access_key_id`, `secret_access_key`).
    public var values: [String: String]

    /// Secrets by name.
    public init(_ values: [String: String] = [:]) { self.values = values }

    /// The value named `name`, nil when absent or empty.
    public subscript(name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    public var description: String { "ProviderSecrets(\(values.keys.sorted().joined(separator: ", ")): <redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["names": values.keys.sorted()], displayStyle: .struct) }

    public init(from decoder: any Decoder) throws { values = try [String: String](from: decoder) }
    public func encode(to encoder: any Encoder) throws { try values.encode(to: encoder) }
}

/// One row of `platform_service_providers`, its credentials decrypted.
public struct ProviderRecord: Sendable, Hashable {
    /// The row id (the credentials are bound to it).
    public var id: UUID
    /// What it provides.
    public var capability: ProviderCapability
    /// The clinic this row overrides the platform default for; nil for the platform default.
    public var organizationID: UUID?
    /// Which service it is.
    public var kind: ProviderKind
    /// Non-secret settings (`from_address`, `bucket`, `endpoint_url`, `region`...).
    public var config: [String: String]
    /// Secret settings, decrypted.
    public var secrets: ProviderSecrets
    /// Health as last checked.
    public var status: ProviderStatus
    /// When `check-providers` last probed it.
    public var lastCheckedAt: Date?
    /// What the last failing probe said (never a secret).
    public var lastError: String?
    /// When the row last changed.
    public var updatedAt: Date
    /// Bumped by every rotation.
    public var version: Int

    /// A record from its parts (the registry makes them from rows; tests and tools may too).
    public init(
        id: UUID, capability: ProviderCapability, organizationID: UUID?, kind: ProviderKind, config: [String: String], secrets: ProviderSecrets,
        status: ProviderStatus, lastCheckedAt: Date?, lastError: String?, updatedAt: Date, version: Int
    ) {
        self.id = id
        self.capability = capability
        self.organizationID = organizationID
        self.kind = kind
        self.config = config
        self.secrets = secrets
        self.status = status
        self.lastCheckedAt = lastCheckedAt
        self.lastError = lastError
        self.updatedAt = updatedAt
        self.version = version
    }

    /// The setting named `name`, nil when absent or empty.
    public func setting(_ name: String) -> String? {
        guard let value = config[name], !value.isEmpty else { return nil }
        return value
    }
}

/// Why a provider operation failed. Details never carry a credential.
public typealias ProviderError = DomainError<ProviderErrorDomain>

/// The `provider` error domain: its codes' HTTP statuses and transience.
public enum ProviderErrorDomain: ErrorDomain {
    public static let name = "provider"

    /// 404 when no provider is configured, 422 for a bad argument, 409 for a rotation that
    /// lost a race, 503 when the registry or the provider cannot be reached, 502 when the
    /// provider refused, 500 for a row or credentials that do not open.
    public static func httpStatus(for code: ErrorCode<ProviderErrorDomain>) -> Int {
        switch code {
        case .notFound: 404
        case .invalidArgument: 422
        case .versionConflict: 409
        case .unavailable: 503
        case .providerRefused: 502
        default: 500
        }
    }

    /// The registry could not be read and nothing usable was cached.
    public static func isTransient(_ code: ErrorCode<ProviderErrorDomain>) -> Bool { code == .unavailable }
}

extension ErrorCode where Domain == ProviderErrorDomain {
    /// No row for the capability: neither the clinic's nor the platform default.
    public static var notFound: Self { Self("notFound") }
    /// A bad capability, kind, setting or secret.
    public static var invalidArgument: Self { Self("invalidArgument") }
    /// The database could not be reached and no usable cached value was left; or the
    /// provider itself could not (unreachable, a timeout, its 429 or 5xx): retry later.
    public static var unavailable: Self { Self("unavailable") }
    /// The provider refused the request (a bad key, a bad argument): the same request will
    /// not succeed later.
    public static var providerRefused: Self { Self("providerRefused") }
    /// The credentials did not open under the keyring (wrong key, or tampered).
    public static var decryptionFailed: Self { Self("decryptionFailed") }
    /// A rotation expected another version than the row has.
    public static var versionConflict: Self { Self("versionConflict") }
    /// A row that does not decode (a status or JSON the kit does not know).
    public static var corruptRow: Self { Self("corruptRow") }
}
