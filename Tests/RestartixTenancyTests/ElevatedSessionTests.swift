import Foundation
import RestartixKit
import RestartixTenancy
import Synchronization
import RestartixTestSupport
import Testing

/// Break-glass and impersonation: opened with a reason, every transaction audited while open,
/// refused after expiry or close, swept once however many sweeps run.
@Suite("Elevated sessions", .timeLimit(.minutes(2)))
struct ElevatedSessionTests {
    /// A platform administrator, member of no clinic.
    static func platformAdmin(_ admin: AdminDatabase) async throws -> UUID {
        let id = UUIDv7.generate()
        try await admin.unscoped(reason: "elevated session tests: platform admin", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO users (id, is_platform_admin) VALUES (\(id), \(true))")
        }
        return id
    }

    /// Moves a session's window into the past (both ends, so `expires_at > opened_at` holds).
    static func expire(_ session: ElevatedSession, _ admin: AdminDatabase) async throws {
        let table = session.kind == .breakGlass ? "break_glass_sessions" : "patient_impersonation_sessions"
        try await admin.withOrganization(session.organizationID, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("""
                UPDATE \(unsafeRaw: table) SET opened_at = \(Date().addingTimeInterval(-7200)), expires_at = \(Date().addingTimeInterval(-3600)) \
                WHERE id = \(session.id)
                """)
        }
    }

    static func auditCount(_ admin: AdminDatabase, session: UUID, action: String) async throws -> Int {
        try await admin.unscoped(reason: "elevated session tests: count audit rows", actor: .system("tenancy-tests")) { tx in
            try await tx.first("""
                SELECT count(*) AS n FROM audit_log WHERE action = \(action) \
                AND (resource_id = \(session) OR CAST(metadata AS text) LIKE \("%" + session.uuidString.lowercased() + "%"))
                """)!.decode("n", as: Int.self)
        }
    }

