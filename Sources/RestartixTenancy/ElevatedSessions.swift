public import Foundation
import RestartixKit

/// An open break-glass or impersonation session, and the context to act under it.
public struct ElevatedSession: Sendable, Hashable {
    /// The two kinds of elevated access.
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// Emergency access to a clinic's records (`break_glass_sessions`).
        case breakGlass = "break_glass"
        /// A staff member acting as one patient (`patient_impersonation_sessions`).
        case impersonation

        var table: String { self == .breakGlass ? "break_glass_sessions" : "patient_impersonation_sessions" }
        var resourceType: String { self == .breakGlass ? "break_glass_session" : "patient_impersonation_session" }
    }

    /// The session row's id.
    public let id: UUID
    /// Which kind of session.
    public let kind: Kind
    /// The clinic.
    public let organizationID: UUID
    /// The staff member or platform administrator who opened it.
    public let actorUserID: UUID
    /// For impersonation: the patient acted as.
    public let patientID: UUID?
    /// When it stops granting access (the database's clock decides).
    public let expiresAt: Date
    /// The context to pass to ``TenantDatabase/withTenant(_:_:)``: every transaction under it
    /// checks the session is open and appends an access audit row.
    public let context: TenantContext
}

/// Opens, resumes, closes and sweeps break-glass and patient-impersonation sessions.
///
/// - A session is opened for one clinic with a reason (10-2000 characters) and a duration (1
///   minute up to ``maximumDuration``, 4 hours by default), by a staff member of that clinic or
///   a platform administrator; opening writes the session row and an `*.open` audit row in one
///   transaction.
/// - Every transaction under its context (``ElevatedSession/context``) first appends an
///   `*.access` audit row, and only while the session is open; after expiry or close the
///   transaction is refused before its body runs (``TenancyError/Code/sessionNotOpen``).
/// - ``sweepExpired(batchSize:)`` (the `expired-sessions-sweep` job) closes sessions that
///   expired without being closed: `closed_at = expires_at`, `closed_by = 'expiry'`, one
///   system-attributed `*.expire` audit row per session, idempotent and safe when several run.
public final class ElevatedSessions: Sendable {
    private let admin: AdminDatabase
    /// The longest session that may be opened.
    public let maximumDuration: Duration

    /// Creates the service over the admin database.
    public init(admin: AdminDatabase, maximumDuration: Duration = .seconds(4 * 3600)) {
        precondition(maximumDuration >= .seconds(60), "the maximum session duration must be at least a minute")
        self.admin = admin
        self.maximumDuration = maximumDuration
    }

    /// Opens a break-glass session for `user` in `organization`. Its context acts with the
    /// `admin` role: every record of the clinic, each transaction audited.
    public func openBreakGlass(
        organization: UUID,
        user: UUID,
        reason: String,
        duration: Duration = .seconds(3600)
    ) async throws -> ElevatedSession {
        let reason = try validated(reason: reason, duration: duration)
        let id = UUIDv7.generate()
        let expiresAt = try await admin.withOrganization(organization, actor: .user(user)) { tx in
            try await Self.requireEligible(tx, organization: organization, user: user)
            let results = try await tx.pipeline([
                """
                INSERT INTO break_glass_sessions (id, organization_id, user_id, reason, opened_at, expires_at) \
                VALUES (\(id), \(organization), \(user), \(reason), \(tx.dialect.now), \(Self.now(tx.dialect, plus: duration)))
                """,
                "SELECT expires_at FROM break_glass_sessions WHERE id = \(id)",
                Self.auditInsert(.breakGlass, verb: "open", session: id, organization: organization, actor: user, kind: "user",
                                 metadata: ["duration_seconds": "\(duration.components.seconds)"]),
            ])
            return try results[1].rows[0].decode("expires_at", as: Date.self)
        }
        return ElevatedSession(
            id: id, kind: .breakGlass, organizationID: organization, actorUserID: user, patientID: nil, expiresAt: expiresAt,
            context: TenantContext(organizationID: organization, userID: user, role: .admin, actionContext: .breakGlass(sessionID: id))
        )
    }

