// Migration 12 for PostgreSQL: telemetry_sessions and patient_exercise_logs, tenant tables
// (TelemetrySessions.swift, TelemetryAggregates.swift).
//
// - telemetry_sessions: every session the Core API started for a patient (its token is bound
//   to it), and when its aggregates were recorded, with what (exercise, repetitions, videos):
//   the aggregates endpoint's idempotency key and its answer to a repeated delivery.
// - patient_exercise_logs: per patient and exercise, how many sessions of it were done, and the
//   last one. The aggregates endpoint counts a session up once.
// - Both carry `patient_user_id`, the patient's own account, which the patient policies match
//   on; it must be the patient record's account (`<table>_patient_user_check`), checked as the
//   writer, as for appointments (migration 11).
// - The app role inserts and updates only the columns named in the grants; nothing deletes.

import RestartixKit

extension MigrationSet {
    static let postgresTelemetrySessions = Migration(version: 12, name: "telemetry_sessions", sql: #"""
        CREATE TABLE telemetry_sessions (
            id uuid PRIMARY KEY,
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            patient_id uuid NOT NULL,
            patient_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            aggregated_at timestamptz,
            exercise text CHECK (length(exercise) BETWEEN 1 AND 64),
            rep_count integer CHECK (rep_count >= 0),
            media_count integer CHECK (media_count >= 0),
            CONSTRAINT telemetry_sessions_times_check CHECK (expires_at > started_at),
            CONSTRAINT telemetry_sessions_recorded_check CHECK (
                (aggregated_at IS NULL) = (exercise IS NULL) AND (aggregated_at IS NULL) = (rep_count IS NULL)
                AND (aggregated_at IS NULL) = (media_count IS NULL)),
            UNIQUE (organization_id, id),
            FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE
        );
        CREATE INDEX telemetry_sessions_org_patient_idx ON telemetry_sessions (organization_id, patient_id, started_at);

        CREATE TABLE patient_exercise_logs (
            id uuid PRIMARY KEY,
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            patient_id uuid NOT NULL,
            patient_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
            exercise text NOT NULL CHECK (length(exercise) BETWEEN 1 AND 64 AND exercise ~ '^[a-z0-9_]+$'),
            done_count integer NOT NULL DEFAULT 0 CHECK (done_count >= 0),
            last_session_id uuid,
            last_done_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (organization_id, patient_id, exercise),
            UNIQUE (organization_id, id),
            FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE
        );

        -- The row's patient account is its patient record's (any table with patient_id and
        -- patient_user_id); checked after the writer's policies, as the writer.
        DO $do$
        BEGIN
            EXECUTE format($f$
                CREATE FUNCTION restartix_patient_account_check()
                RETURNS trigger
                LANGUAGE plpgsql
                SET search_path = %I, pg_temp
                AS $$
                BEGIN
                    IF NEW.patient_user_id IS NOT NULL AND NEW.patient_user_id IS DISTINCT FROM (
                        SELECT p.user_id FROM patients p WHERE p.organization_id = NEW.organization_id AND p.id = NEW.patient_id
                    ) THEN
                        RAISE EXCEPTION 'new row for relation "%%" violates check constraint "%%"', TG_TABLE_NAME, TG_TABLE_NAME || '_patient_user_check'
                            USING ERRCODE = '23514', CONSTRAINT = TG_TABLE_NAME || '_patient_user_check', TABLE = TG_TABLE_NAME;
                    END IF;
                    RETURN NULL;
                END;
                $$
            $f$, current_schema());
        END;
        $do$;
        REVOKE EXECUTE ON FUNCTION restartix_patient_account_check() FROM PUBLIC;
        CREATE TRIGGER telemetry_sessions_patient_user AFTER INSERT OR UPDATE OF patient_id, patient_user_id ON telemetry_sessions
            FOR EACH ROW EXECUTE FUNCTION restartix_patient_account_check();
        CREATE TRIGGER patient_exercise_logs_patient_user AFTER INSERT OR UPDATE OF patient_id, patient_user_id ON patient_exercise_logs
            FOR EACH ROW EXECUTE FUNCTION restartix_patient_account_check();

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
            ('patient_exercise_logs', 'organization_id')
        ) AS t (table_name, tenant_column);

        DO $$
        DECLARE
            t text;
            own text := '(SELECT nullif(current_setting(''app.current_role'', true), '''')) = ''patient'' '
                'AND patient_user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid)';
        BEGIN
            FOREACH t IN ARRAY ARRAY['telemetry_sessions', 'patient_exercise_logs'] LOOP
                PERFORM restartix_force_rls(t::regclass);
                EXECUTE format(
                    'CREATE POLICY tenant_isolation ON %I AS RESTRICTIVE FOR ALL TO restartix_app '
                    'USING (organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid)) '
                    'WITH CHECK (organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid))', t);
                EXECUTE format(
                    'CREATE POLICY staff_access ON %I AS PERMISSIVE FOR ALL TO restartix_app '
                    'USING ((SELECT nullif(current_setting(''app.current_role'', true), '''')) IN (''owner'', ''admin'', ''specialist'', ''assistant'')) '
                    'WITH CHECK ((SELECT nullif(current_setting(''app.current_role'', true), '''')) IN (''owner'', ''admin'', ''specialist'', ''assistant''))', t);
                EXECUTE format(
                    'CREATE POLICY admin_access ON %I AS PERMISSIVE FOR ALL TO restartix_admin '
                    'USING ((SELECT nullif(current_setting(''app.unscoped'', true), '''')) = ''on'' '
                    'OR organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid)) '
                    'WITH CHECK ((SELECT nullif(current_setting(''app.unscoped'', true), '''')) = ''on'' '
                    'OR organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid))', t);
                -- A patient reads, starts and records its own.
                EXECUTE format('CREATE POLICY patient_self_read ON %I AS PERMISSIVE FOR SELECT TO restartix_app USING (%s)', t, own);
                EXECUTE format('CREATE POLICY patient_self_insert ON %I AS PERMISSIVE FOR INSERT TO restartix_app WITH CHECK (%s)', t, own);
                EXECUTE format('CREATE POLICY patient_self_update ON %I AS PERMISSIVE FOR UPDATE TO restartix_app USING (%s) WITH CHECK (%s)', t, own, own);
                EXECUTE format('GRANT SELECT, INSERT ON %I.%I TO restartix_app', current_schema(), t);
                EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO restartix_admin', current_schema(), t);
            END LOOP;
            EXECUTE format('GRANT UPDATE (aggregated_at, exercise, rep_count, media_count) ON %I.telemetry_sessions TO restartix_app', current_schema());
            EXECUTE format('GRANT UPDATE (done_count, last_session_id, last_done_at, updated_at) ON %I.patient_exercise_logs TO restartix_app', current_schema());
        END;
        $$;

        SELECT restartix_record_security_baseline();
        """#)
}
