/// The one shape of every public error in the kit.
///
/// Each module has one error type per domain (`DatabaseError`, `RedisError`, `AWSError`,
/// `TokenError`, `TenancyError`, `PrincipalError`, `SignatureError`, `EncryptionError`,
/// `ProviderError`, `UsageError`, `TelemetryError`, `ConfigurationError`, `PatientError`), and each conforms: a
/// closed set of codes with stable names, a detail that is safe to log and to return, the HTTP
/// status a service answers with, and whether trying again may help. A service maps any of
/// them to a response the same way (``httpStatus``, ``identifier``, ``safeDetail``: the Core
/// API's error bodies name the identifier), and `Scripts/check-architecture` fails when a
/// public error type does not conform.
///
/// Safe means: a detail names kinds, fields, tables, key ids, counts and positions, never a
/// bound value, a row's data, a token, a secret or a server's free text (which can quote data);
/// types that keep such text for diagnosis keep it apart from ``safeDetail`` and ``description``.
public protocol RestartixError: Error, Sendable, CustomStringConvertible {
    /// The error's domain, a stable lower-case word: `database`, `redis`, `tenancy`...
    static var domain: String { get }
    /// The code's stable name within the domain (`uniqueViolation`, `notAMember`): what a
    /// client may branch on.
    var codeName: String { get }
    /// One sentence about what went wrong, safe to log and to return (most types store it as
    /// their `detail`).
    var safeDetail: String { get }
    /// The HTTP status a service answers with when this error ends a request.
    var httpStatus: Int { get }
    /// Whether the same call may succeed when tried again (a lost connection, a timeout, a
    /// dependency that is down), as opposed to a refusal or a defect that will recur.
    var isTransient: Bool { get }
}

extension RestartixError {
    /// `domain.codeName`, e.g. `tenancy.notAMember`: unique across the kit.
    public var identifier: String { "\(Self.domain).\(codeName)" }

    /// The description every kit error gives: `domain.codeName: detail`.
    public var restartixDescription: String { "\(identifier): \(safeDetail)" }

    public var isTransient: Bool { false }
}

/// What a log line or a stored note may say about any error: a kit error's
/// ``RestartixError/restartixDescription`` (safe by the protocol's contract), and of any other
/// error only its type, since its text may quote data (a server's message, a header, a body).
public func safeDescription(of error: any Error) -> String {
    if let error = error as? any RestartixError { return error.restartixDescription }
    return "\(type(of: error))"
}

/// One error domain: its name and what its codes mean to a service. An error type whose
/// failures carry nothing beyond a code and a detail is ``DomainError`` over a domain like
/// this, so each new domain writes down its name, its codes and their statuses, and nothing
/// else (the kit's token, principal, signature, encryption, provider, telemetry and
/// configuration errors are).
public protocol ErrorDomain: Sendable {
    /// The domain's stable lower-case name (``RestartixError/domain``).
    static var name: String { get }
    /// The HTTP status a request that ends in `code` answers with.
    static func httpStatus(for code: ErrorCode<Self>) -> Int
    /// Whether the same call may succeed when tried again.
    static func isTransient(_ code: ErrorCode<Self>) -> Bool
}

extension ErrorDomain {
    public static func isTransient(_ code: ErrorCode<Self>) -> Bool { false }
}

/// A code of one domain: a stable name. Each domain's codes are static members in an
/// extension (`extension ErrorCode where Domain == TokenErrors { static var expired ... }`),
/// so `error.code == .expired` and `switch error.code { case .expired: ... }` read as with an
/// enum, and the set stays closed: only the kit's modules can make one.
public struct ErrorCode<Domain: ErrorDomain>: Hashable, Sendable, CustomStringConvertible {
    /// The code's stable name (``RestartixError/codeName``).
    public let name: String

    package init(_ name: String) { self.name = name }

    public var description: String { name }
}

/// An error of one domain: a code and a detail that is safe to log and to return.
public struct DomainError<Domain: ErrorDomain>: RestartixError, Hashable {
    /// The domain's codes.
    public typealias Code = ErrorCode<Domain>

    /// What went wrong.
    public let code: Code
    /// A short explanation that is safe to log and to show (names a check, a field, a key id,
    /// never a value, a token or a secret).
    public let detail: String

    /// An error of `code`.
    public init(_ code: Code, _ detail: String) {
        self.code = code
        self.detail = detail
    }

    public static var domain: String { Domain.name }
    public var codeName: String { code.name }
    public var safeDetail: String { detail }
    public var httpStatus: Int { Domain.httpStatus(for: code) }
    public var isTransient: Bool { Domain.isTransient(code) }
    public var description: String { restartixDescription }
}
