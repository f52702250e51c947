import Foundation
import RestartixKit
import RestartixTenancy
import Synchronization
import Testing

/// Bearer token -> TenantContext: the token is checked first (no database work for a bad one),
/// then the platform's membership decides.
@Suite("Principal resolver", .timeLimit(.minutes(3)))
struct PrincipalResolverTests {
    /// How long the resolver keeps a membership here: wide enough that a loaded machine cannot let
    /// it lapse between two steps that expect it kept (2 s once could).
    static let kept = Duration.seconds(6)

    @Test("membership decides: member, non-member, unknown clinic, suspended clinic", arguments: TenancyBackend.all)
    func membership(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let setup = try await PrincipalTests.setup()
        defer { setup.server.stop() }
        let clerkOrg = "org_" + fixture.a.id.uuidString.suffix(12).lowercased()
        let staff = "user_" + fixture.a.staffUser.uuidString.suffix(12).lowercased()
        let stranger = "user_" + fixture.b.staffUser.uuidString.suffix(12).lowercased()
        try await databases.admin.unscoped(reason: "resolver tests: link Clerk ids", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("UPDATE organizations SET clerk_organization_id = \(clerkOrg) WHERE id = \(fixture.a.id)")
            try await tx.execute("UPDATE users SET clerk_user_id = \(staff) WHERE id = \(fixture.a.staffUser)")
            try await tx.execute("UPDATE users SET clerk_user_id = \(stranger) WHERE id = \(fixture.b.staffUser)")
        }
        let resolver = PrincipalResolver(issuer: .clerk(setup.verifier), admin: databases.admin)
        func token(user: String, org: String) async throws -> String {
            var claims = TestClaims()
            claims.sub = user
            claims.o = .init(id: org, rol: "admin")
            return try await setup.key.sign(claims)
        }
        let context = try await resolver.context(bearer: try await token(user: staff, org: clerkOrg))
        #expect(context == TenantContext(organizationID: fixture.a.id, userID: fixture.a.staffUser, role: .specialist),
                "the database's role, not the token's")
        for (name, user, org) in [("not a member", stranger, clerkOrg), ("unknown clinic", staff, "org_unknown"), ("unknown user", "user_unknown", clerkOrg)] {
            let error = await #expect(throws: TenancyError.self, "\(name)") { try await resolver.context(bearer: try await token(user: user, org: org)) }
            #expect(error?.code == .notAMember, "\(name)")
        }
        _ = try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("UPDATE organizations SET status = 'suspended' WHERE id = \(fixture.a.id)")
        }
        let suspended = await #expect(throws: TenancyError.self) { try await resolver.context(bearer: try await token(user: staff, org: clerkOrg)) }
        #expect(suspended?.code == .organizationInactive)

        // The local development issuer resolves the kit's own ids through the same membership.
        let dev = try await LocalDevIssuer(environment: .test)
        let local = PrincipalResolver(issuer: .localDevelopment(dev), admin: databases.admin)
        #expect(try await local.context(bearer: try await dev.issue(user: fixture.b.staffUser, organization: fixture.b.id)).role == .specialist)
        let outsider = await #expect(throws: TenancyError.self) {
            try await local.context(bearer: try await dev.issue(user: fixture.spareUser, organization: fixture.b.id))
        }
        #expect(outsider?.code == .notAMember)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("memberships kept for their time: a lowered role and a removed membership count after it, or at once when invalidated; refusals are never kept", arguments: TenancyBackend.all)
    func membershipCache(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let dev = try await LocalDevIssuer(environment: .test)
        let resolver = PrincipalResolver(issuer: .localDevelopment(dev), admin: databases.admin, membershipCacheTTL: Self.kept)
        let staff = try await dev.issue(user: fixture.a.staffUser, organization: fixture.a.id)
        func change(_ sql: SQLQuery) async throws {
            _ = try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in try await tx.execute(sql) }
        }
        #expect(try await resolver.context(bearer: staff).role == .specialist)
        // Lowered in the database: the kept membership serves until it lapses...
        try await change("UPDATE memberships SET role = 'assistant' WHERE user_id = \(fixture.a.staffUser)")
        #expect(try await resolver.context(bearer: staff).role == .specialist, "kept")
        try await Task.sleep(for: Self.kept + .milliseconds(100))
        #expect(try await resolver.context(bearer: staff).role == .assistant, "lapsed: asked again")
        // ...or until it is invalidated (the Core API does so for every Clerk event applied).
        try await change("DELETE FROM memberships WHERE user_id = \(fixture.a.staffUser)")
        resolver.invalidateMemberships()
        let removed = await #expect(throws: TenancyError.self) { try await resolver.context(bearer: staff) }
        #expect(removed?.code == .notAMember)
        // A refusal is not kept: once a member again, the next call sees it.
        try await change("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.a.id), \(fixture.a.staffUser), 'specialist')")
        #expect(try await resolver.context(bearer: staff).role == .specialist)
        // Kept per user and clinic: the same user in another clinic, and another user in this
        // one, each get their own membership.
        try await databases.admin.withOrganization(fixture.b.id, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.b.id), \(fixture.a.staffUser), 'assistant')")
        }
        let elsewhere = try await dev.issue(user: fixture.a.staffUser, organization: fixture.b.id)
        #expect(try await resolver.context(bearer: elsewhere) == TenantContext(organizationID: fixture.b.id, userID: fixture.a.staffUser, role: .assistant))
        try await change("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.a.id), \(fixture.spareUser), 'owner')")
        let colleague = try await dev.issue(user: fixture.spareUser, organization: fixture.a.id)
        #expect(try await resolver.context(bearer: colleague) == TenantContext(organizationID: fixture.a.id, userID: fixture.spareUser, role: .owner))
        #expect(try await resolver.context(bearer: staff).role == .specialist, "its own, still")
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("a resolved token is kept as long as its membership and never past its exp; any other token, a tampered one included, is verified", arguments: TenancyBackend.all)
    func tokenCache(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        // The issuer's clock, moved by hand: a token it would now call expired is still served
        // from the cache, which shows the cache skipped the verification.
        let offset = Atomic<Int>(0)
        let dev = try await LocalDevIssuer(environment: .test) { Date().addingTimeInterval(TimeInterval(offset.load(ordering: .relaxed))) }
        let resolver = PrincipalResolver(issuer: .localDevelopment(dev), admin: databases.admin, membershipCacheTTL: Self.kept)
        let staff = try await dev.issue(user: fixture.a.staffUser, organization: fixture.a.id)
        let expected = TenantContext(organizationID: fixture.a.id, userID: fixture.a.staffUser, role: .specialist)
        #expect(try await resolver.context(bearer: staff) == expected)
        offset.store(7200, ordering: .relaxed)
        #expect(try await resolver.context(bearer: staff) == expected, "kept: not verified again")
        // Another token of the same principal is verified, though the membership is kept: a
        // tampered signature is refused.
        let tampered = String(staff.dropLast(2)) + (staff.hasSuffix("AA") ? "BB" : "AA")
        await #expect(throws: TokenError.self) { try await resolver.context(bearer: tampered) }
        // Lapsed with the membership: verified again, and now expired.
        try await Task.sleep(for: Self.kept + .milliseconds(100))
        let lapsed = await #expect(throws: TokenError.self) { try await resolver.context(bearer: staff) }
        #expect(lapsed?.code == .expired)
        // A token that expires before the membership lapses is kept only until its exp (then
        // verified: expired, past the issuer's 5 s leeway on its clock).
        offset.store(0, ordering: .relaxed)
        let brief = try await dev.issue(user: fixture.a.staffUser, organization: fixture.a.id, lifetime: .seconds(1))
        #expect(try await resolver.context(bearer: brief) == expected)
        offset.store(60, ordering: .relaxed)
        try await Task.sleep(for: .milliseconds(1100))
        let past = await #expect(throws: TokenError.self) { try await resolver.context(bearer: brief) }
        #expect(past?.code == .expired)
        // Invalidation forgets kept tokens too.
        offset.store(0, ordering: .relaxed)
        let fresh = try await dev.issue(user: fixture.a.staffUser, organization: fixture.a.id)
        #expect(try await resolver.context(bearer: fresh) == expected)
        _ = try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM memberships WHERE user_id = \(fixture.a.staffUser)")
        }
        resolver.invalidateMemberships()
        let removed = await #expect(throws: TenancyError.self) { try await resolver.context(bearer: fresh) }
        #expect(removed?.code == .notAMember)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("bad tokens are refused before any database work")
    func beforeDatabase() async throws {
        let setup = try await PrincipalTests.setup()
        defer { setup.server.stop() }
        // A closed pool: any database work would fail with a DatabaseError, not a PrincipalError.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-closed-\(UUID().uuidString).sqlite").path
        let admin = AdminDatabase(configuration: DatabaseConfiguration(sqlitePath: path), logger: TenancyBackend.logger)
        await admin.shutdown()
        let resolver = PrincipalResolver(issuer: .clerk(setup.verifier), admin: admin)
        var noOrg = TestClaims(); noOrg.o = nil
        var noRole = TestClaims(); noRole.o = .init(id: "org_2xyz", rol: nil)
        var expired = TestClaims(); expired.exp = Date().timeIntervalSince1970 - 60
        var future = TestClaims(); future.nbf = Date().timeIntervalSince1970 + 60
        var issuer = TestClaims(); issuer.iss = "https://other.clerk.test"
        let stranger = try await TestRSAKey.make(kid: "ins_other")
        let cases: [(String, String, String)] = [
            ("malformed", "not-a-token", "token.malformedToken"),
            ("alg none", try PrincipalTests.unsigned(header: #"{"alg":"none","kid":"ins_key_1"}"#, claims: TestClaims(), signature: "eA"), "token.unsupportedAlgorithm"),
            ("expired", try await setup.key.sign(expired), "token.expired"),
            ("not yet valid", try await setup.key.sign(future), "token.notYetValid"),
            ("wrong issuer", try await setup.key.sign(issuer), "token.wrongIssuer"),
            ("unknown kid", try await stranger.sign(TestClaims()), "principal.unknownKey"),
            ("missing org claim", try await setup.key.sign(noOrg), "token.missingClaim"),
            ("membership missing", try await setup.key.sign(noRole), "principal.missingMembership"),
        ]
        for (name, token, code) in cases {
            let error = await refusal { _ = try await resolver.context(bearer: token) }
            #expect(error?.identifier == code, "\(name): \(String(describing: error))")
        }
        // Positive control: a good token does reach the (closed) database.
        await #expect(throws: DatabaseError.self) { try await resolver.context(bearer: try await setup.key.sign(TestClaims())) }
    }
}
