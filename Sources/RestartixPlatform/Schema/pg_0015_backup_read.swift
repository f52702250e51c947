// Migration 15 for PostgreSQL: the schema owner may read every row, so that `pg_dump` run as
// the owner (restartix-jobs backup) dumps whole tables.
//
// Every table with row-level security has it forced (pg_0002), the owner included, and no
// policy named the owner: it saw no rows, and `pg_dump` stopped at the first tenant table
// ("query would be affected by row-level security policy"). Each such table, and each partition
// (pg_dump copies partitions one by one), gets `backup_read`: SELECT only, for the role that
// owns the table. Nothing changes for the app and admin roles (policies apply per role), and
// the owner gains nothing it could not take anyway (it owns the tables: it can turn RLS off);
// it still cannot write a tenant row. The partition roller adds the policy to the partitions it
// creates, and `restartix_force_rls` (which later migrations call for a new tenant table) to
// the tables it forces. And the security fingerprints compare a function's privileges by what they grant
// (a restored database's defaults read as the original's).

import RestartixKit

extension MigrationSet {
    static let postgresBackupRead = Migration(version: 15, name: "backup_read", sql: #"""
        DO $$
        DECLARE
            t record;
        BEGIN
            FOR t IN
                SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) AS owner
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relrowsecurity
                ORDER BY c.relname
            LOOP
                EXECUTE format('CREATE POLICY backup_read ON %I.%I AS PERMISSIVE FOR SELECT TO %I USING (true)', t.nspname, t.relname, t.owner);
            END LOOP;
        END;
        $$;

        -- Migration 2's helper that later migrations call for each new tenant table, now also
        -- giving the table and its partitions the owner's backup_read policy: a table added
        -- without it would be dumped empty (pg_dump --enable-row-security leaves out what the
        -- owner cannot see; the backup refuses to run while any table is like that).
        CREATE OR REPLACE FUNCTION restartix_force_rls(target regclass)
        RETURNS void
        LANGUAGE plpgsql
        AS $fn$
        DECLARE
            part regclass;
        BEGIN
            EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
            EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
            IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = target AND polname = 'backup_read') THEN
                EXECUTE format('CREATE POLICY backup_read ON %s AS PERMISSIVE FOR SELECT TO %I USING (true)',
                               target, (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = target));
            END IF;
            FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = target LOOP
                PERFORM restartix_force_rls(part);
            END LOOP;
        END;
        $fn$;
        REVOKE EXECUTE ON FUNCTION restartix_force_rls(regclass) FROM PUBLIC;

        -- The partition roller of migration 2, now also giving each partition it creates the
        -- owner's backup_read policy.
        CREATE OR REPLACE FUNCTION restartix_ensure_monthly_partitions(parent regclass, months_ahead integer)
        RETURNS integer
        LANGUAGE plpgsql
        AS $fn$
        DECLARE
            base_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
            parent_name text;
            parent_schema text;
            parent_rls boolean;
            parent_owner text;
            partition_name text;
            lower_bound timestamptz;
            upper_bound timestamptz;
            created integer := 0;
        BEGIN
            IF months_ahead < 0 OR months_ahead > 36 THEN
                RAISE EXCEPTION 'months_ahead must be between 0 and 36' USING ERRCODE = '22023';
            END IF;
            SELECT c.relname, n.nspname, c.relrowsecurity, pg_get_userbyid(c.relowner)
            INTO parent_name, parent_schema, parent_rls, parent_owner
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
                        EXECUTE format('CREATE POLICY backup_read ON %I.%I AS PERMISSIVE FOR SELECT TO %I USING (true)',
                                       parent_schema, partition_name, parent_owner);
                    END IF;
                    created := created + 1;
                END IF;
            END LOOP;
            RETURN created;
        END;
        $fn$;
        REVOKE EXECUTE ON FUNCTION restartix_ensure_monthly_partitions(regclass, integer) FROM PUBLIC;

        -- The fingerprints of migration 6, with a function's privileges compared as what they
        -- grant: a function whose ACL was set to its default (GRANT EXECUTE ... TO PUBLIC) has
        -- it spelled out, and after pg_dump and pg_restore it has none (NULL, which means the
        -- same); the boot check refused a restored database for that.
        CREATE OR REPLACE FUNCTION restartix_security_fingerprints(target_schema name)
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
                              coalesce(f.proacl, acldefault('f', f.proowner))::text))
            FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace
            WHERE n.nspname = target_schema AND f.prokind IN ('f', 'p')
        $$;
        SELECT restartix_record_security_baseline();
        """#)
}
