// Migration 6 for PostgreSQL: tenancy hardening against a hostile app-role client and a
// poisoned pooled connection (Documentation/RestartixTenancy.md, "Threat model"). Immutable once
// applied, like every migration.

/// Migration 6:
/// - No TEMPORARY on the database and no CREATE on the schema for PUBLIC, the app and the admin
///   role: nothing can shadow a table from `pg_temp` or another schema. (The transactions also
///   pin `search_path`; see RestartixTenancy's `TenantSessionSettings`.)
/// - Elevated sessions (`break_glass_sessions`, `patient_impersonation_sessions`) are read-only
///   to the app role: they are opened, closed and swept on the admin role only.
/// - Audit rows: `created_at` is always the database's (no INSERT grant on the column), and the
///   actor is bound to the context: `normal` rows name the context's user; `break_glass` rows
///   name it too and need an open break-glass session of that user (`app.session_id`);
///   `impersonation` rows name the staff member of an open impersonation session whose
///   patient is the context's user.
/// - Memberships: read by staff; added, re-roled and removed by a clinic's owner or admin, for
///   roles below their own and never for themselves, outside elevated sessions; only `role`
///   can change.
/// - Domains: read by staff, written by owner and admin (outside elevated sessions);
///   `verified_at` is the platform's.
/// - Usage: quotas and summaries are the platform's. The app role only counts usage: it may
///   raise `current_units` within a period and move an ended period to the current UTC month,
///   once (`restartix_usage_quota_guard`), never change a limit. Usage records are append-only.
/// - A patient named by an impersonation session cannot be deleted by the app role (the
///   cascade would take the sessions with it).
/// - `restartix_security_baseline`: the policies, RLS flags, triggers and grants this migration
///   leaves on every table of the schema, and every function's definition and privileges,
///   fingerprinted, so the boot check and `/ready` can report an object whose protection
///   differs from what the migrations set.
import RestartixKit

extension MigrationSet {
    static let postgresHardening = Migration(version: 6, name: "tenancy_hardening", sql: postgres0006)
}

private let postgres0006 = #"""
-- Nothing temporary, nothing created: no shadow table in pg_temp or in a schema of the app's.
-- REVOKE on the database needs its owner; run by another role it only warns, and the boot
-- check then names the TEMPORARY privilege that is left.
-- The database is shared by every schema migrated in it: its grants change under a
-- database-wide lock, and only while something is left to revoke.
DO $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('restartix_database_grants'));
    IF has_database_privilege('public', current_database(), 'TEMPORARY')
       OR has_database_privilege('restartix_app', current_database(), 'TEMPORARY')
       OR has_database_privilege('restartix_admin', current_database(), 'TEMPORARY') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, restartix_app, restartix_admin', current_database());
    END IF;
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, restartix_app, restartix_admin', current_schema());
    -- And `public`, where clusters made before PostgreSQL 15 let everyone create: a function
    -- there could shadow one the app calls unqualified (the boot check names any schema left).
    IF current_schema() <> 'public' AND EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'public')
       AND has_schema_privilege('public', 'public', 'CREATE') THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
END;
$$;

-- Elevated sessions: the admin role opens, closes and sweeps them (ElevatedSessions).
REVOKE INSERT, UPDATE, DELETE ON break_glass_sessions, patient_impersonation_sessions FROM restartix_app;

-- Audit rows: the database's clock, and no column the app may forge.
REVOKE INSERT ON audit_log FROM restartix_app;
GRANT INSERT (id, organization_id, actor_user_id, actor_kind, action, action_context, resource_type, resource_id,
              request_id, metadata) ON audit_log TO restartix_app;
