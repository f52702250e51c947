public import RestartixKit

/// A tenancy failure. Descriptions name the problem (a field, a table, a role), never a token,
/// a secret or a row's data; each code maps to one HTTP status class.
public struct TenancyError: RestartixError, Equatable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        /// A context could not be built: malformed id, unknown role, missing claim (HTTP 400/401).
        public static let invalidContext = Code(name: "invalidContext")
        /// The principal is not a member of the organization, or it is not active (HTTP 403).
        public static let notAMember = Code(name: "notAMember")
        /// The organization is suspended or deleted (HTTP 403).
        public static let organizationInactive = Code(name: "organizationInactive")
        /// A break-glass or impersonation session is missing, closed or expired (HTTP 403).
        public static let sessionNotOpen = Code(name: "sessionNotOpen")
        /// The principal's role may not do this in its clinic (HTTP 403).
        public static let roleNotAllowed = Code(name: "roleNotAllowed")
        /// No such record in the principal's clinic; another clinic's looks the same (HTTP 404).
        public static let notFound = Code(name: "notFound")
        /// An unscoped admin transaction was asked for without a usable reason (HTTP 400).
        public static let invalidReason = Code(name: "invalidReason")
        /// The database does not isolate tenants (boot check): refuse to start.
        public static let unsafeDatabase = Code(name: "unsafeDatabase")
        /// A ``TenantTables`` registry contradicts itself (a programming error; the problems
        /// name each table and field).
        public static let invalidTenantTables = Code(name: "invalidTenantTables")

        public var description: String { name }
    }

    /// The kind of failure.
    public let code: Code
    /// A short explanation that is safe to log and to show.
    public let detail: String
    /// For ``Code/unsafeDatabase``: one line per problem found, each naming its table or role.
    public let problems: [String]

    /// Creates an error.
    public init(_ code: Code, _ detail: String, problems: [String] = []) {
        self.code = code
        self.detail = detail
        self.problems = problems
    }

    public static let domain = "tenancy"
    public var codeName: String { code.name }
    public var safeDetail: String { detail }

    /// 400 for a context or reason that cannot be used, 403 for a principal that may not act
    /// (not a member, an inactive clinic, a closed elevated session, a role that may not), 404
    /// for a record that is not in the principal's clinic, 500 for an unsafe database
    /// or an inconsistent registry (the service must not run).
    public var httpStatus: Int {
        switch code {
        case .invalidContext, .invalidReason: 400
        case .notAMember, .organizationInactive, .sessionNotOpen, .roleNotAllowed: 403
        case .notFound: 404
        default: 500
        }
    }

    public var description: String {
        problems.isEmpty ? restartixDescription : "\(restartixDescription): \(problems.joined(separator: "; "))"
    }
}
