public import Foundation
public import RestartixKit
public import RestartixTenancy

/// The embedded default's demo, for a newcomer's first minute and the README walk-through: two
/// clinics and their people, under fixed ids so a token can be minted for each by name
/// (`restartix-jobs dev-token --as demo-owner`). Development and test only: ``seed(_:environment:)``
/// refuses anywhere else.
public enum DemoData {
    /// One demo person: a user with one membership, or a platform operator with none.
    public struct Person: Sendable, Hashable {
        /// The name a token is asked for by (`demo-owner`).
        public let handle: String
        /// `users.id`.
        public let userID: UUID
        /// The clinic: the membership's, or for a platform operator the clinic their token names
        /// (they are no member of it).
        public let organizationID: UUID
        /// The membership's role; `nil` for a platform operator, who has no membership.
        public let role: TenantRole?
        /// `users.display_name`.
        public let displayName: String
        /// `users.is_platform_admin`: may use the `/v1/admin` routes.
        public var isPlatformAdministrator: Bool { role == nil }
    }

    /// "Demo Clinic" (`demo-clinic`).
    public static let demoClinic = UUID(uuidString: "0193a000-0000-7000-8000-00000000d001")!
    /// "Other Clinic" (`other-clinic`): a second tenant that must see nothing of the first.
    public static let otherClinic = UUID(uuidString: "0193a000-0000-7000-8000-00000000d002")!

    /// The people, in the order the walk-through uses them.
    public static let people: [Person] = [
        Person(handle: "demo-owner", userID: UUID(uuidString: "0193a000-0000-7000-8000-00000000e001")!, organizationID: demoClinic, role: .owner, displayName: "Demo Owner"),
        Person(handle: "demo-specialist", userID: UUID(uuidString: "0193a000-0000-7000-8000-00000000e002")!, organizationID: demoClinic, role: .specialist, displayName: "Demo Specialist"),
        Person(handle: "demo-patient", userID: UUID(uuidString: "0193a000-0000-7000-8000-00000000e003")!, organizationID: demoClinic, role: .patient, displayName: "Demo Patient"),
        Person(handle: "other-owner", userID: UUID(uuidString: "0193a000-0000-7000-8000-00000000e004")!, organizationID: otherClinic, role: .owner, displayName: "Other Owner"),
        Person(handle: "platform-operator", userID: UUID(uuidString: "0193a000-0000-7000-8000-00000000e005")!, organizationID: demoClinic, role: nil, displayName: "Platform Operator"),
    ]

    /// The person named `handle`, if any.
    public static func person(_ handle: String) -> Person? { people.first { $0.handle == handle } }

    /// Creates the demo clinics, users and memberships that are missing, in one audited
    /// transaction (a no-op once they exist; safe when two processes start at once). Returns
    /// whether anything was created. Refused outside development and test.
    @discardableResult
    public static func seed(_ admin: AdminDatabase, environment: DeploymentEnvironment) async throws -> Bool {
        guard environment == .development || environment == .test else {
            throw ConfigurationError(.invalidValue, "the demo clinics exist only in development and test")
        }
        return try await admin.unscoped(reason: "demo data for the embedded default", actor: .system("demo-data")) { tx in
            var created = false
            for (id, slug, name) in [(demoClinic, "demo-clinic", "Demo Clinic"), (otherClinic, "other-clinic", "Other Clinic")] {
                guard try await tx.first("SELECT id FROM organizations WHERE id = \(id)") == nil else { continue }
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(id), \(slug), \(name))")
                created = true
            }
            for person in people {
                if try await tx.first("SELECT id FROM users WHERE id = \(person.userID)") == nil {
                    try await tx.execute("""
                        INSERT INTO users (id, display_name, is_platform_admin) \
                        VALUES (\(person.userID), \(person.displayName), \(person.isPlatformAdministrator))
                        """)
                    created = true
                }
                guard let role = person.role else { continue }
                if try await tx.first("SELECT id FROM memberships WHERE organization_id = \(person.organizationID) AND user_id = \(person.userID)") == nil {
                    try await tx.execute("""
                        INSERT INTO memberships (id, organization_id, user_id, role) \
                        VALUES (\(UUIDv7.generate()), \(person.organizationID), \(person.userID), \(role.rawValue))
                        """)
                    created = true
                }
            }
            return created
        }
    }
}

extension PlatformBoot {
    /// The local development issuer's secret on the embedded default when
    /// `RESTARTIX_DEV_TOKEN_SECRET` is not set: generated once into `dev-token-secret` (mode
    /// 0600) in `directory`, so tokens minted by `restartix-jobs dev-token` stay valid across
    /// restarts of the Core API. Development and test only (the issuer refuses elsewhere).
    public static func localDevTokenSecret(in directory: URL) throws -> String {
        try LocalSecrets.secret(named: LocalSecrets.devTokenSecret, what: "development token secret", in: directory)
    }

    /// The telemetry session tokens' secret on the embedded default when
    /// `TELEMETRY_SESSION_TOKEN_SECRET` is not set: generated once into
    /// `telemetry-session-secret` (mode 0600) in `directory`, where the Telemetry API on the same
    /// machine finds it too. Development and test only (the Core API asks for it only there).
    public static func localTelemetrySessionSecret(in directory: URL) throws -> String {
        try LocalSecrets.secret(named: LocalSecrets.telemetrySessionSecret, what: "telemetry session secret", in: directory)
    }

    /// The service-account tokens' secret on the embedded default when
    /// `TELEMETRY_INTERNAL_SVC_ACCT_TOKEN` is not set: generated once into
    /// `service-account-secret` (mode 0600) in `directory`, so the Telemetry API on the same
    /// machine signs what the Core API's internal routes verify. Development and test only.
    public static func localServiceAccountSecret(in directory: URL) throws -> String {
        try LocalSecrets.secret(named: LocalSecrets.serviceAccountSecret, what: "service-account secret", in: directory)
    }
}
