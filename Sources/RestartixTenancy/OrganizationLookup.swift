public import Foundation
import RestartixKit

/// A clinic as its web address names it: public information (the login page of
/// `physio-bucharest.ro` must know whose it is before anyone signs in).
public struct OrganizationRecord: Sendable, Hashable, Codable {
    public let id: UUID
    public let slug: String
    public let name: String
    /// `active`, `suspended` or `deleted`.
    public let status: String

    public init(id: UUID, slug: String, name: String, status: String) {
        self.id = id
        self.slug = slug
        self.name = name
        self.status = status
    }
}

extension AdminDatabase {
    /// The clinic whose slug is `slug`: the second fixed read across clinics with no audit row
    /// (besides the principal lookup), because what it returns is public (id, slug, name,
    /// status) and an unauthenticated request triggers it. Nothing else can be read this way.
    public func organization(slug: String) async throws -> OrganizationRecord? {
        try await principalLookup("SELECT id, slug, name, status FROM organizations WHERE slug = \(slug)").map(Self.record)
    }

    /// The clinic whose verified custom domain is `domain` (lower case), as
    /// ``organization(slug:)``: public information, one fixed read, no audit row.
    public func organization(verifiedDomain domain: String) async throws -> OrganizationRecord? {
        try await principalLookup("""
            SELECT o.id, o.slug, o.name, o.status FROM organization_domains d JOIN organizations o ON o.id = d.organization_id \
            WHERE d.domain = \(domain) AND d.verified_at IS NOT NULL
            """).map(Self.record)
    }

    private static func record(_ row: SQLRow) throws -> OrganizationRecord {
        OrganizationRecord(
            id: try row.decode("id", as: UUID.self), slug: try row.decode("slug", as: String.self),
            name: try row.decode("name", as: String.self), status: try row.decode("status", as: String.self)
        )
    }
}
