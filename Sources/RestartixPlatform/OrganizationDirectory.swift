public import Foundation
public import RestartixKit
public import RestartixRedis
public import RestartixTenancy

/// Which clinic a web address belongs to, for the apps' first request
/// (`GET /v1/public/organizations/resolve?domain=`): a platform subdomain
/// (`{slug}.clinic.restartix.pro`, `{slug}.portal.restartix.pro`) or a clinic's verified custom
/// domain (`physio-bucharest.ro`, through Cloudflare for SaaS). Only active clinics resolve.
///
/// Answers are cached aside (``Aside``: Redis shared by every instance, or this process's
/// memory) for ``ttl``, misses included, so a flood of lookups costs the database one read per
/// address per TTL. Every change here (a domain added, verified or removed, a clinic's status)
/// invalidates the addresses it touches at once; a change made elsewhere is seen within ``ttl``.
public final class OrganizationDirectory: Sendable {
    /// A resolved address.
    public struct Resolution: Sendable, Hashable, Codable {
        public let organizationID: UUID
        public let slug: String
        public let name: String
        /// `subdomain` or `custom`.
        public let via: String
        /// For a subdomain: the suffix it was under (`clinic.restartix.pro`).
        public let surface: String?
    }

    /// The platform's subdomain suffixes, lower case, without a leading dot.
    public let suffixes: [String]
    /// How long an answer (or a miss) is cached.
    public let ttl: Duration
    private let admin: AdminDatabase
    private let cache: Aside