    @Test("break-glass: audited access while open, refused after expiry, swept once", arguments: TenancyBackend.all)
    func breakGlass(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let sessions = ElevatedSessions(admin: databases.admin)
        let operator_ = try await Self.platformAdmin(databases.admin)

        let session = try await sessions.openBreakGlass(
            organization: fixture.a.id, user: operator_, reason: "patient unconscious in ER, records needed", duration: .seconds(900)
        )
        #expect(session.expiresAt > Date().addingTimeInterval(800))
        #expect(try await Self.auditCount(databases.admin, session: session.id, action: "break_glass.open") == 1)
        for _ in 0..<2 {
            let patients = try await databases.app.query(session.context, "SELECT id FROM patients")
            #expect(Set(try patients.map { try $0.decode("id", as: UUID.self) }) == [fixture.a1.patient, fixture.a2.patient])
        }
        #expect(try await Self.auditCount(databases.admin, session: session.id, action: "break_glass.access") == 2)
        let resumed = try await sessions.resume(.breakGlass, id: session.id, organization: fixture.a.id, actor: operator_)
        #expect(resumed.context == session.context)
        // Someone else cannot use the session id.
        let stolen = TenantContext(organizationID: fixture.a.id, userID: fixture.a.staffUser, role: .admin, actionContext: .breakGlass(sessionID: session.id))
        let theft = await #expect(throws: TenancyError.self) { try await databases.app.query(stolen, "SELECT id FROM patients") }
        #expect(theft?.code == .sessionNotOpen)

        // After expiry: refused before the body runs, nothing audited, nothing resumed.
        try await Self.expire(session, databases.admin)
        let ran = Mutex(false)
        let denied = await #expect(throws: TenancyError.self) {
            try await databases.app.withTenant(session.context) { tx in
                ran.withLock { $0 = true }
                return try await tx.query("SELECT id FROM patients")
            }
        }
        #expect(denied?.code == .sessionNotOpen)
        #expect(ran.withLock { $0 } == false, "the body did not run")
        await #expect(throws: TenancyError.self) { try await databases.app.execute(session.context, "DELETE FROM patients") }
        await #expect(throws: TenancyError.self) {
            try await sessions.resume(.breakGlass, id: session.id, organization: fixture.a.id, actor: operator_)
        }
        #expect(try await Self.auditCount(databases.admin, session: session.id, action: "break_glass.access") == 2)

        // The sweep closes it at its expiry, once.
        _ = try await sessions.sweepExpired()
        _ = try await sessions.sweepExpired()
        #expect(try await Self.auditCount(databases.admin, session: session.id, action: "break_glass.expire") == 1)
        let row = try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in
            try await tx.first("SELECT closed_at, expires_at, closed_by FROM break_glass_sessions WHERE id = \(session.id)")!
        }
        #expect(try row.decode("closed_at", as: Date.self) == (try row.decode("expires_at", as: Date.self)))
        #expect(try row.decode("closed_by", as: String.self) == "expiry")

        // Bad requests change nothing.
        let shortReason = await #expect(throws: TenancyError.self) {
            try await sessions.openBreakGlass(organization: fixture.a.id, user: operator_, reason: "because")
        }
        #expect(shortReason?.code == .invalidReason)
        await #expect(throws: TenancyError.self) {
            try await sessions.openBreakGlass(organization: fixture.a.id, user: operator_, reason: "a long enough reason", duration: .seconds(5 * 3600))
        }
        let patient = await #expect(throws: TenancyError.self) {
            try await sessions.openBreakGlass(organization: fixture.a.id, user: fixture.a1.user, reason: "a patient asking for everything")
        }
        #expect(patient?.code == .notAMember)
        let otherClinic = await #expect(throws: TenancyError.self) {
            try await sessions.openBreakGlass(organization: fixture.a.id, user: fixture.b.staffUser, reason: "staff of another clinic")
        }
        #expect(otherClinic?.code == .notAMember)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("audit rows carry the request's id and client address from AuditOrigin, in canonical form; an event's own win; a non-address is refused or left out", arguments: TenancyBackend.all)
    func auditOrigin(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let sessions = ElevatedSessions(admin: databases.admin)
        let owner = TenantContext(organizationID: fixture.a.id, userID: fixture.a.staffUser, role: .owner)
        func rows(_ action: String) async throws -> [AuditLog.Entry] {
            try await AuditLog(tenants: databases.app).page(owner, limit: 200).entries.filter { $0.action == action }
        }
        // From a request: the tenant's own row, a session opened on the admin role, and the
        // elevated session's access gate all carry the origin.
        let session = try await AuditOrigin.$current.withValue(AuditOrigin(requestID: "req-origin-1", clientAddress: "2001:DB8:0:0::7")) {
            try await databases.app.withTenant(owner) { tx in try await tx.audit(AuditEvent(action: "test.origin")) }
            let session = try await sessions.openBreakGlass(organization: fixture.a.id, user: fixture.a.staffUser, reason: "origin test: records needed")
            _ = try await databases.app.query(session.context, "SELECT id FROM patients")
            return session
        }
        for action in ["test.origin", "break_glass.open", "break_glass.access"] {
            let found = try await rows(action)
            #expect(found.count == 1, "\(backend) \(action)")
            #expect(found.first?.requestID == "req-origin-1" && found.first?.clientAddress == "2001:db8::7", "\(backend) \(action): \(found)")
        }
        // An event's own values win; an IPv4-mapped address is stored as IPv4.
        try await AuditOrigin.$current.withValue(AuditOrigin(requestID: "req-origin-2", clientAddress: "198.51.100.4")) {
            try await databases.app.withTenant(owner) { tx in
                try await tx.audit(AuditEvent(action: "test.own", requestID: "own-id", clientAddress: "::ffff:203.0.113.9"))
            }
        }
        let own = try await rows("test.own")
        #expect(own.first?.requestID == "own-id" && own.first?.clientAddress == "203.0.113.9", "\(backend): \(own)")
        // No request: neither. A named non-address is refused and writes nothing; one in the
        // origin is left out.
        try await databases.app.withTenant(owner) { tx in try await tx.audit(AuditEvent(action: "test.none")) }
        let none = try await rows("test.none")
        #expect(none.count == 1 && none.first?.requestID == nil && none.first?.clientAddress == nil, "\(backend): \(none)")
        for bad in ["", "localhost", "1.2.3", "1.2.3.4/32", "1.2.3.4; DROP TABLE audit_log", String(repeating: "1", count: 100)] {
            let refused = await #expect(throws: TenancyError.self) {
                try await databases.app.withTenant(owner) { tx in try await tx.audit(AuditEvent(action: "test.bad", clientAddress: bad)) }
            }
            #expect(refused?.code == .invalidContext, "\(backend) \(bad)")
        }
        #expect(try await rows("test.bad").isEmpty)
        try await AuditOrigin.$current.withValue(AuditOrigin(clientAddress: "not an address")) {
            try await databases.app.withTenant(owner) { tx in try await tx.audit(AuditEvent(action: "test.dropped")) }
        }
        #expect(try await rows("test.dropped").first.map { $0.clientAddress == nil } == true)
        _ = try await sessions.close(.breakGlass, id: session.id, organization: fixture.a.id, by: fixture.a.staffUser)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("impersonation: the patient's view, audited as the staff member, ends on close", arguments: TenancyBackend.all)
    func impersonation(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let sessions = ElevatedSessions(admin: databases.admin)
        let session = try await sessions.openImpersonation(
            organization: fixture.a.id, actor: fixture.a.staffUser, patient: fixture.a1.patient,
            reason: "patient reports the exercise page is blank"
        )
        #expect(session.context.role == .patient)
        #expect(session.context.userID == fixture.a1.user)
        let seen = try await databases.app.withTenant(session.context) { tx in
            try await tx.audit(AuditEvent(action: "patient.view_plan"))
            return try await tx.query("SELECT id FROM patients")
        }
        #expect(try seen.map { try $0.decode("id", as: UUID.self) } == [fixture.a1.patient], "only the impersonated patient's record")
        let rows = try await databases.admin.withOrganization(fixture.a.id, actor: .system("tenancy-tests")) { tx in
            try await tx.query("""
                SELECT action, actor_user_id, action_context FROM audit_log \
                WHERE action IN ('impersonation.access', 'patient.view_plan') AND CAST(metadata AS text) LIKE \("%" + session.id.uuidString.lowercased() + "%")
                """)
        }
        #expect(rows.count == 2)
        for row in rows {
            #expect(try row.decode("actor_user_id", as: UUID.self) == fixture.a.staffUser, "audited as the staff member")
            #expect(try row.decode("action_context", as: String.self) == "impersonation")
        }
        // A forged actor on the context is refused.
        let forged = TenantContext(
            organizationID: fixture.a.id, userID: fixture.a1.user, role: .patient,
            actionContext: .impersonation(sessionID: session.id, actorUserID: fixture.a2.user)
        )
        await #expect(throws: TenancyError.self) { try await databases.app.query(forged, "SELECT id FROM patients") }

        // Only the opener (or a platform administrator) closes it.
        let notYours = await #expect(throws: TenancyError.self) { try await sessions.close(session, by: fixture.a2.user) }
        #expect(notYours?.code == .notAMember)
        await #expect(throws: TenancyError.self) { try await sessions.close(session, by: fixture.a2.user, byAdmin: true) }
        #expect(try await sessions.close(session, by: fixture.a.staffUser))
        #expect(try await sessions.close(session, by: fixture.a.staffUser) == false)
        let closed = await #expect(throws: TenancyError.self) { try await databases.app.query(session.context, "SELECT id FROM patients") }
        #expect(closed?.code == .sessionNotOpen)
        let cross = await #expect(throws: TenancyError.self) {
            try await sessions.openImpersonation(
                organization: fixture.a.id, actor: fixture.b.staffUser, patient: fixture.a1.patient, reason: "staff of another clinic"
            )
        }
        #expect(cross?.code == .notAMember)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }

    @Test("two sweeps at once write one close row per session", arguments: TenancyBackend.all)
    func concurrentSweeps(backend: TenancyBackend) async throws {
        let databases = try await backend.open(maximumConnections: 8)
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let sessions = ElevatedSessions(admin: databases.admin)
        let operator_ = try await Self.platformAdmin(databases.admin)
        var opened: [ElevatedSession] = []
        for index in 0..<12 {
            let session = index.isMultiple(of: 2)
                ? try await sessions.openBreakGlass(organization: fixture.a.id, user: operator_, reason: "sweep test session \(index)")
                : try await sessions.openImpersonation(
                    organization: fixture.a.id, actor: fixture.a.staffUser, patient: fixture.a2.patient, reason: "sweep test session \(index)"
                )
            try await Self.expire(session, databases.admin)
            opened.append(session)
        }
        let small = ElevatedSessions(admin: databases.admin)
        async let first = sessions.sweepExpired(batchSize: 3)
        async let second = small.sweepExpired(batchSize: 5)
        let (one, two) = try await (first, second)
        if backend == .sqlite {
            // A database of its own: these two sweeps are the only ones, so they closed exactly ours.
            #expect(one.breakGlass + two.breakGlass == 6)
            #expect(one.impersonation + two.impersonation == 6)
        }  // On the shared Postgres schema, other tests' sweeps may close some of ours first.
        for session in opened {
            let action = session.kind == .breakGlass ? "break_glass.expire" : "impersonation.expire"
            #expect(try await Self.auditCount(databases.admin, session: session.id, action: action) == 1, "\(backend) \(session.kind)")
        }
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }
}