    /// Opens an impersonation session: `actor` (staff of the clinic or a platform
    /// administrator) acts as `patient`, who must have a user account.
    public func openImpersonation(
        organization: UUID,
        actor: UUID,
        patient: UUID,
        reason: String,
        duration: Duration = .seconds(1800)
    ) async throws -> ElevatedSession {
        let reason = try validated(reason: reason, duration: duration)
        let id = UUIDv7.generate()
        let (patientUser, expiresAt) = try await admin.withOrganization(organization, actor: .user(actor)) { tx in
            try await Self.requireEligible(tx, organization: organization, user: actor)
            let patientRow = try await tx.first(
                "SELECT user_id FROM patients WHERE organization_id = \(organization) AND id = \(patient) AND deleted_at IS NULL"
            )
            guard let patientRow else { throw TenancyError(.notFound, "no such patient in the organization") }
            guard let patientUser = try patientRow.decode("user_id", as: UUID?.self) else {
                throw TenancyError(.invalidContext, "the patient has no user account to act as")
            }
            guard patientUser != actor else { throw TenancyError(.invalidContext, "a user cannot impersonate themselves") }
            let results = try await tx.pipeline([
                """
                INSERT INTO patient_impersonation_sessions (id, organization_id, user_id, patient_id, reason, opened_at, expires_at) \
                VALUES (\(id), \(organization), \(actor), \(patient), \(reason), \(tx.dialect.now), \(Self.now(tx.dialect, plus: duration)))
                """,
                "SELECT expires_at FROM patient_impersonation_sessions WHERE id = \(id)",
                Self.auditInsert(.impersonation, verb: "open", session: id, organization: organization, actor: actor, kind: "user",
                                 metadata: ["duration_seconds": "\(duration.components.seconds)", "patient_id": patient.lowercasedString]),
            ])
            return (patientUser, try results[1].rows[0].decode("expires_at", as: Date.self))
        }
        return ElevatedSession(
            id: id, kind: .impersonation, organizationID: organization, actorUserID: actor, patientID: patient, expiresAt: expiresAt,
            context: TenantContext(
                organizationID: organization, userID: patientUser, role: .patient,
                actionContext: .impersonation(sessionID: id, actorUserID: actor)
            )
        )
    }

    /// The session `id` of `actor` in `organization`, if it is still open (a later request
    /// naming its session). Throws ``TenancyError/Code/sessionNotOpen`` otherwise.
    public func resume(_ kind: ElevatedSession.Kind, id: UUID, organization: UUID, actor: UUID) async throws -> ElevatedSession {
        try await admin.withOrganization(organization, actor: .user(actor)) { tx in
            let open: SQLQuery = "s.closed_at IS NULL AND s.expires_at > \(tx.dialect.now)"
            switch kind {
            case .breakGlass:
                let row = try await tx.first("""
                    SELECT s.expires_at FROM break_glass_sessions s \
                    WHERE s.id = \(id) AND s.organization_id = \(organization) AND s.user_id = \(actor) AND \(open)
                    """)
                guard let row else { throw TenancyError(.sessionNotOpen, "the break_glass session is closed, expired or not this user's") }
                return ElevatedSession(
                    id: id, kind: .breakGlass, organizationID: organization, actorUserID: actor, patientID: nil,
                    expiresAt: try row.decode("expires_at", as: Date.self),
                    context: TenantContext(organizationID: organization, userID: actor, role: .admin, actionContext: .breakGlass(sessionID: id))
                )
            case .impersonation:
                let row = try await tx.first("""
                    SELECT s.expires_at, s.patient_id, p.user_id FROM patient_impersonation_sessions s \
                    JOIN patients p ON p.organization_id = s.organization_id AND p.id = s.patient_id \
                    WHERE s.id = \(id) AND s.organization_id = \(organization) AND s.user_id = \(actor) AND \(open)
                    """)
                guard let row, let patientUser = try row.decode("user_id", as: UUID?.self) else {
                    throw TenancyError(.sessionNotOpen, "the impersonation session is closed, expired or not this user's")
                }
                return ElevatedSession(
                    id: id, kind: .impersonation, organizationID: organization, actorUserID: actor,
                    patientID: try row.decode("patient_id", as: UUID.self),
                    expiresAt: try row.decode("expires_at", as: Date.self),
                    context: TenantContext(
                        organizationID: organization, userID: patientUser, role: .patient,
                        actionContext: .impersonation(sessionID: id, actorUserID: actor)
                    )
                )
            }
        }
    }