    /// A directory over `admin`, caching in `cache`; `suffixes` are the platform's subdomain
    /// suffixes (`clinic.restartix.pro`).
    public init(admin: AdminDatabase, cache: Aside, suffixes: [String], ttl: Duration = .seconds(300)) {
        self.admin = admin
        self.cache = cache
        self.suffixes = suffixes.map { $0.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: ".")) }.filter { !$0.isEmpty }
        self.ttl = ttl
    }

    /// `text` as a host name the directory can look up: lower case, no trailing dot, no port;
    /// 3 to 253 characters of letters, digits, `-` and `.`, labels of 1 to 63 characters that
    /// neither start nor end with `-`. Throws ``DirectoryError``
    /// naming the rule, never echoing the text.
    public static func normalize(_ text: String) throws(DirectoryError) -> String {
        var host = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let colon = host.lastIndex(of: ":"), host[host.index(after: colon)...].allSatisfy(\.isNumber), !host[host.index(after: colon)...].isEmpty {
            host = String(host[..<colon])
        }
        if host.hasSuffix(".") { host.removeLast() }
        guard (3...253).contains(host.utf8.count) else { throw DirectoryError(.invalidDomain, "domain must be a host name of 3 to 253 characters") }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, labels.allSatisfy({ label in
            (1...63).contains(label.utf8.count) && label.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 }
                && label.first != "-" && label.last != "-"
        }) else {
            throw DirectoryError(.invalidDomain, "domain must be a host name: labels of letters, digits and hyphens, separated by dots")
        }
        return host
    }

    /// The active clinic `domain` names, or `nil`.
    /// - Throws: ``DirectoryError`` for a domain that is not a host name; database errors.
    public func resolve(domain: String) async throws -> Resolution? {
        let host = try Self.normalize(domain)
        for suffix in suffixes where host.hasSuffix("." + suffix) {
            let slug = String(host.dropLast(suffix.count + 1))
            // One label: `a.b.clinic.restartix.pro` is no clinic's.
            guard !slug.contains(".") else { return nil }
            return try await cache.get("org-slug:\(slug)", as: Cached.self, ttl: ttl) { [admin] in
                Cached(try await admin.organization(slug: slug))
            }.resolution(via: "subdomain", surface: suffix)
        }
        return try await cache.get("org-domain:\(host)", as: Cached.self, ttl: ttl) { [admin] in
            Cached(try await admin.organization(verifiedDomain: host))
        }.resolution(via: "custom", surface: nil)
    }

    /// Adds `domain` to `organization` (verified or not yet), audited; returns its row id.
    @discardableResult
    public func addDomain(_ domain: String, to organization: UUID, verified: Bool = false, actor: PlatformActor) async throws -> UUID {
        let host = try Self.normalize(domain)
        let id = UUIDv7.generate()
        try await admin.withOrganization(organization, actor: actor) { tx in
            try await tx.execute("""
                INSERT INTO organization_domains (id, organization_id, domain, verified_at) \
                VALUES (\(id), \(organization), \(host), \(verified ? Date() : nil))
                """)
            try await tx.audit(AuditEvent(action: "organization_domain.add", resourceType: "organization_domain", resourceID: id, metadata: ["verified": "\(verified)"]))
        }
        await cache.invalidate("org-domain:\(host)")
        return id
    }

    /// Marks `domain` of `organization` verified (Cloudflare saw the clinic's DNS records), audited.
    public func verifyDomain(_ domain: String, of organization: UUID, actor: PlatformActor) async throws {
        let host = try Self.normalize(domain)
        try await admin.withOrganization(organization, actor: actor) { tx in
            let changed = try await tx.execute("""
                UPDATE organization_domains SET verified_at = \(tx.dialect.now) \
                WHERE organization_id = \(organization) AND domain = \(host) AND verified_at IS NULL
                """)
            if changed == 1 { try await tx.audit(AuditEvent(action: "organization_domain.verify", resourceType: "organization_domain")) }
        }
        await cache.invalidate("org-domain:\(host)")
    }

    /// Removes `domain` from `organization`, audited; `false` when it had no such domain.
    @discardableResult
    public func removeDomain(_ domain: String, of organization: UUID, actor: PlatformActor) async throws -> Bool {
        let host = try Self.normalize(domain)
        let removed = try await admin.withOrganization(organization, actor: actor) { tx in
            let removed = try await tx.execute("DELETE FROM organization_domains WHERE organization_id = \(organization) AND domain = \(host)")
            if removed == 1 { try await tx.audit(AuditEvent(action: "organization_domain.remove", resourceType: "organization_domain")) }
            return removed == 1
        }
        await cache.invalidate("org-domain:\(host)")
        return removed
    }

    /// Sets `organization`'s status (`active`, `suspended`, `deleted`), audited, and drops every
    /// cached address of it (its slug's subdomains and its custom domains).
    public func setStatus(_ status: String, of organization: UUID, actor: PlatformActor) async throws {
        guard ["active", "suspended", "deleted"].contains(status) else { throw DirectoryError(.invalidStatus, "status must be active, suspended or deleted") }
        let (slug, domains) = try await admin.withOrganization(organization, actor: actor) { tx in
            try await tx.execute("UPDATE organizations SET status = \(status), updated_at = \(tx.dialect.now) WHERE id = \(organization)")
            try await tx.audit(AuditEvent(action: "organization.status", resourceType: "organization", resourceID: organization, metadata: ["status": status]))
            let slug = try await tx.first("SELECT slug FROM organizations WHERE id = \(organization)")?.decode("slug", as: String.self)
            let domains = try await tx.query("SELECT domain FROM organization_domains WHERE organization_id = \(organization)").map { try $0.decode("domain", as: String.self) }
            return (slug, domains)
        }
        if let slug { await cache.invalidate("org-slug:\(slug)") }
        for domain in domains { await cache.invalidate("org-domain:\(domain)") }
    }

    /// What is cached per address: the clinic, or nothing (a miss is cached too).
    struct Cached: Codable, Sendable {
        let record: OrganizationRecord?

        init(_ record: OrganizationRecord?) { self.record = record }

        func resolution(via: String, surface: String?) -> Resolution? {
            guard let record, record.status == "active" else { return nil }
            return Resolution(organizationID: record.id, slug: record.slug, name: record.name, via: via, surface: surface)
        }
    }
}

/// A domain or status the directory cannot use: names the rule, never the value (HTTP 400).
public typealias DirectoryError = DomainError<DirectoryErrorDomain>

/// The `directory` error domain.
public enum DirectoryErrorDomain: ErrorDomain {
    public static let name = "directory"

    public static func httpStatus(for code: ErrorCode<DirectoryErrorDomain>) -> Int { 400 }
}

extension ErrorCode where Domain == DirectoryErrorDomain {
    /// A domain that is not a host name (400).
    public static var invalidDomain: Self { Self("invalidDomain") }
    /// A status other than active, suspended or deleted (400).
    public static var invalidStatus: Self { Self("invalidStatus") }
}