DROP POLICY audit_actor ON audit_log;
CREATE POLICY audit_actor ON audit_log AS RESTRICTIVE FOR INSERT TO restartix_app
    WITH CHECK (actor_kind = 'user' AND (
        (action_context = 'normal'
            AND actor_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid))
        OR (action_context = 'break_glass'
            AND actor_user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid)
            AND EXISTS (
                SELECT 1 FROM break_glass_sessions s
                WHERE s.id = (SELECT nullif(current_setting('app.session_id', true), '')::uuid)
                  AND s.organization_id = audit_log.organization_id
                  AND s.user_id = audit_log.actor_user_id
                  AND s.closed_at IS NULL AND s.expires_at > now()))
        OR (action_context = 'impersonation'
            AND EXISTS (
                SELECT 1 FROM patient_impersonation_sessions s
                JOIN patients p ON p.organization_id = s.organization_id AND p.id = s.patient_id
                WHERE s.id = (SELECT nullif(current_setting('app.session_id', true), '')::uuid)
                  AND s.organization_id = audit_log.organization_id
                  AND s.user_id = audit_log.actor_user_id
                  AND p.user_id = (SELECT nullif(current_setting('app.current_user_id', true), '')::uuid)
                  AND s.closed_at IS NULL AND s.expires_at > now()))
    ));

