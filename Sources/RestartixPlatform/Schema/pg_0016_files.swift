// Migration 16 for PostgreSQL: files, a tenant table (Files.swift): every object the Core API
// signed an upload URL for, under the uploads bucket's org-scoped keys
// (`{org_id}/{surface}/{file_id}`), with who asked, the patient it belongs to, its declared
// type and size (what the URL was signed for) and whether the upload was seen to complete.
//
// - The clinic's staff read and write the clinic's files; a patient reads and writes the files
//   that are its own (`patient_user_id`, its account, checked against its patient record as
//   for appointments and telemetry sessions).
// - The app role inserts rows and updates only `state` and `uploaded_at`; nothing deletes.
// - `object_key` is unique and must start with the row's clinic: a row cannot point at another
//   clinic's object.

import RestartixKit

extension MigrationSet {
    static let postgresFiles = Migration(version: 16, name: "files", sql: #"""
        CREATE TABLE files (
            id uuid PRIMARY KEY,
            organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
            owner_user_id uuid NOT NULL REFERENCES users (id),
            patient_id uuid,
            patient_user_id uuid REFERENCES users (id) ON DELETE SET NULL,
            surface text NOT NULL CHECK (surface IN ('patient-files', 'signatures', 'exercise-videos', 'documents', 'generated-pdfs')),
            object_key text NOT NULL UNIQUE,
            content_type text NOT NULL CHECK (length(content_type) BETWEEN 3 AND 255),
            size_bytes bigint NOT NULL CHECK (size_bytes > 0),
            state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'uploaded')),
            created_at timestamptz NOT NULL DEFAULT now(),
            uploaded_at timestamptz,
            CONSTRAINT files_key_check CHECK (object_key = organization_id::text || '/' || surface || '/' || id::text),
            CONSTRAINT files_uploaded_check CHECK ((state = 'uploaded') = (uploaded_at IS NOT NULL)),
            CONSTRAINT files_patient_check CHECK (patient_user_id IS NULL OR patient_id IS NOT NULL),
            UNIQUE (organization_id, id),
            FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE
        );
        CREATE INDEX files_org_patient_idx ON files (organization_id, patient_id, created_at);

        CREATE TRIGGER files_patient_user AFTER INSERT OR UPDATE OF patient_id, patient_user_id ON files
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
            ('patient_exercise_logs', 'organization_id'),
            ('appointment_followups', 'organization_id'),
            ('files', 'organization_id')
        ) AS t (table_name, tenant_column);

        DO $$
        DECLARE
            own text := '(SELECT nullif(current_setting(''app.current_role'', true), '''')) = ''patient'' '
                'AND patient_user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid)';
        BEGIN
            PERFORM restartix_force_rls('files'::regclass);
            CREATE POLICY tenant_isolation ON files AS RESTRICTIVE FOR ALL TO restartix_app
                USING (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
                WITH CHECK (organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
            CREATE POLICY staff_access ON files AS PERMISSIVE FOR ALL TO restartix_app
                USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'))
                WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'));
            CREATE POLICY admin_access ON files AS PERMISSIVE FOR ALL TO restartix_admin
                USING ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                    OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
                WITH CHECK ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
                    OR organization_id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));
            -- A patient reads, asks for and completes uploads of its own.
            EXECUTE format('CREATE POLICY patient_self_read ON files AS PERMISSIVE FOR SELECT TO restartix_app USING (%s)', own);
            EXECUTE format('CREATE POLICY patient_self_insert ON files AS PERMISSIVE FOR INSERT TO restartix_app WITH CHECK (%s)', own);
            EXECUTE format('CREATE POLICY patient_self_update ON files AS PERMISSIVE FOR UPDATE TO restartix_app USING (%s) WITH CHECK (%s)', own, own);
            EXECUTE format('GRANT SELECT, INSERT ON %I.files TO restartix_app', current_schema());
            EXECUTE format('GRANT UPDATE (state, uploaded_at) ON %I.files TO restartix_app', current_schema());
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.files TO restartix_admin', current_schema());
        END;
        $$;

        SELECT restartix_record_security_baseline();
        """#)
}
