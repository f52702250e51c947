// Migration 14 for PostgreSQL: appointment_followups, a tenant table (AppointmentFollowups.swift).
//
// - What a booking owes after it commits: the confirmation e-mail, and for a video appointment
//   its Daily room. The database writes them, in the booking's own transaction, from an AFTER
//   INSERT trigger on appointments: whoever books (the API, or a hostile client with the app
//   role's SQL) gets exactly the follow-ups the booking needs, no more, and a booking can never
//   commit without them. The trigger runs as the schema's owner (SECURITY DEFINER, pinned
//   search_path); the owner's only policy on the table lets it insert (RLS is forced on owners
//   too).
// - The app role may only read them (staff: the clinic's); no patient policy. The platform's
//   follow-up worker (the Core API after a booking, and `restartix-jobs appointment-followups`)
//   claims, retries and settles them as the admin role (which, as on every tenant table, may
//   do anything inside the clinic it names).
// - Ids are made here (gen_random_uuid), not by the client: the rows are the database's.
// - `appointment_followups_due_idx` serves the worker's scan across clinics (platform work
//   through `AdminDatabase.unscoped`); per-clinic reads go by the unique key.

import RestartixKit

extension MigrationSet {
    static let postgresAppointmentFollowups = Migration(version: 14, name: "appointment_followups", sql: #"""
        CREATE TABLE appointment_followups (
            id uuid PRIMARY KEY,
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            appointment_id uuid NOT NULL,
            kind text NOT NULL CHECK (kind IN ('confirmation_email', 'video_room')),
            state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'skipped', 'failed')),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            lease_until timestamptz,
            last_error text CHECK (length(last_error) <= 500),
            result text CHECK (length(result) <= 500),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (organization_id, appointment_id, kind),
            UNIQUE (organization_id, id),
            FOREIGN KEY (organization_id, appointment_id) REFERENCES appointments (organization_id, id) ON DELETE CASCADE
        );
        CREATE INDEX appointment_followups_due_idx ON appointment_followups (next_attempt_at) WHERE state = 'pending';

        DO $do$
        BEGIN
            EXECUTE format($f$
                CREATE FUNCTION restartix_appointment_followups()
                RETURNS trigger
                LANGUAGE plpgsql
                SECURITY DEFINER
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    INSERT INTO appointment_followups (id, organization_id, appointment_id, kind)
                    VALUES (gen_random_uuid(), NEW.organization_id, NEW.id, 'confirmation_email');
                    IF NEW.kind = 'video' THEN
                        INSERT INTO appointment_followups (id, organization_id, appointment_id, kind)
                        VALUES (gen_random_uuid(), NEW.organization_id, NEW.id, 'video_room');
                    END IF;
                    RETURN NULL;
                END;
                $$
            $f$, current_schema());
        END;
        $do$;
        REVOKE EXECUTE ON FUNCTION restartix_appointment_followups() FROM PUBLIC;
        CREATE TRIGGER appointments_followups AFTER INSERT ON appointments
            FOR EACH ROW EXECUTE FUNCTION restartix_appointment_followups();

        CREATE OR REPLACE VIEW restartix_tenant_tables AS
        SELECT table_name, tenant_column FROM (VALUES
            ('organizations', 'id'),
            ('organization_domains', 'organization_id'),
            ('memberships', 'organization_id'),
            ('patients', 'organization_id'),
            ('audit_log', 'organization_id'),
            ('usage_records', 'organization_id'),
            ('usage_quotas', 'organization_id'),
            ('usage_summaries', 'organization_id'),
            ('break_glass_sessions', 'organization_id'),
            ('patient_impersonation_sessions', 'organization_id'),
            ('pose_session_metrics', 'organization_id'),
            ('pose_rep_metrics', 'organization_id'),
            ('media_session_metrics', 'organization_id'),
            ('media_buffering_events', 'organization_id'),
            ('appointments', 'organization_id'),
            ('telemetry_sessions', 'organization_id'),
            ('patient_exercise_logs', 'organization_id'),
            ('appointment_followups', 'organization_id')
        ) AS t (table_name, tenant_column);

        SELECT restartix_force_rls('appointment_followups'::regclass);

        CREATE POLICY tenant_isolation ON appointment_followups AS RESTRICTIVE FOR ALL TO restartix_app
            USING (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
            WITH CHECK (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
        CREATE POLICY staff_access ON appointment_followups AS PERMISSIVE FOR ALL TO restartix_app
            USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'))
            WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'));
        CREATE POLICY admin_access ON appointment_followups AS PERMISSIVE FOR ALL TO restartix_admin
            USING ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
            WITH CHECK ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
        DO $$
        BEGIN
            -- The booking trigger's own writes: RLS is forced on the owner too.
            EXECUTE format('CREATE POLICY booking_trigger_insert ON appointment_followups AS PERMISSIVE FOR INSERT TO %I WITH CHECK (true)', current_user);
            EXECUTE format('GRANT SELECT ON %I.appointment_followups TO restartix_app', current_schema());
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.appointment_followups TO restartix_admin', current_schema());
        END;
        $$;

        SELECT restartix_record_security_baseline();
        """#)
}