-- Roles inside a clinic, highest first. Immutable and table-free, so it is safe in policies.
CREATE FUNCTION restartix_role_rank(role text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE role WHEN 'owner' THEN 4 WHEN 'admin' THEN 3 WHEN 'specialist' THEN 2
                     WHEN 'assistant' THEN 1 WHEN 'patient' THEN 0 END
$$;
GRANT EXECUTE ON FUNCTION restartix_role_rank(text) TO restartix_app, restartix_admin;

-- Memberships: staff read them; an owner or admin manages roles below their own, never its
-- own row, and not under an elevated session (break-glass acts with the admin role for
-- records, not for people). Memberships of other kinds come from the Clerk webhook on the
-- admin role.
DROP POLICY staff_access ON memberships;
CREATE POLICY staff_read ON memberships AS PERMISSIVE FOR SELECT TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'));
-- One rule for adding, re-roling (the row before and after) and removing a member.
DO $$
DECLARE
    manages text := '(SELECT nullif(current_setting(''app.current_role'', true), '''')) IN (''owner'', ''admin'')
        AND (SELECT nullif(current_setting(''app.session_id'', true), '''')) IS NULL
        AND restartix_role_rank(role) < restartix_role_rank((SELECT nullif(current_setting(''app.current_role'', true), '''')))
        AND user_id IS DISTINCT FROM (SELECT nullif(current_setting(''app.current_user_id'', true), '''')::uuid)';
BEGIN
    EXECUTE format('CREATE POLICY manage_insert ON memberships AS PERMISSIVE FOR INSERT TO restartix_app WITH CHECK (%s)', manages);
    EXECUTE format('CREATE POLICY manage_update ON memberships AS PERMISSIVE FOR UPDATE TO restartix_app USING (%s) WITH CHECK (%s)', manages, manages);
    EXECUTE format('CREATE POLICY manage_delete ON memberships AS PERMISSIVE FOR DELETE TO restartix_app USING (%s)', manages);
END;
$$;
REVOKE INSERT, UPDATE ON memberships FROM restartix_app;
GRANT INSERT (id, organization_id, user_id, role) ON memberships TO restartix_app;
GRANT UPDATE (role) ON memberships TO restartix_app;

-- Domains: staff read them, owners and admins add, change and remove them (not under an
-- elevated session); verification is the platform's.
DROP POLICY staff_access ON organization_domains;
CREATE POLICY staff_read ON organization_domains AS PERMISSIVE FOR SELECT TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin', 'specialist', 'assistant'));
CREATE POLICY manage_write ON organization_domains AS PERMISSIVE FOR ALL TO restartix_app
    USING ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin')
        AND (SELECT nullif(current_setting('app.session_id', true), '')) IS NULL)
    WITH CHECK ((SELECT nullif(current_setting('app.current_role', true), '')) IN ('owner', 'admin')
        AND (SELECT nullif(current_setting('app.session_id', true), '')) IS NULL);
REVOKE INSERT, UPDATE ON organization_domains FROM restartix_app;
GRANT INSERT (id, organization_id, domain, is_primary) ON organization_domains TO restartix_app;
GRANT UPDATE (is_primary) ON organization_domains TO restartix_app;

-- Usage: the platform sets quotas and closes summaries; the app counts, and only upwards.
REVOKE INSERT, UPDATE, DELETE ON usage_quotas, usage_summaries FROM restartix_app;
REVOKE UPDATE, DELETE ON usage_records FROM restartix_app;
GRANT UPDATE (current_units, period_start_at, period_end_at, updated_at) ON usage_quotas TO restartix_app;

CREATE FUNCTION restartix_usage_quota_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog
SET timezone = 'UTC'
AS $$
BEGIN
    IF current_user <> 'restartix_app' THEN
        RETURN NEW;
    END IF;
    IF NEW.period_start_at = OLD.period_start_at AND NEW.period_end_at = OLD.period_end_at THEN
        IF NEW.current_units < OLD.current_units THEN
            RAISE EXCEPTION 'permission denied for table usage_quotas: usage is only counted up within a period'
                USING ERRCODE = '42501', HINT = 'quotas are reset by the platform (usage-quota-reset)';
        END IF;
    -- A period moves once it has ended (5 minutes of clock skew allowed), to a whole UTC month
    -- that starts no earlier than the old end and has begun: so at most once a month.
    ELSIF NOT (OLD.period_end_at <= now() + interval '5 minutes'
               AND NEW.period_start_at >= OLD.period_end_at
               AND NEW.period_start_at <= now() + interval '5 minutes'
               AND NEW.period_start_at = date_trunc('month', NEW.period_start_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
               AND NEW.period_end_at = (date_trunc('month', NEW.period_start_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC') THEN
        RAISE EXCEPTION 'permission denied for table usage_quotas: only an ended period may move, and only to the current month'
            USING ERRCODE = '42501';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER usage_quota_guard BEFORE UPDATE ON usage_quotas
    FOR EACH ROW EXECUTE FUNCTION restartix_usage_quota_guard();

-- A patient someone was impersonated as stays, with the sessions that name it: deleting the
-- patient would cascade them away (foreign-key actions run as the owner, whatever the app
-- role's grants). Staff soft-delete (deleted_at); the platform may erase.
-- Its search_path is this schema (pg_temp last), so the sessions it looks for are these.
DO $do$
BEGIN
    EXECUTE format($f$
        CREATE FUNCTION restartix_patient_delete_guard()
        RETURNS trigger
        LANGUAGE plpgsql
        SET search_path = %I, pg_temp
        AS $$
        BEGIN
            IF current_user = 'restartix_app' AND EXISTS (
                SELECT 1 FROM patient_impersonation_sessions s
                WHERE s.organization_id = OLD.organization_id AND s.patient_id = OLD.id
            ) THEN
                RAISE EXCEPTION 'permission denied for table patients: a patient named by an impersonation session is erased by the platform'
                    USING ERRCODE = '42501';
            END IF;
            RETURN OLD;
        END;
        $$
    $f$, current_schema());
END;
$do$;
CREATE TRIGGER patient_delete_guard BEFORE DELETE ON patients
    FOR EACH ROW EXECUTE FUNCTION restartix_patient_delete_guard();

-- The protection each object of the schema has, one fingerprint per object:
-- - a table (or view): its RLS flags, policies, triggers (enabled or not) and the app and admin
--   roles' (and PUBLIC's) table and column privileges (partitions excluded: the boot check verifies their RLS,
--   and nobody is granted them);
-- - a function: its definition, SECURITY DEFINER flag, settings and privileges.
-- Deparsed with search_path = pg_catalog so the text does not depend on the caller's path.
CREATE FUNCTION restartix_security_fingerprints(target_schema name)
RETURNS TABLE (object_kind text, object_name text, fingerprint text)
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
    -- The grantees whose privileges count: PUBLIC (grantee 0, which pg_roles has no row for),
    -- the app role and the admin role.
    WITH grantee (oid, name) AS (
        SELECT 0::oid, 'public'
        UNION ALL SELECT oid, rolname::text FROM pg_roles WHERE rolname IN ('restartix_app', 'restartix_admin')
    )
    SELECT 'table', c.relname::text,
        md5(concat_ws(E'\n',
            'kind=' || c.relkind::text,
            'rls=' || c.relrowsecurity::text || ',' || c.relforcerowsecurity::text,
            (SELECT string_agg(
                        p.polname || '|' || p.polpermissive::text || '|' || p.polcmd::text || '|'
                        || coalesce((SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END, ',' ORDER BY 1)
                                     FROM unnest(p.polroles) AS r), '') || '|'
                        || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || '|'
                        || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
                        E'\n' ORDER BY p.polname)
             FROM pg_policy p WHERE p.polrelid = c.oid),
            (SELECT string_agg(t.tgname || '|' || t.tgenabled::text || '|' || pg_get_triggerdef(t.oid), E'\n' ORDER BY t.tgname)
             FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
            (SELECT string_agg(g.name || ':' || a.privilege_type, ',' ORDER BY g.name, a.privilege_type)
             FROM aclexplode(c.relacl) a JOIN grantee g ON g.oid = a.grantee),
            (SELECT string_agg(g.name || ':' || att.attname || ':' || a.privilege_type, ','
                               ORDER BY g.name, att.attname, a.privilege_type)
             FROM pg_attribute att CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN grantee g ON g.oid = a.grantee
             WHERE att.attrelid = c.oid AND att.attacl IS NOT NULL AND NOT att.attisdropped)
        ))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = target_schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
    UNION ALL
    SELECT 'function', f.oid::regprocedure::text,
        md5(concat_ws(E'\n', pg_get_functiondef(f.oid), f.prosecdef::text, coalesce(f.proconfig::text, ''),
                      coalesce(f.proacl::text, 'default')))
    FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
    WHERE n.nspname = target_schema AND f.prokind IN ('f', 'p')
$$;
GRANT EXECUTE ON FUNCTION restartix_security_fingerprints(name) TO PUBLIC;

-- Not secret (the catalogs are readable by every role): any role the boot check runs as may
-- read it. Only the owner writes it (no other grant); RLS on, like every table the app role
-- can read, with a policy that hides nothing.
CREATE TABLE restartix_security_baseline (
    object_kind text NOT NULL CHECK (object_kind IN ('table', 'function')),
    object_name text NOT NULL,
    fingerprint text NOT NULL,
    PRIMARY KEY (object_kind, object_name)
);
GRANT SELECT ON restartix_security_baseline TO PUBLIC;
ALTER TABLE restartix_security_baseline ENABLE ROW LEVEL SECURITY;
ALTER TABLE restartix_security_baseline FORCE ROW LEVEL SECURITY;
CREATE POLICY baseline_access ON restartix_security_baseline AS PERMISSIVE FOR ALL USING (true) WITH CHECK (true);

-- Every later migration that changes a table, a policy, a trigger, a function or a grant ends
-- with this call.
CREATE FUNCTION restartix_record_security_baseline()
RETURNS void
LANGUAGE sql
AS $$
    DELETE FROM restartix_security_baseline;
    INSERT INTO restartix_security_baseline (object_kind, object_name, fingerprint)
    SELECT object_kind, object_name, fingerprint FROM restartix_security_fingerprints(current_schema());
$$;
REVOKE EXECUTE ON FUNCTION restartix_record_security_baseline() FROM PUBLIC;

SELECT restartix_record_security_baseline();
"""#
