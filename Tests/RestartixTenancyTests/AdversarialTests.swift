import Foundation
import Synchronization
import RestartixPlatform
import RestartixKit
@testable import RestartixTenancy
import RestartixTestSupport
import Testing

/// The threat model of Documentation/RestartixTenancy.md, tried as an attacker would: an
/// app-role client that runs any SQL inside (or outside) a kit transaction, on the same
/// connection as its victim. Every attack asserts that it is refused and that nothing changed
/// (every row id and right-bearing column of both clinics compared before and after); every
/// probe also runs the legitimate twin of the attack, which must succeed, so a rule that
/// refuses everything fails here too.
@Suite("Adversarial: a hostile app-role client", .serialized, .timeLimit(.minutes(2)))
struct AdversarialTests {
    /// Clinic A's members by role, a platform administrator, and the shared fixture.
    struct World: Sendable {
        let fixture: TenancyFixture
        let owner: UUID
        let admin: UUID
        let assistant: UUID
        let platformAdmin: UUID
        /// Users with no membership, for membership inserts.
        let strangers: [UUID]

        var specialist: UUID { fixture.a.staffUser }
        var clinics: [UUID] { [fixture.a.id, fixture.b.id] }
        var users: [UUID] {
            [owner, admin, specialist, assistant, platformAdmin, fixture.b.staffUser] + strangers + (fixture.a.patients + fixture.b.patients).map(\.user)
        }

        func context(_ role: TenantRole) -> TenantContext {
            switch role {
            case .owner: TenantContext(organizationID: fixture.a.id, userID: owner, role: .owner)
            case .admin: TenantContext(organizationID: fixture.a.id, userID: admin, role: .admin)
            case .specialist: TenantContext(organizationID: fixture.a.id, userID: specialist, role: .specialist)
            case .assistant: TenantContext(organizationID: fixture.a.id, userID: assistant, role: .assistant)
            case .patient: fixture.context(patient: fixture.a1, in: fixture.a)
            }
        }

        func user(_ role: TenantRole) -> UUID { context(role).userID }

        static func make(admin database: AdminDatabase) async throws -> World {
            let fixture = try await TenancyFixture.make(admin: database)
            let world = World(
                fixture: fixture, owner: UUIDv7.generate(), admin: UUIDv7.generate(), assistant: UUIDv7.generate(),
                platformAdmin: UUIDv7.generate(), strangers: (0..<5).map { _ in UUIDv7.generate() }
            )
            try await database.unscoped(reason: "adversarial test fixture", actor: .system("tenancy-tests")) { tx in
                for (user, role) in [(world.owner, "owner"), (world.admin, "admin"), (world.assistant, "assistant")] {
                    try await tx.execute("INSERT INTO users (id) VALUES (\(user))")
                    try await tx.execute("""
                        INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(fixture.a.id), \(user), \(role))
                        """)
                }
                try await tx.execute("INSERT INTO users (id, is_platform_admin, primary_email) VALUES (\(world.platformAdmin), true, 'root@platform.test')")
                for user in world.strangers { try await tx.execute("INSERT INTO users (id) VALUES (\(user))") }
            }
            return world
        }

        func remove(admin database: AdminDatabase) async throws {
            try await fixture.remove(admin: database)
            try await database.unscoped(reason: "adversarial test cleanup", actor: .system("tenancy-tests")) { tx in
                for user in [owner, admin, assistant, platformAdmin] + strangers {
                    try await tx.execute("DELETE FROM users WHERE id = \(user)")
                }
            }
        }

        func snapshot(_ admin: AdminDatabase) async throws -> [String: [String]] {
            try await ClinicState.snapshot(admin, clinics: clinics, users: users)
        }
    }

    /// Runs `body` against a fresh world on `backend`, removing it afterwards.
    func withWorld(_ backend: TenancyBackend, _ body: (HostileDatabases, World) async throws -> Void) async throws {
        try await HostileDatabases.open(backend).run { databases in
            let world = try await World.make(admin: databases.admin)
            do {
                try await body(databases, world)
            } catch {
                try? await world.remove(admin: databases.admin)
                throw error
            }
            try await world.remove(admin: databases.admin)
        }
    }

    // MARK: - 1, 2: shadow tables and session state on a pooled connection

    @Test("temporary tables and views cannot be created to shadow a tenant table", arguments: TenancyBackend.all)
    func noShadowTables(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let before = try await world.snapshot(databases.admin)
            for attack: SQLQuery in [
                "CREATE TEMP TABLE patients (id uuid, organization_id uuid)",
                "CREATE TEMPORARY TABLE audit_log AS SELECT 1 AS id",
                "CREATE TEMP VIEW patients AS SELECT 1 AS id",
            ] {
                let refusal = await Refusal.of(attack, as: world.context(.specialist), on: databases.app)
                // Postgres: no TEMPORARY on the database; SQLite: the authorizer refuses DDL.
                #expect(refusal == .privilege, "\(backend): \(attack) → \(refusal)")
                let outside = await Refusal.classify { try await databases.raw.execute(attack) }
                #expect(outside == .privilege, "\(backend) outside a transaction: \(attack) → \(outside)")
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // Control: the victim reads its own clinic's rows, all of them.
            let rows = try await databases.app.query(world.context(.specialist), "SELECT id FROM patients")
            #expect(rows.count == 2)
        }
    }

