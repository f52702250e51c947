/// The one shape of every public error in the kit.
///
/// Each module has one error type per domain (``DatabaseError``, `RedisError`, `AWSError`,
/// `TenancyError`, `PrincipalError`, `SignatureError`, `EncryptionError`, `ProviderError`,
/// `UsageError`, `TelemetryError`), and each conforms: a closed set of codes with stable names,
/// a detail that is safe to log and to return, the HTTP status a service answers with, and
/// whether trying again may help. A service maps any of them to a response the same way
/// (the Core API's problem+json bodies carry ``identifier``, ``safeDetail`` and ``httpStatus``),
/// and `Scripts/check-architecture` fails when a public error type does not conform.
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