    /// Closes a session early (or an expired one the sweep has not reached): by the user who
    /// opened it, or with `byAdmin` by a platform administrator. Returns `false` when it was
    /// already closed; throws ``TenancyError/Code/notAMember`` for anyone else.
    @discardableResult
    public func close(_ session: ElevatedSession, by actor: UUID, byAdmin: Bool = false) async throws -> Bool {
        try await close(session.kind, id: session.id, organization: session.organizationID, by: actor, byAdmin: byAdmin)
    }

    /// Closes the session `id` of `kind` in `organization` (a request naming it): as
    /// ``close(_:by:byAdmin:)``, and ``TenancyError/Code/notFound`` when the clinic has no such
    /// session (another clinic's session looks the same).
    @discardableResult
    public func close(_ kind: ElevatedSession.Kind, id: UUID, organization: UUID, by actor: UUID, byAdmin: Bool = false) async throws -> Bool {
        try await admin.withOrganization(organization, actor: .user(actor)) { tx in
            guard let row = try await tx.first("SELECT user_id FROM \(unsafeRaw: kind.table) WHERE id = \(id) AND organization_id = \(organization)") else {
                throw TenancyError(.notFound, "no such \(kind.rawValue) session in the organization")
            }
            if byAdmin {
                let admin = try await tx.first("SELECT is_platform_admin FROM users WHERE id = \(actor) AND deleted_at IS NULL")
                guard try admin?.decode("is_platform_admin", as: Bool.self) == true else {
                    throw TenancyError(.notAMember, "only a platform administrator may close someone else's session")
                }
            } else if try row.decode("user_id", as: UUID.self) != actor {
                throw TenancyError(.notAMember, "only the user who opened a session, or a platform administrator, may close it")
            }
            let closed = try await tx.execute("""
                UPDATE \(unsafeRaw: kind.table) SET closed_at = \(tx.dialect.now), closed_by = \(byAdmin ? "admin" : "user") \
                WHERE id = \(id) AND organization_id = \(organization) AND closed_at IS NULL
                """)
            guard closed == 1 else { return false }
            try await tx.execute(Self.auditInsert(
                kind, verb: "close", session: id, organization: organization, actor: actor, kind: "user",
                metadata: ["closed_by": byAdmin ? "admin" : "user"]
            ))
            return true
        }
    }

    /// An open session as a listing shows it.
    public struct Summary: Sendable, Hashable {
        /// The session row's id.
        public let id: UUID
        /// Which kind of session.
        public let kind: ElevatedSession.Kind
        /// The clinic.
        public let organizationID: UUID
        /// Who opened it.
        public let actorUserID: UUID
        /// For impersonation: the patient acted as.
        public let patientID: UUID?
        /// The reason given when it was opened.
        public let reason: String
        /// When it was opened and when it stops granting access.
        public let openedAt: Date
        public let expiresAt: Date
    }

    /// The sessions of `organization` still open now, newest first, as `viewer` may see them:
    /// every one for the clinic's owners and admins, a staff member's own otherwise; a patient
    /// (or anyone not on the clinic's staff) may not list them (``TenancyError/Code/roleNotAllowed``).
    public func listOpen(organization: UUID, viewer: TenantContext) async throws -> [Summary] {
        guard viewer.organizationID == organization, viewer.role.isStaff else {
            throw TenancyError(.roleNotAllowed, "only the clinic's staff may list its elevated sessions")
        }
        let everyone = viewer.role == .owner || viewer.role == .admin
        return try await admin.withOrganization(organization, actor: .user(viewer.userID)) { tx in
            var sessions: [Summary] = []
            for kind in ElevatedSession.Kind.allCases {
                let patient: SQLQuery = kind == .impersonation ? "patient_id" : "NULL AS patient_id"
                let mine: SQLQuery = everyone ? "" : " AND user_id = \(viewer.userID)"
                for row in try await tx.query("""
                    SELECT id, user_id, \(patient), reason, opened_at, expires_at FROM \(unsafeRaw: kind.table) \
                    WHERE organization_id = \(organization) AND closed_at IS NULL AND expires_at > \(tx.dialect.now)\(mine)
                    """)
                {
                    sessions.append(Summary(
                        id: try row.decode("id", as: UUID.self), kind: kind, organizationID: organization,
                        actorUserID: try row.decode("user_id", as: UUID.self), patientID: try row.decode("patient_id", as: UUID?.self),
                        reason: try row.decode("reason", as: String.self), openedAt: try row.decode("opened_at", as: Date.self),
                        expiresAt: try row.decode("expires_at", as: Date.self)
                    ))
                }
            }
            return sessions.sorted { ($0.openedAt, $0.id.uuidString) > ($1.openedAt, $1.id.uuidString) }
        }
    }

