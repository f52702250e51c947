public import Foundation
import RestartixKit
import Synchronization

/// Turns a bearer token into a ``TenantContext``: verify the token (no database work), then look
/// the user's membership up in the platform database, which decides the role.
///
/// Clerk authenticates; the platform's own `memberships` table authorizes. A user with no
/// membership in the token's organization gets no context (``TenancyError/Code/notAMember``),
/// and a suspended or deleted organization gets none either
/// (``TenancyError/Code/organizationInactive``). The lookup is one fixed, read-only statement
/// on the admin pool (one round trip), the only cross-clinic read that is not audited: it
/// returns ids, a role and a status, never patient data.
///
/// With a `membershipCacheTTL`, a membership found is reused for that long without asking the
/// database again: a membership removed, a role lowered or an organization suspended takes
/// effect within that time, or at once on this instance after ``invalidateMemberships()`` (the
/// Core API calls it for every Clerk event it applies). The token that resolved is kept with it
/// for as long, never past its own `exp`: the same token, byte for byte, is not parsed and
/// verified again in that time (a client sends one session token with many requests). Only
/// contexts found are kept, never a refusal.
public final class PrincipalResolver: Sendable {
    /// Who issues the tokens this resolver accepts.
    public enum Issuer: Sendable {
        /// Clerk session tokens; the organization claim names `organizations.clerk_organization_id`.
        case clerk(ClerkSessionVerifier)
        /// ``LocalDevIssuer`` tokens (embedded default, development): kit ids directly.
        case localDevelopment(LocalDevIssuer)
    }

    private let issuer: Issuer
    private let admin: AdminDatabase
    private let membershipCacheTTL: Duration
    private struct Kept {
        var generation: UInt64 = 0
        /// By membership key (issuer, user, organization).
        var entries: [String: (context: TenantContext, until: ContinuousClock.Instant)] = [:]
        /// By the bearer token itself.
        var tokens: [String: (context: TenantContext, until: ContinuousClock.Instant)] = [:]
    }

    private let memberships = Mutex(Kept())
    /// At most this many memberships (and as many tokens) kept (a cache empties when it would
    /// hold more).
    static let membershipCacheLimit = 10_000

    /// Creates a resolver reading memberships through `admin`, reusing each one found for
    /// `membershipCacheTTL` (zero, the default: every call asks the database).
    public init(issuer: Issuer, admin: AdminDatabase, membershipCacheTTL: Duration = .zero) {
        self.issuer = issuer
        self.admin = admin
        self.membershipCacheTTL = membershipCacheTTL
    }

    /// Forgets every membership kept: the next call for each asks the database.
    public func invalidateMemberships() {
        memberships.withLock { cache in
            cache.generation &+= 1
            cache.entries.removeAll()
            cache.tokens.removeAll()
        }
    }

    /// The membership kept for `key` while fresh, and the cache's generation (a lookup started
    /// now may keep its answer only if no invalidation came in between).
    private func cached(_ key: String) -> (context: TenantContext?, generation: UInt64) {
        guard membershipCacheTTL > .zero else { return (nil, 0) }
        let now = ContinuousClock.now
        return memberships.withLock { cache in (Self.fresh(key, in: &cache.entries, now: now), cache.generation) }
    }

    /// The context kept under `key` if it is still fresh; a lapsed one is dropped.
    private static func fresh(
        _ key: String, in entries: inout [String: (context: TenantContext, until: ContinuousClock.Instant)], now: ContinuousClock.Instant
    ) -> TenantContext? {
        guard let entry = entries[key] else { return nil }
        guard entry.until > now else {
            entries[key] = nil
            return nil
        }
        return entry.context
    }

    /// The context kept for this very token while fresh.
    private func cached(token: String) -> TenantContext? {
        guard membershipCacheTTL > .zero else { return nil }
        let now = ContinuousClock.now
        return memberships.withLock { cache in Self.fresh(token, in: &cache.tokens, now: now) }
    }

    /// Keeps `context` for `key`, and for `token` until `expiresAt` at the latest, unless the
    /// cache was invalidated since `generation` (the lookup may have read the database before
    /// the change that invalidated it). `key` nil: the membership is kept already.
    private func keep(_ context: TenantContext, for key: String?, token: String, expiresAt: Date, readAt generation: UInt64) {
        guard membershipCacheTTL > .zero else { return }
        let now = ContinuousClock.now, until = now + membershipCacheTTL
        let tokenUntil = min(until, now + .milliseconds(Int64(max(0, expiresAt.timeIntervalSinceNow) * 1000)))
        func bounded(_ entries: inout [String: (context: TenantContext, until: ContinuousClock.Instant)]) {
            guard entries.count >= Self.membershipCacheLimit else { return }
            entries = entries.filter { $0.value.until > now }
            if entries.count >= Self.membershipCacheLimit { entries.removeAll() }
        }
        memberships.withLock { cache in
            guard cache.generation == generation else { return }
            if let key {
                bounded(&cache.entries)
                cache.entries[key] = (context, until)
            }
            if tokenUntil > now {
                bounded(&cache.tokens)
                cache.tokens[token] = (context, tokenUntil)
            }
        }
    }