/// The library behind the Core API's session and audit-log routes, on every backend: closing by
/// id, listing the open sessions by role, and the audit log's keyset pages read through the app
/// role under the reader's own context.
@Suite("Session listings and the audit log", .timeLimit(.minutes(2)))
struct AuditLogTests {
    @Test("list, close by id and page the audit log: by role, never across clinics, every row once", arguments: TenancyBackend.all)
    func listingsAndPages(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let owner = UUIDv7.generate()
        try await databases.admin.unscoped(reason: "audit log tests: an owner", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO users (id) VALUES (\(owner))")
            try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.a.id), \(owner), 'owner')")
        }
        let ownerContext = TenantContext(organizationID: fixture.a.id, userID: owner, role: .owner)
        let specialist = fixture.context(staffOf: fixture.a)
        let sessions = ElevatedSessions(admin: databases.admin)
        for index in 0..<3 {
            let session = try await sessions.openBreakGlass(organization: fixture.a.id, user: owner, reason: "audit page test, round \(index)")
            #expect(try await sessions.close(.breakGlass, id: session.id, organization: fixture.a.id, by: owner))
            #expect(try await sessions.close(.breakGlass, id: session.id, organization: fixture.a.id, by: owner) == false)
        }
        let own = try await sessions.openBreakGlass(organization: fixture.a.id, user: owner, reason: "still open for the listing")
        let theirs = try await sessions.openBreakGlass(organization: fixture.a.id, user: specialist.userID, reason: "the specialist's own session")
        // The fixture has sessions of its own: the owner sees every open one of clinic A, the
        // specialist its own.
        let openInA = try await databases.admin.unscoped(reason: "audit log tests: open sessions", actor: .system("tenancy-tests")) { tx in
            var ids: Set<UUID> = []
            for table in ["break_glass_sessions", "patient_impersonation_sessions"] {
                for row in try await tx.query("""
                    SELECT id FROM \(unsafeRaw: table) WHERE organization_id = \(fixture.a.id) AND closed_at IS NULL AND expires_at > \(tx.dialect.now)
                    """) { ids.insert(try row.decode("id", as: UUID.self)) }
            }
            return ids
        }
        #expect(openInA.isSuperset(of: [own.id, theirs.id]))
        #expect(Set(try await sessions.listOpen(organization: fixture.a.id, viewer: ownerContext).map(\.id)) == openInA)
        let specialistSees = try await sessions.listOpen(organization: fixture.a.id, viewer: specialist)
        #expect(specialistSees.contains { $0.id == theirs.id } && specialistSees.allSatisfy { $0.actorUserID == specialist.userID } && !specialistSees.contains { $0.id == own.id })
        await #expect(throws: TenancyError.self) { try await sessions.listOpen(organization: fixture.a.id, viewer: fixture.context(patient: fixture.a1, in: fixture.a)) }
        // Clinic B's staff cannot close clinic A's session: it does not exist for them.
        let foreign = await #expect(throws: TenancyError.self) {
            try await sessions.close(.breakGlass, id: own.id, organization: fixture.b.id, by: fixture.b.staffUser)
        }
        #expect(foreign?.code == .notFound && foreign?.httpStatus == 404)
        let notTheirs = await #expect(throws: TenancyError.self) {
            try await sessions.close(.breakGlass, id: own.id, organization: fixture.a.id, by: specialist.userID)
        }
        #expect(notTheirs?.code == .notAMember)

        let expected = try await databases.admin.unscoped(reason: "audit log tests: count", actor: .system("tenancy-tests")) { tx in
            try #require(try await tx.first("SELECT count(*) AS n FROM audit_log WHERE organization_id = \(fixture.a.id)")).decode("n", as: Int.self)
        }
        #expect(expected >= 8)
        let log = AuditLog(tenants: databases.app)
        for limit in [1, 3, 200] {
            var seen: [AuditLog.Entry] = []
            var cursor: AuditLog.Cursor?
            repeat {
                let page = try await log.page(ownerContext, after: cursor, limit: limit)
                #expect(page.entries.count <= limit)
                seen += page.entries
                // The cursor travels as text between requests.
                cursor = try page.next.map { try #require(AuditLog.Cursor($0.description)) }
            } while cursor != nil && seen.count <= expected
            #expect(seen.count == expected, "\(backend) limit \(limit)")
            #expect(Set(seen.map(\.id)).count == seen.count)
            #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.createdAt > $1.createdAt || ($0.createdAt == $1.createdAt && $0.id.uuidString > $1.id.uuidString) })
            #expect(seen.allSatisfy { $0.organizationID == fixture.a.id })
        }
        let opened = try await log.page(ownerContext, limit: 200).entries.filter { $0.action == "break_glass.open" }
        #expect(opened.count == 5 && opened.allSatisfy { $0.metadata["duration_seconds"] == "3600" && $0.resourceType == "break_glass_session" })
        // A specialist may not read the log.
        let refused = await #expect(throws: TenancyError.self) { try await log.page(specialist) }
        #expect(refused?.code == .roleNotAllowed)
        await #expect(throws: TenancyError.self) { try await log.page(ownerContext, limit: 0) }
        #expect(AuditLog.Cursor("not a cursor") == nil && AuditLog.Cursor(Base64URL.encode(Data("12|nope".utf8))) == nil)
        try await fixture.remove(admin: databases.admin)
        try await databases.admin.unscoped(reason: "audit log tests: cleanup", actor: .system("tenancy-tests")) { tx in
            try await tx.execute("DELETE FROM users WHERE id = \(owner)")
        }
        await databases.close()
    }

    @Test("the public lookups by slug and verified domain read across clinics, and only what they name", arguments: TenancyBackend.all)
    func publicLookups(backend: TenancyBackend) async throws {
        let databases = try await backend.open()
        let fixture = try await TenancyFixture.make(admin: databases.admin)
        let verified = "v-\(UUIDv7.generate().lowercasedString.suffix(12)).example.ro"
        let pending = "p-\(UUIDv7.generate().lowercasedString.suffix(12)).example.ro"
        try await databases.admin.withOrganization(fixture.b.id, actor: .system("tenancy-tests")) { tx in
            try await tx.execute("INSERT INTO organization_domains (id, organization_id, domain, verified_at) VALUES (\(UUIDv7.generate()), \(fixture.b.id), \(verified), \(Date()))")
            try await tx.execute("INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(fixture.b.id), \(pending))")
        }
        let slug = try await databases.admin.withOrganization(fixture.b.id, actor: .system("tenancy-tests")) { tx in
            try #require(try await tx.first("SELECT slug FROM organizations WHERE id = \(fixture.b.id)")).decode("slug", as: String.self)
        }
        #expect(try await databases.admin.organization(verifiedDomain: verified)?.id == fixture.b.id)
        #expect(try await databases.admin.organization(verifiedDomain: pending) == nil)
        #expect(try await databases.admin.organization(slug: slug)?.id == fixture.b.id)
        #expect(try await databases.admin.organization(slug: slug + "-nope") == nil)
        try await fixture.remove(admin: databases.admin)
        await databases.close()
    }
}