    /// What one sweep closed.
    public struct SweepReport: Sendable, Hashable {
        /// Break-glass sessions closed by this sweep.
        public var breakGlass = 0
        /// Impersonation sessions closed by this sweep.
        public var impersonation = 0
    }

    /// Closes every session that expired while still open, in batches of `batchSize`: each gets
    /// `closed_at = expires_at`, `closed_by = 'expiry'` and one system-attributed `*.expire`
    /// audit row in the same transaction. A session another sweep closed first is skipped (the
    /// UPDATE re-checks `closed_at IS NULL` under its row lock), so concurrent sweeps write one
    /// close row per session between them.
    public func sweepExpired(batchSize: Int = 500) async throws -> SweepReport {
        precondition((1...10_000).contains(batchSize), "batchSize must be 1-10000")
        var report = SweepReport()
        for kind in ElevatedSession.Kind.allCases {
            while true {
                let (candidates, closed) = try await admin.unscoped(
                    reason: "expired-sessions-sweep: close sessions that expired while open",
                    actor: .system("expired-sessions-sweep")
                ) { tx in
                    let rows = try await tx.query("""
                        SELECT id, organization_id, user_id FROM \(unsafeRaw: kind.table) \
                        WHERE closed_at IS NULL AND expires_at <= \(tx.dialect.now) ORDER BY id LIMIT \(batchSize)
                        """)
                    guard !rows.isEmpty else { return (0, 0) }
                    let sessions = try rows.map { row in
                        (id: try row.decode("id", as: UUID.self), organization: try row.decode("organization_id", as: UUID.self),
                         user: try row.decode("user_id", as: UUID.self))
                    }
                    let updates = try await tx.pipeline(sessions.map { session in
                        """
                        UPDATE \(unsafeRaw: kind.table) SET closed_at = expires_at, closed_by = 'expiry' \
                        WHERE id = \(session.id) AND closed_at IS NULL
                        """
                    })
                    let won = zip(sessions, updates).filter { $0.1.affectedRows == 1 }.map(\.0)
                    if !won.isEmpty {
                        _ = try await tx.pipeline(won.map { session in
                            Self.auditInsert(
                                kind, verb: "expire", session: session.id, organization: session.organization, actor: nil, kind: "system",
                                metadata: ["session_user_id": session.user.lowercasedString, "job": "expired-sessions-sweep"]
                            )
                        })
                    }
                    return (rows.count, won.count)
                }
                if kind == .breakGlass { report.breakGlass += closed } else { report.impersonation += closed }
                if candidates < batchSize { break }
            }
        }
        return report
    }

    // MARK: - SQL

    /// The first statement of every transaction under an elevated context: appends the access
    /// audit row if, and only if, the session is open, belongs to this context, (for
    /// impersonation) names the context's patient, and the clinic is still active (break-glass:
    /// and the user not deleted). One row means go on; zero means refuse.
    static func accessGate(_ context: TenantContext, dialect: SQLDialect) -> SQLQuery? {
        let organization = context.organizationID
        let origin = AuditOrigin.resolved
        switch context.actionContext {
        case .normal:
            return nil
        case .breakGlass(let session):
            return """
                INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context, resource_type, resource_id, \
                request_id, client_address, metadata) \
                SELECT \(UUIDv7.generate()), s.organization_id, s.user_id, 'user', 'break_glass.access', 'break_glass', \
                'break_glass_session', s.id, \(origin?.requestID), \(origin?.clientAddress), \(json: ["session_id": session.lowercasedString]) \
                FROM break_glass_sessions s WHERE s.id = \(session) AND s.organization_id = \(organization) \
                AND s.user_id = \(context.userID) AND s.closed_at IS NULL AND s.expires_at > \(dialect.now) \
                AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = s.organization_id AND o.status = 'active') \
                AND EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id AND u.deleted_at IS NULL)
                """
        case .impersonation(let session, let actor):
            return """
                INSERT INTO audit_log (id, organization_id, actor_user_id, actor_kind, action, action_context, resource_type, resource_id, \
                request_id, client_address, metadata) \
                SELECT \(UUIDv7.generate()), s.organization_id, s.user_id, 'user', 'impersonation.access', 'impersonation', \
                'patient', s.patient_id, \(origin?.requestID), \(origin?.clientAddress), \(json: ["session_id": session.lowercasedString, "acting_as_user_id": context.userID.lowercasedString]) \
                FROM patient_impersonation_sessions s JOIN patients p ON p.organization_id = s.organization_id AND p.id = s.patient_id \
                WHERE s.id = \(session) AND s.organization_id = \(organization) AND s.user_id = \(actor) \
                AND p.user_id = \(context.userID) AND p.deleted_at IS NULL AND s.closed_at IS NULL AND s.expires_at > \(dialect.now) \
                AND EXISTS (SELECT 1 FROM organizations o WHERE o.id = s.organization_id AND o.status = 'active')
                """
        }
    }

