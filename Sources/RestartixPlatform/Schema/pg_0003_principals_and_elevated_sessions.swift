// Migration 3 for PostgreSQL: principals and elevated sessions (Documentation/RestartixTenancy.md).
// Immutable once applied, like every migration.

/// Migration 3:
/// - `organizations.clerk_organization_id`: the principal lookup maps a Clerk session token's
///   organization claim to a clinic.
/// - Elevated sessions. A break-glass or impersonation transaction also sets `app.session_id`
///   (RestartixTenancy). That one session row is readable inside it (`session_read`), which is
///   how the transaction's first statement checks that the session is still open, and an
///   impersonation audit row may name the staff member behind the session as its actor (the
///   context's user is then the patient). Any other row still names the context's user.
import RestartixKit

extension MigrationSet {
    static let postgresTenancy3 = Migration(version: 3, name: "principals_and_elevated_sessions", sql: postgres0003)
}

private let postgres0003 = #"""
ALTER TABLE organizations ADD COLUMN clerk_organization_id text UNIQUE
    CHECK (clerk_organization_id IS NULL OR length(clerk_organization_id) BETWEEN 1 AND 255);

CREATE POLICY session_read ON break_glass_sessions AS PERMISSIVE FOR SELECT TO restartix_app
    USING (id = (SELECT nullif(current_setting('app.session_id', true), '')::uuid));
CREATE POLICY session_read ON patient_impersonation_sessions AS PERMISSIVE FOR SELECT TO restartix_app
    USING (id = (SELECT nullif(current_setting('app.session_id', true), '')::uuid));

DROP POLICY audit_actor ON audit_log;
CREATE POLICY audit_actor ON audit_log AS RESTRICTIVE FOR INSERT TO restartix_app
    WITH CHECK (actor_kind = 'user'
        AND action_context IN ('normal', 'break_glass', 'impersonation')
        AND (actor_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid)
            OR (action_context = 'impersonation'
                AND actor_user_id = (SELECT s.user_id FROM patient_impersonation_sessions s
                    WHERE s.id = (SELECT nullif(current_setting('app.session_id', true), '')::uuid)
                    AND s.organization_id = audit_log.organization_id))));
"""#
