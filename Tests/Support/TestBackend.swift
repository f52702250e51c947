public import Foundation
public import Testing

/// Where the database suites run, and each backend's URL for each database role: one
/// definition for every test target (the kit's storage, tenancy, crypto and provider suites).
/// URLs come from the environment `Scripts/services env` prints; SQLite always runs, the
/// Postgres backends when configured, and under `CI=true` their absence fails the test
/// (``RequiredServices``).
public enum TestBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    /// An embedded SQLite file (one file, no roles: every role is the same file).
    case sqlite
    /// Postgres, direct.
    case postgresDirect
    /// Postgres through PgBouncer in transaction mode.
    case pgbouncer

    public var testDescription: String { rawValue }

    /// A database role of the platform.
    public enum Role: Sendable, CaseIterable {
        /// The schema owner (migrations, scratch tables); always direct, never through PgBouncer.
        case owner
        /// The admin role (platform work, audited unscoped access).
        case admin
        /// The restricted app role (tenant transactions).
        case app
    }

    /// The variable naming this backend's URL for `role`; nil on SQLite.
    public func urlName(_ role: Role) -> String? {
        switch (self, role) {
        case (.sqlite, _): nil
        case (_, .owner): "DATABASE_DIRECT_URL"
        case (.postgresDirect, .admin): "DATABASE_ADMIN_DIRECT_URL"
        case (.pgbouncer, .admin): "DATABASE_URL"
        case (.postgresDirect, .app): "DATABASE_APP_DIRECT_URL"
        case (.pgbouncer, .app): "DATABASE_APP_URL"
        }
    }

    /// This backend's URL for `role`, when configured.
    public func url(_ role: Role) -> String? { urlName(role).flatMap(RequiredServices.value) }

    /// This backend's URL for `role`; records an issue and throws when it is missing.
    public func require(_ role: Role, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        guard let name = urlName(role) else { throw MissingService(name: "a \(role) URL on \(rawValue)") }
        return try RequiredServices.require(name, sourceLocation: sourceLocation)
    }

    /// Whether this is a Postgres backend.
    public var isPostgres: Bool { self != .sqlite }

    /// The backends a suite using `role` runs on: SQLite always; a Postgres one when its URL is
    /// set, or when services are required (then a missing URL fails the test).
    public static func all(using role: Role) -> [TestBackend] {
        allCases.filter { $0 == .sqlite || $0.url(role) != nil || RequiredServices.areRequired }
    }

    /// The environment the tests run in.
    public static var environment: [String: String] { RequiredServices.environment }

    /// Whether absent services fail the tests (CI) rather than skip them.
    public static var servicesRequired: Bool { RequiredServices.areRequired }

    /// The variable `name`, or nil when unset or empty.
    public static func value(_ name: String) -> String? { RequiredServices.value(name) }

    /// The variable `name`; records an issue naming it and throws when it is missing.
    public static func require(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try RequiredServices.require(name, sourceLocation: sourceLocation)
    }
}