    static func auditInsert(
        _ kind: ElevatedSession.Kind, verb: String, session: UUID, organization: UUID, actor: UUID?, kind actorKind: String,
        metadata: [String: String]
    ) -> SQLQuery {
        var metadata = metadata
        metadata["session_id"] = session.lowercasedString
        return AuditEvent(action: "\(kind.rawValue).\(verb)", resourceType: kind.resourceType, resourceID: session).withOrigin().insert(
            organizationID: organization, actorUserID: actor, actorKind: actorKind, actionContext: kind.rawValue, metadata: metadata
        )
    }


    static func now(_ dialect: SQLDialect, plus duration: Duration) -> SQLQuery {
        let seconds = Int(duration.components.seconds)
        return dialect == .postgres
            ? "now() + \(seconds) * interval '1 second'"
            : "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', \("+\(seconds) seconds"))"
    }

    private func validated(reason: String, duration: Duration) throws(TenancyError) -> String {
        // Free text, but no control characters (C0, DEL, C1), checked before trimming: a NUL would
        // end the text early for SQLite's length() and is refused outright by Postgres; the
        // others only hide what was written.
        guard !reason.unicodeScalars.contains(where: { scalar in
            scalar.value < 0x20 ? !"\t\n\r".unicodeScalars.contains(scalar) : (0x7F...0x9F).contains(scalar.value)
        }) else {
            throw TenancyError(.invalidReason, "a reason has no control characters (tabs and line breaks are fine)")
        }
        let trimmed = reason.trimmingCharacters(in: .whitespacesAndNewlines)
        // Counted as the database counts it (`length()`: code points, not grapheme clusters), at
        // most 2000 as sent and at least 10 besides the whitespace around them.
        guard reason.unicodeScalars.count <= 2000, (10...2000).contains(trimmed.unicodeScalars.count) else {
            throw TenancyError(.invalidReason, "an elevated session needs a reason of 10-2000 characters")
        }
        guard duration >= .seconds(60), duration <= maximumDuration else {
            throw TenancyError(.invalidContext, "a session lasts between 1 minute and \(maximumDuration.components.seconds / 60) minutes")
        }
        return trimmed
    }

    /// Staff of the clinic (any staff role) or a platform administrator, in an active clinic.
    private static func requireEligible(_ tx: borrowing AdminTransaction, organization: UUID, user: UUID) async throws {
        let row = try await tx.first("""
            SELECT o.status AS status, u.is_platform_admin AS platform_admin, m.role AS role \
            FROM organizations o JOIN users u ON u.id = \(user) AND u.deleted_at IS NULL \
            LEFT JOIN memberships m ON m.organization_id = o.id AND m.user_id = u.id WHERE o.id = \(organization)
            """)
        guard let row else { throw TenancyError(.notAMember, "no such user or organization") }
        guard try row.decode("status", as: String.self) == "active" else {
            throw TenancyError(.organizationInactive, "the organization is not active")
        }
        let staff = try row.decode("role", as: String?.self).flatMap(TenantRole.init(rawValue:))?.isStaff ?? false
        let platformAdmin = try row.decode("platform_admin", as: Bool.self)
        guard staff || platformAdmin else {
            throw TenancyError(.notAMember, "only the clinic's staff or a platform administrator may open an elevated session")
        }
    }
}