    @Test("a connection poisoned with session-level settings changes nothing in the next client's transaction", arguments: TenancyBackend.all)
    func poisonedConnection(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let attacker = world.context(.specialist)
            let victim = world.fixture.context(staffOf: world.fixture.b)
            let b = world.fixture.b
            let session = UUIDv7.generate()
            // The attacker leaves clinic A's ids, an owner role, a session and unscoped access,
            // and (Postgres) every setting that would break or redirect a later transaction.
            let attackerPID = try await databases.app.withTenant(attacker) { tx in
                var poison: [SQLQuery] = [
                    "SELECT set_config('app.current_org_id', \(world.fixture.a.id.lowercasedString), false)",
                    "SELECT set_config('app.current_user_id', \(world.owner.lowercasedString), false)",
                    "SELECT set_config('app.current_role', 'owner', false)",
                    "SELECT set_config('app.session_id', \(session.lowercasedString), false)",
                ]
                if backend != .sqlite {
                    poison += [
                        "SELECT set_config('app.unscoped', 'on', false)",
                        "SET default_transaction_read_only = on",
                        "SET default_transaction_isolation = 'serializable'",
                        "SET row_security = off",
                        "SET lock_timeout = '1ms'",
                        "SET synchronous_commit = off",
                        // Takes effect at once, inside this transaction too: the poison goes out
                        // in one pipeline (no idle gap inside it), and 3 s outlasts the gap before
                        // this transaction's COMMIT on a loaded machine (50 ms once did not).
                        "SET idle_in_transaction_session_timeout = '3s'",
                        "SET search_path = pg_catalog",
                        // Short enough that the victim's 1.5 s sleep below would hit it, long enough
                        // that the kit's own first statement (which runs before it pins its timeout,
                        // under whatever the connection holds) is not cut on a loaded CI machine,
                        // as 5 ms once was.
                        "SET statement_timeout = '1s'",
                    ]
                }
                let pid: Int? = backend == .sqlite ? nil : try await tx.first("SELECT pg_backend_pid() AS pid")?.decode("pid", as: Int.self)
                _ = try await tx.pipeline(poison)
                return pid
            }
            if backend == .pgbouncer {
                // The attack's control: a client outside the kit on that server connection obeys it.
                let leaked = try await databases.raw.query("SELECT current_setting('app.current_org_id') AS org, current_setting('search_path') AS path")
                #expect(try leaked.first?.decode("org", as: String.self) == world.fixture.a.id.lowercasedString)
                #expect(try leaked.first?.decode("path", as: String.self) == "pg_catalog")
            }

            // The victim, clinic B's specialist, on the same connection.
            try await databases.app.withTenant(victim) { tx in
                if backend != .sqlite {
                    let pid = try await tx.first("SELECT pg_backend_pid() AS pid")?.decode("pid", as: Int.self)
                    #expect(pid == attackerPID, "attacker and victim must share the server connection")
                    let state = try #require(try await tx.first("""
                        SELECT current_setting('transaction_read_only') AS ro, current_setting('transaction_isolation') AS iso, \
                        current_setting('row_security') AS rls, current_schema()::text AS schema, \
                        current_setting('synchronous_commit') AS sync
                        """))
                    #expect(try state.decode("sync", as: String.self) == "on")
                    #expect(try state.decode("ro", as: String.self) == "off")
                    #expect(try state.decode("iso", as: String.self) == "read committed")
                    #expect(try state.decode("rls", as: String.self) == "on")
                    #expect(try state.decode("schema", as: String.self) == "public")
                    // Longer than the leaked statement timeout, then idle longer than the leaked
                    // idle timeout: both are the kit's own inside its transaction.
                    try await tx.execute("SELECT pg_sleep(1.5)")
                    try await Task.sleep(for: .milliseconds(3_500))
                }
                let settings = try #require(try await tx.first("""
                    SELECT current_setting('app.current_org_id') AS org, current_setting('app.current_role') AS role, \
                    current_setting('app.session_id') AS session
                    """))
                #expect(try settings.decode("org", as: String.self) == b.id.lowercasedString)
                #expect(try settings.decode("role", as: String.self) == "specialist")
                #expect(try settings.decode("session", as: String.self) == "")
                // B's one patient, none of A's; a write succeeds and stays in B.
                let patients = try await tx.query("SELECT organization_id FROM patients")
                #expect(try patients.map { try $0.decode("organization_id", as: UUID.self) } == [b.id])
                let sessions = try await tx.query("SELECT id FROM break_glass_sessions WHERE id = \(session)")
                #expect(sessions.isEmpty)
                try await tx.audit(AuditEvent(action: "test.victim_write"))
                if backend != .sqlite {
                    let unscoped = try await tx.first("SELECT current_setting('app.unscoped') AS u")
                    #expect(try unscoped?.decode("u", as: String.self) == "")
                }
            }
            // A one-round-trip transaction on the same connection as well.
            let count = try await databases.app.query(victim, "SELECT count(*) AS n FROM patients")
            #expect(try count.first?.decode("n", as: Int.self) == 1)
            // The boot check (and /ready) on the still-poisoned connection: it puts back its own
            // path, row security and timeouts first, so the poison neither fails nor fools it.
            try await databases.app.verifyIsolation()
        }
    }

    // MARK: - 3: role defaults

    @Test("role defaults the app or admin role gives itself are named by the boot check", .enabled(if: TenancyBackend.all.contains(.postgresDirect)))
    func roleDefaults() async throws {
        try await SchemaOnce.shared.prepare()
        for (urlName, role, name) in [("DATABASE_APP_DIRECT_URL", IsolationCheck.Role.app, "restartix_app"),
                                      ("DATABASE_ADMIN_DIRECT_URL", .admin, "restartix_admin")] {
            let raw = try Database(url: TenancyBackend.require(urlName), logger: TenancyBackend.logger)
            // Inside a transaction that is rolled back: a role default is global, and the tests
            // beside this one must not see it.
            var found: [String] = []
            do {
                try await raw.transaction { tx in
                    try await tx.execute(SQLQuery(unsafeSQL: "ALTER ROLE \(name) SET work_mem = '64kB'"))
                    try await tx.execute(SQLQuery(unsafeSQL: "ALTER ROLE \(name) IN DATABASE restartix SET search_path = pg_catalog"))
                    found = try await IsolationCheck.hardeningProblems(tx, role: role, name: name)
                    throw Rollback()
                }
            } catch is Rollback {}
            #expect(found.contains { $0.contains(name) && $0.contains("work_mem") && $0.contains("every database") })
            #expect(found.contains { $0.contains(name) && $0.contains("search_path") && $0.contains("this database") })
            #expect(!found.contains { $0.contains("64kB") || $0.contains("pg_catalog") }, "names only, never values")
            // Control: without them, the same check finds nothing.
            let clean = try await raw.transaction { tx in try await IsolationCheck.hardeningProblems(tx, role: role, name: name) }
            #expect(clean == [], "\(name)")
            await raw.shutdown()
        }
    }

    @Test("an advisory lock held by an app client stalls the partition roll only until its lock timeout", .enabled(if: TenancyBackend.all.contains(.postgresDirect)))
    func advisoryLockHostage() async throws {
        try await SchemaOnce.shared.prepare()
        var single = try DatabaseConfiguration(url: TenancyBackend.require("DATABASE_APP_DIRECT_URL"))
        single.maximumConnections = 1
        let app = Database(configuration: single, logger: TenancyBackend.logger)
        let owner = try Database(url: TenancyBackend.require("DATABASE_DIRECT_URL"), logger: TenancyBackend.logger)
        // The key the roller takes for audit_log, held at session level by the app role.
        try await app.execute("SELECT pg_advisory_lock(hashtext('restartix_ensure_monthly_partitions'), hashtext('public.audit_log'))")
        let started = ContinuousClock.now
        let error = await #expect(throws: DatabaseError.self) {
            try await PartitionRoller(database: owner, lockTimeout: .milliseconds(300)).roll(monthsAhead: 1)
        }
        #expect(error?.sqlState == "55P03", "lock_not_available, not a hang")
        #expect(ContinuousClock.now - started < .seconds(5))
        // Control: released, the same roll goes through.
        try await app.execute("SELECT pg_advisory_unlock_all()")
        #expect(try await PartitionRoller(database: owner, lockTimeout: .milliseconds(300)).roll(monthsAhead: 1) != nil)
        await app.shutdown()
        await owner.shutdown()
    }

    // MARK: - 4: acting in someone else's name

    @Test("elevated sessions are opened, changed and removed only on the admin path", arguments: TenancyBackend.all)
    func elevatedSessions(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let sessions = ElevatedSessions(admin: databases.admin)
            let open = try await sessions.openBreakGlass(organization: world.fixture.a.id, user: world.specialist, reason: "emergency access for the test")
            let before = try await world.snapshot(databases.admin)
            let later = Date().addingTimeInterval(86_400)
            for role in TenantRole.allCases {
                let context = world.context(role)
                for target in [world.owner, world.fixture.b.staffUser, world.platformAdmin, context.userID] {
                    let insert: SQLQuery = """
                        INSERT INTO break_glass_sessions (id, organization_id, user_id, reason, expires_at) \
                        VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(target), 'forged emergency access', \(later))
                        """
                    #expect(await Refusal.of(insert, as: context, on: databases.app) == .privilege, "\(backend) \(role) opens for another")
                    let impersonate: SQLQuery = """
                        INSERT INTO patient_impersonation_sessions (id, organization_id, user_id, patient_id, reason, expires_at) \
                        VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(target), \(world.fixture.a1.patient), 'forged support session', \(later))
                        """
                    #expect(await Refusal.of(impersonate, as: context, on: databases.app) == .privilege, "\(backend) \(role) impersonates")
                }
                for change: SQLQuery in [
                    "UPDATE break_glass_sessions SET expires_at = \(later) WHERE id = \(open.id)",
                    "UPDATE break_glass_sessions SET closed_at = NULL WHERE id = \(open.id)",
                    "UPDATE break_glass_sessions SET user_id = \(world.owner) WHERE id = \(open.id)",
                    "DELETE FROM break_glass_sessions WHERE id = \(open.id)",
                ] {
                    #expect(await Refusal.of(change, as: context, on: databases.app) == .privilege, "\(backend) \(role): \(change)")
                }
            }
            // Break-glass acts with the admin role for records, not for people or domains.
            let member: SQLQuery = """
                INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(world.strangers[0]), 'specialist')
                """
            #expect(await Refusal.of(member, as: open.context, on: databases.app) == .rowLevelSecurity, "\(backend) break-glass adds a member")
            let domain: SQLQuery = """
                INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), 'glass.example.test')
                """
            #expect(await Refusal.of(domain, as: open.context, on: databases.app) == .rowLevelSecurity, "\(backend) break-glass adds a domain")
            #expect(try await world.snapshot(databases.admin) == before)
            // Controls: the admin path opens, uses and closes it, each audited.
            try await databases.app.withTenant(open.context) { tx in
                try await tx.audit(AuditEvent(action: "patient.read"))
            }
            #expect(try await sessions.close(open, by: world.specialist))
        }
    }

    @Test("who may open and close elevated sessions: every member role, another clinic's staff, a platform admin, a stranger", arguments: TenancyBackend.all)
    func elevatedSessionMatrix(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let sessions = ElevatedSessions(admin: databases.admin)
            let people: [(String, UUID, Bool)] = TenantRole.allCases.map { ($0.rawValue, world.user($0), $0.isStaff) }
                + [("B's staff", world.fixture.b.staffUser, false), ("platform admin", world.platformAdmin, true), ("stranger", world.strangers[4], false)]
            var cells = 0
            for (name, user, mayOpen) in people {
                let glass = await Refusal.classify {
                    _ = try await sessions.openBreakGlass(organization: world.fixture.a.id, user: user, reason: "matrix emergency access"); return 1
                }
                let impersonation = await Refusal.classify {
                    _ = try await sessions.openImpersonation(
                        organization: world.fixture.a.id, actor: user, patient: world.fixture.a2.patient, reason: "matrix support session"
                    )
                    return 1
                }
                for outcome in [glass, impersonation] {
                    #expect((outcome == .none(1)) == mayOpen, "\(backend) \(name) opens → \(outcome)")
                    cells += 1
                }
            }
            // Closing: the opener, or a platform administrator with byAdmin; nobody else.
            let open = try await sessions.openBreakGlass(organization: world.fixture.a.id, user: world.specialist, reason: "the session to close")
            for (name, user, _) in people where user != world.specialist {
                for byAdmin in [false, true] {
                    let closed: Bool
                    do { closed = try await sessions.close(open, by: user, byAdmin: byAdmin) } catch { closed = false }
                    #expect(!closed || (byAdmin && user == world.platformAdmin), "\(backend) \(name) closes (byAdmin \(byAdmin))")
                    if closed { try await databases.admin.withOrganization(world.fixture.a.id, actor: .system("tenancy-tests")) { tx in
                        try await tx.execute("UPDATE break_glass_sessions SET closed_at = NULL, closed_by = NULL WHERE id = \(open.id)")
                    } }
                    cells += 1
                }
            }
            #expect(try await sessions.close(open, by: world.specialist))
            #expect(cells == 8 * 2 + 7 * 2)
        }
    }

    @Test("audit rows name the context's user or its open session, with the database's clock", arguments: TenancyBackend.all)
    func auditForgery(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let sessions = ElevatedSessions(admin: databases.admin)
            // The owner impersonates patient A1: an open session that is not the specialist's.
            let theirs = try await sessions.openImpersonation(
                organization: world.fixture.a.id, actor: world.owner, patient: world.fixture.a1.patient, reason: "support session for the test"
            )
            let glass = try await sessions.openBreakGlass(organization: world.fixture.a.id, user: world.owner, reason: "owner's emergency access")
            let before = try await world.snapshot(databases.admin)
            let specialist = world.context(.specialist)
            let org = world.fixture.a.id
            func audit(actor: UUID, context: String, kind: String = "user", createdAt: Date? = nil) -> SQLQuery {
                var columns: SQLQuery = "id, organization_id, actor_user_id, actor_kind, action, action_context"
                var values: SQLQuery = "\(UUIDv7.generate()), \(org), \(actor), \(kind), 'forged.action', \(context)"
                if let createdAt {
                    columns.append(", created_at")
                    values.append(", \(createdAt)")
                }
                return "INSERT INTO audit_log (\(columns)) VALUES (\(values))"
            }
            let attacks: [(String, SQLQuery, TenantContext)] = [
                ("another user's normal row", audit(actor: world.owner, context: "normal"), specialist),
                ("a platform admin's row", audit(actor: world.platformAdmin, context: "normal"), specialist),
                ("break_glass with no session", audit(actor: world.specialist, context: "break_glass"), specialist),
                ("impersonation with no session", audit(actor: world.owner, context: "impersonation"), specialist),
                ("a service row", audit(actor: world.specialist, context: "normal", kind: "service"), specialist),
                ("a platform_admin row", audit(actor: world.specialist, context: "platform_admin"), specialist),
                ("a backdated row", audit(actor: world.specialist, context: "normal", createdAt: Date(timeIntervalSinceNow: -86_400 * 30)), specialist),
                ("a future-dated row", audit(actor: world.specialist, context: "normal", createdAt: Date(timeIntervalSinceNow: 3600)), specialist),
            ]
            for (name, statement, context) in attacks {
                let refusal = await Refusal.of(statement, as: context, on: databases.app)
                #expect(refusal == .rowLevelSecurity || refusal == .privilege, "\(backend): \(name) → \(refusal)")
            }
            // Someone else's session named in app.session_id (set by the attacker's own SQL):
            // the owner's impersonation and break-glass sessions, from the specialist.
            for (session, context, actor) in [
                (theirs.id, "impersonation", world.owner), (glass.id, "break_glass", world.owner), (glass.id, "break_glass", world.specialist),
            ] {
                var outcome = Refusal.other("not run")
                do {
                    try await databases.app.withTenant(specialist) { tx in
                        try await tx.execute("SELECT set_config('app.session_id', \(session.lowercasedString), true)")
                        outcome = await Refusal.classify { try await tx.execute(audit(actor: actor, context: context)) }
                        throw Rollback()
                    }
                } catch is Rollback {}
                #expect(outcome == .rowLevelSecurity, "\(backend): \(context) row in session \(session) as \(actor) → \(outcome)")
            }
            #expect(try await world.snapshot(databases.admin) == before)

            // Controls: each legitimate kind of row is written, dated by the database.
            try await databases.app.withTenant(specialist) { tx in try await tx.audit(AuditEvent(action: "patient.read")) }
            try await databases.app.withTenant(theirs.context) { tx in try await tx.audit(AuditEvent(action: "patient.read")) }
            try await databases.app.withTenant(glass.context) { tx in try await tx.audit(AuditEvent(action: "patient.read")) }
            let rows = try await databases.admin.withOrganization(org, actor: .system("tenancy-tests")) { tx in
                try await tx.query("SELECT actor_user_id, action_context, created_at FROM audit_log WHERE action = 'patient.read' ORDER BY action_context")
            }
            let written = try rows.map { "\(try $0.decode("action_context", as: String.self)):\(try $0.decode("actor_user_id", as: UUID.self).lowercasedString)" }
            #expect(written == ["break_glass:\(world.owner.lowercasedString)", "impersonation:\(world.owner.lowercasedString)", "normal:\(world.specialist.lowercasedString)"])
            for row in rows {
                #expect(abs(try row.decode("created_at", as: Date.self).timeIntervalSinceNow) < 60)
            }
        }
    }

    @Test("audit rows: every context x action context x named actor has its exact outcome", arguments: TenancyBackend.all)
    func auditMatrix(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let sessions = ElevatedSessions(admin: databases.admin)
            let glass = try await sessions.openBreakGlass(organization: world.fixture.a.id, user: world.owner, reason: "owner's emergency access")
            let support = try await sessions.openImpersonation(
                organization: world.fixture.a.id, actor: world.owner, patient: world.fixture.a1.patient, reason: "support session for the test"
            )
            let contexts: [(String, TenantContext)] = TenantRole.allCases.map { ($0.rawValue, world.context($0)) }
                + [("break-glass", glass.context), ("impersonation", support.context)]
            let actors: [(String, UUID)] = [
                ("owner", world.owner), ("specialist", world.specialist), ("patient A1", world.fixture.a1.user), ("platform admin", world.platformAdmin),
            ]
            var cells = 0
            for (contextName, context) in contexts {
                for actionContext in ["normal", "break_glass", "impersonation", "platform_admin", "system"] {
                    for (actorName, actor) in actors {
                        let allowed = switch actionContext {
                        case "normal": actor == context.userID
                        case "break_glass": contextName == "break-glass" && actor == context.userID
                        case "impersonation": contextName == "impersonation" && actor == world.owner
                        default: false
                        }
                        let insert: SQLQuery = """
                            INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context) \
                            VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(actor), 'user', 'matrix.write', \(actionContext))
                            """
                        let outcome = await Refusal.of(insert, as: context, on: databases.app)
                        #expect(outcome == (allowed ? .none(1) : .rowLevelSecurity),
                                "\(backend) as \(contextName): a \(actionContext) row naming \(actorName) → \(outcome)")
                        cells += 1
                    }
                }
            }
            #expect(cells == 7 * 5 * 4)
        }
    }

    // MARK: - 5, 6: other clinics' users, roles and quotas

    @Test("a membership cannot be made up to read another clinic's user", arguments: TenancyBackend.all)
    func otherClinicsUsers(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let before = try await world.snapshot(databases.admin)
            let other = world.fixture.b.staffUser
            for role in [TenantRole.specialist, .assistant, .patient] {
                let insert: SQLQuery = "INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(other), 'patient')"
                #expect(await Refusal.of(insert, as: world.context(role), on: databases.app) == .rowLevelSecurity, "\(backend) \(role)")
                for user in [other, world.platformAdmin] {
                    let seen = try await databases.app.query(world.context(role), "SELECT id FROM users WHERE id = \(user)")
                    #expect(seen.isEmpty, "\(backend) \(role) reads a user of no membership of its clinic")
                }
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // Control: a member's row is visible to staff, and the owner adds a patient member.
            let member = try await databases.app.query(world.context(.specialist), "SELECT id FROM users WHERE id = \(world.owner)")
            #expect(member.count == 1)
            let added = try await databases.app.execute(world.context(.owner), """
                INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(world.strangers[0]), 'patient')
                """)
            #expect(added == 1)
        }
    }

    /// Who may add, re-role and remove which members: the clinic's owner and admins, for roles
    /// strictly below their own, never their own row; nobody else.
    static func mayManage(_ actor: TenantRole, _ role: TenantRole) -> Bool {
        let rank: [TenantRole: Int] = [.owner: 4, .admin: 3, .specialist: 2, .assistant: 1, .patient: 0]
        return (actor == .owner || actor == .admin) && rank[role]! < rank[actor]!
    }

    @Test("memberships: every role x target role x add, change and remove has its exact outcome", arguments: TenancyBackend.all)
    func membershipMatrix(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let before = try await world.snapshot(databases.admin)
            // One target member per role, made by the platform (the Clerk webhook's path).
            var targets: [TenantRole: UUID] = [:]
            try await databases.admin.unscoped(reason: "adversarial test: membership targets", actor: .system("tenancy-tests")) { tx in
                for (index, role) in TenantRole.allCases.enumerated() {
                    let user = world.strangers[index]
                    try await tx.execute("INSERT INTO memberships (id, organization_id, user_id, role) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(user), \(role.rawValue))")
                    targets[role] = user
                }
            }
            var cells = 0
            for actor in TenantRole.allCases {
                let context = world.context(actor)
                // Self-promotion, by every role, to every role.
                for role in TenantRole.allCases {
                    let promote: SQLQuery = "UPDATE memberships SET role = \(role.rawValue) WHERE user_id = \(context.userID)"
                    let outcome = await Refusal.of(promote, as: context, on: databases.app)
                    #expect(outcome == .none(0), "\(backend) \(actor) promotes itself to \(role) → \(outcome)")
                    cells += 1
                }
                for target in TenantRole.allCases {
                    let user = targets[target]!
                    let remove: SQLQuery = "DELETE FROM memberships WHERE user_id = \(user) AND organization_id = \(world.fixture.a.id)"
                    let removed = await Refusal.of(remove, as: context, on: databases.app)
                    #expect(removed == .none(Self.mayManage(actor, target) ? 1 : 0), "\(backend) \(actor) removes a \(target) → \(removed)")
                    let added = await Refusal.of("""
                        INSERT INTO memberships (id, organization_id, user_id, role) \
                        VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(world.fixture.spareUser), \(target.rawValue))
                        """, as: context, on: databases.app)
                    #expect(added == (Self.mayManage(actor, target) ? .none(1) : .rowLevelSecurity), "\(backend) \(actor) adds a \(target) → \(added)")
                    cells += 2
                    for role in TenantRole.allCases {
                        let change: SQLQuery = "UPDATE memberships SET role = \(role.rawValue) WHERE user_id = \(user)"
                        let outcome = await Refusal.of(change, as: context, on: databases.app)
                        let expected: Refusal = !Self.mayManage(actor, target) ? .none(0)
                            : Self.mayManage(actor, role) ? .none(1) : .rowLevelSecurity
                        #expect(outcome == expected, "\(backend) \(actor) changes a \(target) to \(role) → \(outcome)")
                        cells += 1
                    }
                    // No column but the role changes, even for a manager.
                    let move: SQLQuery = "UPDATE memberships SET user_id = \(world.platformAdmin) WHERE user_id = \(user)"
                    #expect(await Refusal.of(move, as: context, on: databases.app) == .privilege, "\(backend) \(actor) moves a membership")
                }
            }
            #expect(cells == 5 * 5 + 5 * 5 * 7)
            try await databases.admin.unscoped(reason: "adversarial test: membership targets cleanup", actor: .system("tenancy-tests")) { tx in
                for user in targets.values { try await tx.execute("DELETE FROM memberships WHERE user_id = \(user)") }
            }
            #expect(try await world.snapshot(databases.admin) == before)
        }
    }

    @Test("quotas and summaries are the platform's: usage is only counted up", arguments: TenancyBackend.all)
    func quotas(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let quota = world.fixture.rows["usage_quotas"]!.a1
            let summary = world.fixture.rows["usage_summaries"]!.a1
            let record = world.fixture.rows["usage_records"]!.a1
            // Some usage counted, so that zeroing it would be a decrease.
            try await databases.admin.withOrganization(world.fixture.a.id, actor: .system("tenancy-tests")) { tx in
                try await tx.execute("UPDATE usage_quotas SET current_units = 5 WHERE id = \(quota)")
            }
            let before = try await world.snapshot(databases.admin)
            for role in TenantRole.allCases where role != .patient {
                let context = world.context(role)
                let attacks: [SQLQuery] = [
                    "UPDATE usage_quotas SET limit_units = 1000000 WHERE id = \(quota)",
                    "UPDATE usage_quotas SET current_units = 0 WHERE id = \(quota)",
                    "UPDATE usage_quotas SET period_end_at = \(Date(timeIntervalSinceNow: 86_400 * 400)), current_units = 0 WHERE id = \(quota)",
                    "DELETE FROM usage_quotas WHERE id = \(quota)",
                    """
                    INSERT INTO usage_quotas (id, organization_id, capability, limit_units, period_start_at, period_end_at) \
                    VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), 'video', 1000000, \(Date()), \(Date(timeIntervalSinceNow: 3600)))
                    """,
                    "UPDATE usage_summaries SET total_units = 0 WHERE id = \(summary)",
                    "DELETE FROM usage_summaries WHERE id = \(summary)",
                    "UPDATE usage_records SET units = 0 WHERE id = \(record)",
                    "DELETE FROM usage_records WHERE id = \(record)",
                ]
                for attack in attacks {
                    let refusal = await Refusal.of(attack, as: context, on: databases.app)
                    #expect(refusal == .privilege, "\(backend) \(role): \(attack) → \(refusal)")
                }
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // Control: counting usage up, as the usage meter does, works for staff.
            let counted = try await databases.app.execute(world.context(.assistant), "UPDATE usage_quotas SET current_units = current_units + 1 WHERE id = \(quota)")
            #expect(counted == 1)
        }
    }

    @Test("refusals name the table and the rule, never the row's data", arguments: TenancyBackend.all)
    func refusalsNameTheRule(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let quota = world.fixture.rows["usage_quotas"]!.a1
            try await databases.admin.withOrganization(world.fixture.a.id, actor: .system("tenancy-tests")) { tx in
                try await tx.execute("UPDATE usage_quotas SET current_units = 5 WHERE id = \(quota)")
            }
            let secretDomain = "private-\(UUIDv7.generate().uuidString.prefix(8).lowercased()).example.test"
            let cases: [(SQLQuery, TenantContext, DatabaseError.Code, String, String?)] = [
                ("INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(world.fixture.a.id), \(secretDomain))",
                 world.context(.specialist), .rowLevelSecurityViolation, "organization_domains", nil),
                ("UPDATE usage_quotas SET limit_units = 999 WHERE id = \(quota)", world.context(.owner), .insufficientPrivilege, "usage_quotas", nil),
                ("UPDATE usage_quotas SET current_units = 0 WHERE id = \(quota)", world.context(.owner), .insufficientPrivilege, "usage_quotas",
                 "usage is only counted up within a period"),
            ]
            for (statement, context, code, table, rule) in cases {
                var caught: DatabaseError?
                do {
                    try await databases.app.withTenant(context) { tx in _ = try await tx.execute(statement) }
                } catch let error as DatabaseError {
                    caught = error
                }
                let error = try #require(caught, "\(backend): \(statement)")
                #expect(error.code == code, "\(backend): \(error)")
                #expect(error.description.contains(table), "\(backend): \(error)")
                if let rule { #expect(error.description.contains(rule), "\(backend): \(error)") }
                #expect(!error.description.contains(secretDomain) && !error.description.contains("999"), "\(backend): \(error)")
            }
        }
    }

    @Test("a quota period moves once, to the current UTC month, after it ended; usage never resets in a loop", arguments: TenancyBackend.all)
    func quotaPeriods(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let quota = world.fixture.rows["usage_quotas"]!.a1
            var utc = Calendar(identifier: .gregorian)
            utc.timeZone = TimeZone(identifier: "UTC")!
            let thisMonth = utc.dateInterval(of: .month, for: Date())!
            let lastMonth = utc.dateInterval(of: .month, for: thisMonth.start.addingTimeInterval(-86_400))!
            let nextMonth = utc.dateInterval(of: .month, for: thisMonth.end.addingTimeInterval(86_400))!
            // Last month's period, ended, with usage counted.
            try await databases.admin.withOrganization(world.fixture.a.id, actor: .system("tenancy-tests")) { tx in
                try await tx.execute("""
                    UPDATE usage_quotas SET current_units = 5, period_start_at = \(lastMonth.start), period_end_at = \(lastMonth.end) WHERE id = \(quota)
                    """)
            }
            let staff = world.context(.assistant)
            let before = try await world.snapshot(databases.admin)
            var attacks: [SQLQuery] = [
                // Not a whole month: a period that ends in minutes would let usage reset again and again.
                "UPDATE usage_quotas SET current_units = 0, period_start_at = \(Date(timeIntervalSinceNow: -86_400)), period_end_at = \(Date(timeIntervalSinceNow: 240)) WHERE id = \(quota)",
                // A month that has not begun.
                "UPDATE usage_quotas SET current_units = 0, period_start_at = \(nextMonth.start), period_end_at = \(nextMonth.end) WHERE id = \(quota)",
                // Back into the past, before the old period ended.
                "UPDATE usage_quotas SET current_units = 0, period_start_at = \(lastMonth.start.addingTimeInterval(-86_400 * 31)), period_end_at = \(lastMonth.start) WHERE id = \(quota)",
                // The right start with a longer end.
                "UPDATE usage_quotas SET current_units = 0, period_start_at = \(thisMonth.start), period_end_at = \(nextMonth.end) WHERE id = \(quota)",
            ]
            if backend == .sqlite {
                attacks += [
                    "UPDATE OR REPLACE usage_quotas SET current_units = NULL WHERE id = \(quota)",
                    "UPDATE usage_quotas SET current_units = 'x' WHERE id = \(quota)",
                    "UPDATE usage_quotas SET current_units = x'00' WHERE id = \(quota)",
                    "UPDATE usage_quotas SET current_units = 0, period_start_at = '0' WHERE id = \(quota)",
                ]
            }
            for attack in attacks {
                let refusal = await Refusal.of(attack, as: staff, on: databases.app)
                #expect(refusal == .privilege, "\(backend): \(attack) → \(refusal)")
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // The legitimate move, as the usage meter makes it: once, to this month, with the new units.
            let moved = try await databases.app.execute(staff, """
                UPDATE usage_quotas SET current_units = 2, period_start_at = \(thisMonth.start), period_end_at = \(thisMonth.end) WHERE id = \(quota)
                """)
            #expect(moved == 1)
            // And not again: the new period has not ended.
            let again = await Refusal.of("""
                UPDATE usage_quotas SET current_units = 0, period_start_at = \(nextMonth.start), period_end_at = \(nextMonth.end) WHERE id = \(quota)
                """, as: staff, on: databases.app)
            #expect(again == .privilege, "\(backend): a second move → \(again)")
            #expect(await Refusal.of("UPDATE usage_quotas SET current_units = 0 WHERE id = \(quota)", as: staff, on: databases.app) == .privilege)
        }
    }

    @Test("a patient named by an impersonation session is not deleted from under it", arguments: TenancyBackend.all)
    func patientWithSessions(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let sessions = ElevatedSessions(admin: databases.admin)
            let support = try await sessions.openImpersonation(
                organization: world.fixture.a.id, actor: world.owner, patient: world.fixture.a1.patient, reason: "support session for the test"
            )
            let before = try await world.snapshot(databases.admin)
            for role in [TenantRole.owner, .admin, .specialist, .assistant] {
                let refusal = await Refusal.of("DELETE FROM patients WHERE id = \(world.fixture.a1.patient)", as: world.context(role), on: databases.app)
                #expect(refusal == .privilege, "\(backend) \(role) → \(refusal)")
            }
            _ = try await sessions.close(support, by: world.owner)
            // Closed, the session row still names the patient: still refused.
            let closed = await Refusal.of("DELETE FROM patients WHERE id = \(world.fixture.a1.patient)", as: world.context(.owner), on: databases.app)
            #expect(closed == .privilege)
            var after = try await world.snapshot(databases.admin)
            after["patient_impersonation_sessions"] = before["patient_impersonation_sessions"]
            after["audit_log"] = before["audit_log"]  // the close wrote its row
            #expect(after == before)
            // Control: a patient nobody impersonated is deleted.
            let fresh = UUIDv7.generate()
            try await databases.app.execute(world.context(.specialist), "INSERT INTO patients (id, organization_id, name) VALUES (\(fresh), \(world.fixture.a.id), \(Data([1])))")
            #expect(try await databases.app.execute(world.context(.specialist), "DELETE FROM patients WHERE id = \(fresh)") == 1)
        }
    }

    // MARK: - 7: conflict clauses (SQLite), and their Postgres twins

    @Test("INSERT OR REPLACE, REPLACE, UPDATE OR REPLACE and upserts never take another clinic's row", arguments: TenancyBackend.all)
    func conflictClauses(backend: TenancyBackend) async throws {
        try await withWorld(backend) { databases, world in
            let owner = world.context(.owner)
            let a = world.fixture.a.id
            let theirDomain = try await databases.admin.withOrganization(world.fixture.b.id, actor: .system("tenancy-tests")) { tx in
                try await tx.first("SELECT domain FROM organization_domains WHERE organization_id = \(world.fixture.b.id)")?.decode("domain", as: String.self)
            }
            let domain = try #require(theirDomain)
            // Clinic B also holds a domain that reads as a number.
            try await databases.admin.withOrganization(world.fixture.b.id, actor: .system("tenancy-tests")) { tx in
                try await tx.execute("INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(world.fixture.b.id), '1000')")
            }
            let ourDomain = world.fixture.rows["organization_domains"]!.a1
            let theirPatient = world.fixture.b1.patient
            let before = try await world.snapshot(databases.admin)
            var attacks: [SQLQuery] = [
                "INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(domain)) ON CONFLICT (domain) DO UPDATE SET organization_id = excluded.organization_id",
                "INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(domain)) ON CONFLICT DO NOTHING",
            ]
            if backend == .sqlite {
                attacks += [
                    // A number where the key is text: stored as '1000', it would collide as '1000'
                    // (migration 7 refuses a key value of another storage class outright).
                    "INSERT OR REPLACE INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), 1000)",
                    // Their patient's id as a blob or a real: refused before any comparison.
                    "INSERT OR REPLACE INTO patients (id, organization_id, name) VALUES (CAST(\(theirPatient) AS BLOB), \(a), \(Data([7])))",
                    "INSERT OR REPLACE INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), 1000.0)",
                    "INSERT OR REPLACE INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(domain))",
                    "REPLACE INTO patients (id, organization_id, name) VALUES (\(theirPatient), \(a), \(Data([7])))",
                    "INSERT OR REPLACE INTO patients (id, organization_id, name) VALUES (\(theirPatient), \(a), \(Data([7])))",
                    "UPDATE OR REPLACE organization_domains SET domain = \(domain) WHERE id = \(ourDomain)",
                    "UPDATE OR REPLACE patients SET id = \(theirPatient) WHERE id = \(world.fixture.a1.patient)",
                    "INSERT OR IGNORE INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(domain))",
                    "INSERT OR ROLLBACK INTO patients (id, organization_id, name) VALUES (\(theirPatient), \(a), \(Data([7])))",
                ]
            } else {
                attacks += [
                    "INSERT INTO patients (id, organization_id, name) VALUES (\(theirPatient), \(a), \(Data([7]))) ON CONFLICT (id) DO UPDATE SET organization_id = excluded.organization_id",
                    "UPDATE organization_domains SET domain = \(domain) WHERE id = \(ourDomain)",
                ]
            }
            for attack in attacks {
                let refusal = await Refusal.of(attack, as: owner, on: databases.app)
                // Refused outright, or (DO NOTHING, OR IGNORE) nothing written.
                switch refusal {
                case .unique, .rowLevelSecurity, .privilege, .none(0): break
                case .other(let text) where backend == .sqlite && text.contains("UPSERT"): break
                case .other(let text) where backend == .sqlite && text.contains("invalid value for column"): break
                default: Issue.record("\(backend): \(attack) → \(refusal)")
                }
            }
            #expect(try await world.snapshot(databases.admin) == before)
            // Control: with no conflict the same clauses write (SQLite), and a fresh domain is added.
            let fresh = "fresh-\(UUIDv7.generate().uuidString.prefix(8).lowercased()).example.test"
            let control: SQLQuery = backend == .sqlite
                ? "INSERT OR REPLACE INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(fresh))"
                : "INSERT INTO organization_domains (id, organization_id, domain) VALUES (\(UUIDv7.generate()), \(a), \(fresh)) ON CONFLICT DO NOTHING"
            #expect(try await databases.app.execute(owner, control) == 1)
        }
    }
}

/// The pooled-connection leak test, poisoned: in this suite, which runs its tests one at a
/// time, because it shares the one-connection pool with the probes above.
extension AdversarialTests {
    final class Attack: Sendable {
        let done = Atomic<Bool>(false)
        let poisonings = Atomic<Int>(0)
        /// Times the poison was not observable right after it was left (it must always be).
        let controlFailures = Atomic<Int>(0)
    }

    /// An attacker and its victims on ONE server connection (the `restartix_solo` pool): the
    /// attacker keeps leaving every session-level setting a policy reads (another clinic, an
    /// owner role, a session, unscoped access) and every one that would break or redirect a
    /// later transaction; the victims' tenant transactions, interleaved with it, must still see
    /// exactly their own clinic's rows.
    @Test("a continuously poisoned pooled connection: 2,000 tenant transactions each see only their own rows", arguments: TenancyBackend.all.filter { $0 == .pgbouncer })
    func poisoned(backend: TenancyBackend) async throws {
        try await SchemaOnce.shared.prepare()
        var configuration = try DatabaseConfiguration(url: TenancyBackend.require("DATABASE_APP_SOLO_URL"))
        configuration.maximumConnections = 9
        let app = TenantDatabase(configuration: configuration, tables: PlatformSchema.tenantTables, logger: TenancyBackend.logger)
        var single = configuration
        single.maximumConnections = 1
        let raw = Database(configuration: single, logger: TenancyBackend.logger)
        let admin = AdminDatabase(configuration: try DatabaseConfiguration(url: TenancyBackend.require(backend.adminURLName)), logger: TenancyBackend.logger)
        var clinics: [LeakTests.Clinic] = []
        try await admin.unscoped(reason: "tenancy poisoned-connection fixture", actor: .system("tenancy-tests")) { tx in
            for _ in 0..<8 {
                let org = UUIDv7.generate()
                let staff = UUIDv7.generate()
                try await tx.execute("INSERT INTO organizations (id, slug, name) VALUES (\(org), \("p-" + org.uuidString.suffix(12).lowercased()), 'Poison test clinic')")
                try await tx.execute("INSERT INTO users (id) VALUES (\(staff))")
                var patients = Set<UUID>()
                for _ in 0..<2 {
                    let patient = UUIDv7.generate()
                    try await tx.execute("INSERT INTO patients (id, organization_id, name) VALUES (\(patient), \(org), \(Data([0])))")
                    patients.insert(patient)
                }
                clinics.append(LeakTests.Clinic(context: TenantContext(organizationID: org, userID: staff, role: .assistant), patients: patients))
            }
        }
        let fixture = clinics
        let counters = LeakTests.Counters()
        let attack = Attack()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    var random = SystemRandomNumberGenerator()
                    while !attack.done.load(ordering: .relaxed) {
                        let clinic = fixture.randomElement(using: &random)!
                        let other = fixture.randomElement(using: &random)!
                        // The attacker is a tenant itself, leaving its poison at session level.
                        _ = try? await app.withTenant(clinic.context) { tx in
                            for statement: SQLQuery in [
                                "SELECT set_config('app.current_org_id', \(other.context.organizationID.lowercasedString), false)",
                                "SELECT set_config('app.current_user_id', \(other.context.userID.lowercasedString), false)",
                                "SELECT set_config('app.current_role', 'owner', false)",
                                "SELECT set_config('app.session_id', \(UUIDv7.generate().lowercasedString), false)",
                                "SELECT set_config('app.unscoped', 'on', false)",
                                "SET default_transaction_read_only = on",
                                "SET default_transaction_isolation = 'serializable'",
                                "SET row_security = off",
                                "SET lock_timeout = '1ms'",
                                "SET search_path = pg_catalog",
                                // Not shorter: the kit's opening statements run under it before
                                // they pin their own, and 20 ms was cut on a loaded machine.
                                "SET statement_timeout = '1s'",
                            ] {
                                try await tx.execute(statement)
                            }
                        }
                        attack.poisonings.add(1, ordering: .relaxed)
                        // Control: the poison is on the connection for a client outside the kit.
                        let leaked = try? await raw.query("SELECT current_setting('app.unscoped') AS u").first?.decode("u", as: String.self)
                        if leaked != "on" { attack.controlFailures.add(1, ordering: .relaxed) }
                    }
                }
                try await withThrowingTaskGroup(of: Void.self) { victims in
                    for task in 0..<8 {
                        victims.addTask {
                            var random = SystemRandomNumberGenerator()
                            for step in 0..<250 {
                                let clinic = fixture.randomElement(using: &random)!
                                let seen: Set<UUID>
                                switch (task + step) % 3 {
                                case 0:
                                    seen = try LeakTests.check(try await app.query(clinic.context, "SELECT id, organization_id FROM patients"), clinic, counters)
                                case 1:
                                    seen = try await app.withTenant(clinic.context) { tx in
                                        try await tx.execute("UPDATE patients SET updated_at = now()")
                                        return try LeakTests.check(try await tx.query("SELECT id, organization_id FROM patients"), clinic, counters)
                                    }
                                default:
                                    seen = try await app.withTenant(clinic.context) { tx in
                                        let rows = try await tx.query("SELECT id, organization_id FROM patients")
                                        let unscoped = try await tx.first("SELECT current_setting('app.unscoped') AS u")
                                        if try unscoped?.decode("u", as: String.self) != "" { counters.mismatches.add(1, ordering: .relaxed) }
                                        return try LeakTests.check(rows, clinic, counters)
                                    }
                                }
                                if seen != clinic.patients { counters.mismatches.add(1, ordering: .relaxed) }
                                counters.completed.add(1, ordering: .relaxed)
                            }
                        }
                    }
                    try await victims.waitForAll()
                }
                attack.done.store(true, ordering: .relaxed)
                try await group.waitForAll()
            }
        } catch {
            attack.done.store(true, ordering: .relaxed)
            _ = try? await raw.execute("DISCARD ALL")
            try? await LeakTests.remove(clinics, admin: admin)
            await app.shutdown(); await raw.shutdown(); await admin.shutdown()
            throw error
        }
        _ = try await raw.execute("DISCARD ALL")
        #expect(counters.completed.load(ordering: .relaxed) == 2_000)
        #expect(attack.poisonings.load(ordering: .relaxed) >= 50, "the attacker ran between the victims")
        #expect(attack.controlFailures.load(ordering: .relaxed) == 0, "the poison was on the connection every time")
        #expect(counters.mismatches.load(ordering: .relaxed) == 0)
        try await LeakTests.remove(clinics, admin: admin)
        await app.shutdown()
        await raw.shutdown()
        await admin.shutdown()
    }
}
