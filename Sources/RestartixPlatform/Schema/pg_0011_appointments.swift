// Migration 11 for PostgreSQL: appointments, a tenant table (Appointments.swift).
//
// - A booking holds its slot through `booked_slot`: the slot's key while booked, NULL once
//   canceled, unique per clinic, so two bookings of one slot cannot both stand whoever writes
//   them (unique checks see every row, whatever the writer's policies show it).
// - Fences: a booking carries its hold's fence, and `slot_fences` keeps the greatest fence each
//   slot has been booked with. A booking whose fence is not greater is refused
//   (`appointments_fence_order_check`), so a holder that stalled past its hold cannot book after a
//   later holder. The check runs as the schema's owner (SECURITY DEFINER): a patient's own
//   policies show it none of the other patients' bookings of the slot. `slot_fences` has no
//   grant to the app or admin role; only that trigger writes it.
// - `patient_user_id` is the booked patient's own account, what the patient policies match on;
//   a row whose account is not its patient's is refused (`appointments_patient_user_check`),
//   checked as the writer (a patient cannot see another patient's record, so cannot name it).
// - The app role inserts and cancels (status, booked_slot, canceled_at, updated_at); no role of
//   the app deletes an appointment.

import RestartixKit

extension MigrationSet {
    static let postgresAppointments = Migration(version: 11, name: "appointments", sql: #"""
        CREATE TABLE appointments (
            id uuid PRIMARY KEY,
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            patient_id uuid NOT NULL,
            patient_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
            specialist_user_id uuid NOT NULL,
            starts_at timestamptz NOT NULL,
            ends_at timestamptz NOT NULL,
            kind text NOT NULL CHECK (kind IN ('in_person', 'video')),
            status text NOT NULL CHECK (status IN ('booked', 'canceled')),
            slot text NOT NULL CHECK (length(slot) BETWEEN 1 AND 200),
            booked_slot text,
            fence bigint NOT NULL CHECK (fence >= 1),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            canceled_at timestamptz,
            CONSTRAINT appointments_times_check CHECK (ends_at > starts_at),
            CONSTRAINT appointments_booking_check CHECK (
                (status = 'booked' AND booked_slot = slot AND canceled_at IS NULL)
                OR (status = 'canceled' AND booked_slot IS NULL AND canceled_at IS NOT NULL)),
            UNIQUE (organization_id, id),
            CONSTRAINT appointments_organization_id_booked_slot_key UNIQUE (organization_id, booked_slot),
            FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE
        );
        CREATE INDEX appointments_org_starts_idx ON appointments (organization_id, starts_at);
        CREATE INDEX appointments_org_patient_idx ON appointments (organization_id, patient_id);

        CREATE TABLE slot_fences (
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            slot text NOT NULL,
            fence bigint NOT NULL,
            PRIMARY KEY (organization_id, slot)
        );
        REVOKE ALL ON slot_fences FROM PUBLIC;

        DO $do$
        BEGIN
            EXECUTE format($f$
                CREATE FUNCTION restartix_appointment_fence()
                RETURNS trigger
                LANGUAGE plpgsql
                SECURITY DEFINER
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    INSERT INTO slot_fences AS f (organization_id, slot, fence)
                    VALUES (NEW.organization_id, NEW.slot, NEW.fence)
                    ON CONFLICT (organization_id, slot) DO UPDATE SET fence = excluded.fence
                    WHERE f.fence < excluded.fence;
                    IF NOT FOUND THEN
                        RAISE EXCEPTION 'new row for relation "appointments" violates check constraint "appointments_fence_order_check"'
                            USING ERRCODE = '23514', CONSTRAINT = 'appointments_fence_order_check', TABLE = 'appointments',
                                  DETAIL = 'a later hold of the slot has been booked with';
                    END IF;
                    RETURN NULL;
                END;
                $$
            $f$, current_schema());
            EXECUTE format($f$
                CREATE FUNCTION restartix_appointment_patient_user()
                RETURNS trigger
                LANGUAGE plpgsql
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    IF NEW.patient_user_id IS NOT NULL AND NEW.patient_user_id IS DISTINCT FROM (
                        SELECT p.user_id FROM patients p WHERE p.organization_id = NEW.organization_id AND p.id = NEW.patient_id
                    ) THEN
                        RAISE EXCEPTION 'new row for relation "appointments" violates check constraint "appointments_patient_user_check"'
                            USING ERRCODE = '23514', CONSTRAINT = 'appointments_patient_user_check', TABLE = 'appointments';
                    END IF;
                    RETURN NULL;
                END;
                $$
            $f$, current_schema());
        END;
        $do$;
        REVOKE EXECUTE ON FUNCTION restartix_appointment_fence() FROM PUBLIC;
        REVOKE EXECUTE ON FUNCTION restartix_appointment_patient_user() FROM PUBLIC;
        -- After the row is written: the writer's policies and the unique keys speak first, as on SQLite.
        CREATE TRIGGER appointments_fence AFTER INSERT ON appointments
            FOR EACH ROW EXECUTE FUNCTION restartix_appointment_fence();
        CREATE TRIGGER appointments_patient_user AFTER INSERT OR UPDATE OF patient_id, patient_user_id ON appointments
            FOR EACH ROW EXECUTE FUNCTION restartix_appointment_patient_user();

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
            ('appointments', 'organization_id')
        ) AS t (table_name, tenant_column);

        SELECT restartix_force_rls('appointments'::regclass);

        CREATE POLICY tenant_isolation ON appointments AS RESTRICTIVE FOR ALL TO restartix_app
            USING (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
            WITH CHECK (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
        CREATE POLICY staff_access ON appointments AS PERMISSIVE FOR ALL TO restartix_app
            USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'))
            WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'));
        CREATE POLICY admin_access ON appointments AS PERMISSIVE FOR ALL TO restartix_admin
            USING ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
            WITH CHECK ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
        -- A patient reads, books and cancels its own appointments.
        CREATE POLICY patient_self_read ON appointments AS PERMISSIVE FOR SELECT TO restartix_app
            USING ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
                AND patient_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));
        CREATE POLICY patient_self_insert ON appointments AS PERMISSIVE FOR INSERT TO restartix_app
            WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
                AND patient_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));
        CREATE POLICY patient_self_update ON appointments AS PERMISSIVE FOR UPDATE TO restartix_app
            USING ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
                AND patient_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid))
            WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
                AND patient_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));

        DO $$
        BEGIN
            EXECUTE format('GRANT SELECT, INSERT ON %I.appointments TO restartix_app', current_schema());
            EXECUTE format('GRANT UPDATE (status, booked_slot, canceled_at, updated_at) ON %I.appointments TO restartix_app', current_schema());
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.appointments TO restartix_admin', current_schema());
        END;
        $$;

        SELECT restartix_record_security_baseline();
        """#)
}