    /// The platform administrator `token` names: the user's id when the token is valid and the
    /// user (not deleted) has `users.is_platform_admin`; no clinic membership is needed, and the
    /// token's organization, if any, is ignored. Token failures as ``context(bearer:)``; anyone
    /// else is ``TenancyError/Code/roleNotAllowed`` (403). One fixed read, like the membership
    /// lookup.
    public func platformAdministrator(bearer token: String) async throws -> UUID {
        let lookup: SQLQuery
        switch issuer {
        case .clerk(let verifier):
            let session = try await verifier.verify(token)
            lookup = "SELECT id, is_platform_admin FROM users WHERE clerk_user_id = \(session.userID) AND deleted_at IS NULL"
        case .localDevelopment(let dev):
            let principal = try await dev.verify(token)
            lookup = "SELECT id, is_platform_admin FROM users WHERE id = \(principal.userID) AND deleted_at IS NULL"
        }
        guard let row = try await admin.principalLookup(lookup), try row.decode("is_platform_admin", as: Bool.self) else {
            throw TenancyError(.roleNotAllowed, "only platform administrators may use the admin routes")
        }
        return try row.decode("id", as: UUID.self)
    }

    /// The context for `token` (the bearer value). Token failures are ``TokenError``s (or
    /// ``PrincipalError``s for a key set or party this deployment does not accept) and happen
    /// before any database work; membership failures are ``TenancyError``s. All three are
    /// ``RestartixError``s: map them to a response by ``RestartixError/httpStatus``.
    public func context(bearer token: String) async throws -> TenantContext {
        if let kept = cached(token: token) { return kept }
        let lookup: SQLQuery
        let key: String
        let expiresAt: Date
        switch issuer {
        case .clerk(let verifier):
            let session = try await verifier.verify(token)
            guard let organization = session.organizationID else {
                throw TokenError(.missingClaim, "the token names no active organization")
            }
            guard session.organizationRole != nil else {
                throw PrincipalError(.missingMembership, "the token names an organization but no membership in it")
            }
            key = "clerk\u{0}\(session.userID)\u{0}\(organization)"
            expiresAt = session.expiresAt
            lookup = """
                SELECT o.id AS organization_id, o.status AS status, u.id AS user_id, m.role AS role \
                FROM organizations o JOIN users u ON u.clerk_user_id = \(session.userID) AND u.deleted_at IS NULL \
                LEFT JOIN memberships m ON m.organization_id = o.id AND m.user_id = u.id \
                WHERE o.clerk_organization_id = \(organization)
                """
        case .localDevelopment(let dev):
            let principal = try await dev.verify(token)
            key = "local\u{0}\(principal.userID.lowercasedString)\u{0}\(principal.organizationID.lowercasedString)"
            expiresAt = principal.expiresAt
            lookup = """
                SELECT o.id AS organization_id, o.status AS status, u.id AS user_id, m.role AS role \
                FROM organizations o JOIN users u ON u.id = \(principal.userID) AND u.deleted_at IS NULL \
                LEFT JOIN memberships m ON m.organization_id = o.id AND m.user_id = u.id \
                WHERE o.id = \(principal.organizationID)
                """
        }
        let (kept, generation) = cached(key)
        if let kept {
            keep(kept, for: nil, token: token, expiresAt: expiresAt, readAt: generation)
            return kept
        }
        guard let row = try await admin.principalLookup(lookup) else {
            throw TenancyError(.notAMember, "the user is not a member of the organization")
        }
        guard let roleName = try row.decode("role", as: String?.self) else {
            throw TenancyError(.notAMember, "the user is not a member of the organization")
        }
        let status = try row.decode("status", as: String.self)
        guard status == "active" else {
            throw TenancyError(.organizationInactive, "the organization is \(status == "deleted" ? "deleted" : "suspended")")
        }
        let context = TenantContext(
            organizationID: try row.decode("organization_id", as: UUID.self),
            userID: try row.decode("user_id", as: UUID.self),
            role: try TenantRole(validating: roleName)
        )
        keep(context, for: key, token: token, expiresAt: expiresAt, readAt: generation)
        return context
    }
}
