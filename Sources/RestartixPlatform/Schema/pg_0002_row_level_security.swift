// Row-level security for PostgreSQL: the tenancy contract of DESIGN.md §4 and
// Documentation/RestartixTenancy.md. Immutable once applied, like every migration.

/// Migration 2: every tenant table gets ENABLE + FORCE ROW LEVEL SECURITY and its policies, the
/// app role its grants (and nothing more), partitions inherit RLS when they are created.
///
/// The context lives in three transaction-scoped settings written by one
/// `SELECT set_config(..., true) x3` statement (RestartixTenancy): `app.current_org_id`,
/// `app.current_user_id`, `app.current_role`. Every read of them is
/// `(SELECT nullif(current_setting(k, true), ''))`: the subselect is evaluated once per query,
/// and `nullif` turns the '' that a pooled connection holds after an earlier transaction into
/// NULL, so an unset context matches no row instead of raising `''::uuid` or falling back to a
/// default tenant.
///
/// Policies (all roles other than these two have none, so they see nothing):
/// - restartix_app, restrictive `tenant_isolation` on every tenant table: the row's clinic is
///   the context's clinic, for reads (USING) and writes (WITH CHECK).
/// - restartix_app, permissive: `staff_access` for owner/admin/specialist/assistant on every
///   tenant table; `patient_self_*` for the patient role on the rows tied to its own user only
///   (its patient record and membership, its telemetry, its clinic's organization row).
/// - restartix_admin, permissive `admin_access`: the context's clinic, or every clinic when the
///   transaction set `app.unscoped = 'on'` (AdminDatabase.unscoped(reason:), which audits it).
import RestartixKit

extension MigrationSet {
    static let postgresTenancy = Migration(version: 2, name: "row_level_security", sql: postgres0002)
}

private let postgres0002 = #"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_app')
       OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
        RAISE EXCEPTION 'roles restartix_app and restartix_admin must exist before this migration (see Documentation/Runbooks/LocalServices.md)'
            USING ERRCODE = '42704';
    END IF;
END;
$$;

-- ENABLE + FORCE on a table and on each of its partitions. Partitions get no policies of their
-- own: reached directly (not through their parent) they show nothing to anyone but a superuser.
CREATE FUNCTION restartix_force_rls(target regclass)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    part regclass;
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = target LOOP
        PERFORM restartix_force_rls(part);
    END LOOP;
END;
$$;

-- The partition roller of migration 1, now also forcing RLS on each partition it creates.
CREATE OR REPLACE FUNCTION restartix_ensure_monthly_partitions(parent regclass, months_ahead integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    base_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    parent_name text;
    parent_schema text;
    parent_rls boolean;
    partition_name text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
BEGIN
    IF months_ahead < 0 OR months_ahead > 36 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 36' USING ERRCODE = '22023';
    END IF;
    SELECT c.relname, n.nspname, c.relrowsecurity INTO parent_name, parent_schema, parent_rls
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = parent AND c.relkind = 'p';
    IF parent_name IS NULL THEN
        RAISE EXCEPTION 'table % is not partitioned', parent USING ERRCODE = '42809';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('restartix_ensure_monthly_partitions'), hashtext(parent_schema || '.' || parent_name));
    FOR i IN 0..months_ahead LOOP
        lower_bound := (base_month + make_interval(months => i)) AT TIME ZONE 'UTC';
        upper_bound := (base_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        partition_name := parent_name || '_' || to_char(base_month + make_interval(months => i), 'YYYY_MM');
        IF NOT EXISTS (
            SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = partition_name AND n.nspname = parent_schema
        ) THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                parent_schema, partition_name, parent_schema, parent_name, lower_bound, upper_bound
            );
            IF parent_rls THEN
                EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', parent_schema, partition_name);
                EXECUTE format('ALTER TABLE %I.%I FORCE ROW LEVEL SECURITY', parent_schema, partition_name);
            END IF;
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
REVOKE EXECUTE ON FUNCTION restartix_ensure_monthly_partitions(regclass, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION restartix_force_rls(regclass) FROM PUBLIC;

-- Every table whose rows belong to one clinic, with the column naming the clinic. The boot
-- check (RestartixTenancy) and the isolation tests read this list.
CREATE VIEW restartix_tenant_tables AS
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
    ('media_buffering_events', 'organization_id')
) AS t (table_name, tenant_column);

SELECT restartix_force_rls(table_name::regclass) FROM restartix_tenant_tables;
SELECT restartix_force_rls('users'::regclass);

-- Clinic isolation for the app role: restrictive, so no permissive policy can widen it.
CREATE POLICY tenant_isolation ON organizations AS RESTRICTIVE FOR ALL TO restartix_app
    USING (id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
    WITH CHECK (id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));

DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM restartix_tenant_tables WHERE tenant_column = 'organization_id' LOOP
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I AS RESTRICTIVE FOR ALL TO restartix_app '
            'USING (organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid)) '
            'WITH CHECK (organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid))',
            t
        );
        -- Staff roles work on every row of their clinic.
        EXECUTE format(
            'CREATE POLICY staff_access ON %I AS PERMISSIVE FOR ALL TO restartix_app '
            'USING ((SELECT nullif(current_setting(''app.current_role'', true), '''')) IN (''owner'', ''admin'', ''specialist'', ''assistant'')) '
            'WITH CHECK ((SELECT nullif(current_setting(''app.current_role'', true), '''')) IN (''owner'', ''admin'', ''specialist'', ''assistant''))',
            t
        );
        -- Platform work: the context's clinic, or all of them inside an audited unscoped transaction.
        EXECUTE format(
            'CREATE POLICY admin_access ON %I AS PERMISSIVE FOR ALL TO restartix_admin '
            'USING ((SELECT nullif(current_setting(''app.unscoped'', true), '''')) = ''on'' '
            'OR organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid)) '
            'WITH CHECK ((SELECT nullif(current_setting(''app.unscoped'', true), '''')) = ''on'' '
            'OR organization_id = (SELECT nullif(current_setting(''app.current_org_id'', true), '''')::uuid))',
            t
        );
    END LOOP;
END;
$$;

-- Every role in the clinic reads its own organization row.
CREATE POLICY member_read ON organizations AS PERMISSIVE FOR SELECT TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant', 'patient'));
CREATE POLICY admin_access ON organizations AS PERMISSIVE FOR ALL TO restartix_admin
    USING ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
        OR id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid))
    WITH CHECK ((SELECT nullif(current_setting('app.unscoped', true), '')) = 'on'
        OR id = (SELECT nullif(current_setting('app.current_org_id', true), '')::uuid));

-- The patient role: only the rows tied to its own user.
CREATE POLICY patient_self_read ON patients AS PERMISSIVE FOR SELECT TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
        AND user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));
CREATE POLICY patient_self_update ON patients AS PERMISSIVE FOR UPDATE TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
        AND user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid))
    WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
        AND user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));
CREATE POLICY patient_self_read ON memberships AS PERMISSIVE FOR SELECT TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient'
        AND user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid));

DO $$
DECLARE
    t text;
    own text;
BEGIN
    FOR t, own IN VALUES
        ('pose_session_metrics',
         'patient_id IN (SELECT p.id FROM patients p WHERE p.user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid))'),
        ('media_session_metrics',
         'patient_id IN (SELECT p.id FROM patients p WHERE p.user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid))'),
        ('pose_rep_metrics',
         'session_id IN (SELECT s.id FROM pose_session_metrics s JOIN patients p ON p.organization_id = s.organization_id AND p.id = s.patient_id '
         'WHERE p.user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid))'),
        ('media_buffering_events',
         'media_session_id IN (SELECT s.id FROM media_session_metrics s JOIN patients p ON p.organization_id = s.organization_id AND p.id = s.patient_id '
         'WHERE p.user_id = (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid))')
    LOOP
        -- A patient reads and records its own telemetry.
        EXECUTE format(
            'CREATE POLICY patient_self_read ON %I AS PERMISSIVE FOR SELECT TO restartix_app '
            'USING ((SELECT nullif(current_setting(''app.current_role'', true), '''')) = ''patient'' AND %s)',
            t, own
        );
        EXECUTE format(
            'CREATE POLICY patient_self_insert ON %I AS PERMISSIVE FOR INSERT TO restartix_app '
            'WITH CHECK ((SELECT nullif(current_setting(''app.current_role'', true), '''')) = ''patient'' AND %s)',
            t, own
        );
    END LOOP;
END;
$$;

-- Audit rows: staff append and read them (staff_access), a patient appends only; no role has
-- UPDATE or DELETE on them (grants below), so nobody changes them.
CREATE POLICY member_append ON audit_log AS PERMISSIVE FOR INSERT TO restartix_app
    WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) = 'patient');
-- An app user appends audit rows as itself only: no forged actor, actor kind or context.
CREATE POLICY audit_actor ON audit_log AS RESTRICTIVE FOR INSERT TO restartix_app
    WITH CHECK (actor_kind = 'user'
        AND actor_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid)
        AND action_context IN ('normal', 'break_glass', 'impersonation'));

-- users is platform-wide: the app sees itself and the members of its clinic (memberships'
-- own policies decide who those are, so a patient sees only itself).
CREATE POLICY member_read ON users AS PERMISSIVE FOR SELECT TO restartix_app
    USING (id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid)
        OR id IN (SELECT m.user_id FROM memberships m));
CREATE POLICY admin_access ON users AS PERMISSIVE FOR ALL TO restartix_admin USING (true) WITH CHECK (true);

-- Grants: the app role gets what the service code needs and nothing else.
DO $$
DECLARE
    s text := current_schema();
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO restartix_app, restartix_admin', s);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM restartix_app', s);
    EXECUTE format('GRANT SELECT ON %I.organizations, %I.users TO restartix_app', s, s);
    EXECUTE format('GRANT SELECT, INSERT ON %I.audit_log TO restartix_app', s);
    EXECUTE format(
        'GRANT SELECT, INSERT, UPDATE, DELETE ON %1$I.organization_domains, %1$I.memberships, %1$I.patients, '
        '%1$I.usage_records, %1$I.usage_quotas, %1$I.usage_summaries, %1$I.break_glass_sessions, '
        '%1$I.patient_impersonation_sessions, %1$I.pose_session_metrics, %1$I.pose_rep_metrics, '
        '%1$I.media_session_metrics, %1$I.media_buffering_events TO restartix_app',
        s
    );
    EXECUTE format('GRANT SELECT ON %I.restartix_tenant_tables TO restartix_app, restartix_admin', s);
    -- Audit rows are append-only for the admin role too.
    EXECUTE format('REVOKE UPDATE, DELETE ON %I.audit_log FROM restartix_admin', s);
END;
$$;
"""#
