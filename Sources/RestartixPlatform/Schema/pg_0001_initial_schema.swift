// The platform's schema, migration 1 for PostgreSQL. Applied migrations are immutable: a change is a new
// migration with the next version, never an edit (the migrator refuses changed checksums).

import RestartixKit

extension MigrationSet {
    static let postgresInitialSchema = Migration(version: 1, name: "initial_schema", sql: postgres0001)
}

private let postgres0001 = #"""
-- Monthly range partitions for time-partitioned tables. Creates the partitions covering the
-- current month and the next `months_ahead` months (UTC) that do not exist yet, and returns how
-- many it created. Serialized by a transaction-scoped advisory lock, so concurrent callers are
-- safe and nothing outlives the transaction (PgBouncer-safe).
CREATE FUNCTION restartix_ensure_monthly_partitions(parent regclass, months_ahead integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    base_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    parent_name text;
    parent_schema text;
    partition_name text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    created integer := 0;
BEGIN
    IF months_ahead < 0 OR months_ahead > 36 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 36' USING ERRCODE = '22023';
    END IF;
    SELECT c.relname, n.nspname INTO parent_name, parent_schema
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
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

-- Every partitioned table of the kit, for the partition-roll job.
CREATE VIEW restartix_partitioned_tables AS
SELECT c.relname::text AS table_name
FROM pg_partitioned_table p
JOIN pg_class c ON c.oid = p.partrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema();

CREATE TABLE organizations (
    id uuid PRIMARY KEY,
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    tenancy text NOT NULL DEFAULT 'shared' CHECK (tenancy IN ('shared', 'dedicated')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE organization_domains (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    domain text NOT NULL UNIQUE CHECK (domain = lower(domain) AND length(domain) BETWEEN 3 AND 253),
    is_primary boolean NOT NULL DEFAULT false,
    verified_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, id)
);
CREATE INDEX organization_domains_org_idx ON organization_domains (organization_id);

CREATE TABLE users (
    id uuid PRIMARY KEY,
    clerk_user_id text UNIQUE,
    primary_email text,
    display_name text,
    is_platform_admin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);

CREATE TABLE memberships (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'specialist', 'assistant', 'patient')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (organization_id, user_id),
    UNIQUE (organization_id, id)
);

-- PII columns are AES-256-GCM sealed values (RestartixCrypto); email_index is a keyed blind
-- index for equality lookup.
CREATE TABLE patients (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id uuid REFERENCES users (id) ON DELETE SET NULL,
    name bytea NOT NULL,
    date_of_birth bytea,
    email bytea,
    phone bytea,
    email_index bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    UNIQUE (organization_id, id)
);
CREATE INDEX patients_org_email_idx ON patients (organization_id, email_index);
CREATE INDEX patients_org_user_idx ON patients (organization_id, user_id);

CREATE TABLE platform_service_providers (
    id uuid PRIMARY KEY,
    capability text NOT NULL CHECK (capability ~ '^[a-z][a-z0-9_]{0,31}$'),
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    provider_kind text NOT NULL CHECK (provider_kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    config jsonb NOT NULL DEFAULT '{}'::jsonb,
    credentials bytea,
    status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'degraded', 'down')),
    last_checked_at timestamptz,
    last_error text,
    version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT platform_service_providers_capability_org_key UNIQUE NULLS NOT DISTINCT (capability, organization_id)
);

CREATE TABLE audit_log (
    id uuid NOT NULL,
    organization_id uuid,
    actor_user_id uuid,
    actor_kind text NOT NULL CHECK (actor_kind IN ('user', 'service', 'system')),
    action text NOT NULL,
    action_context text NOT NULL DEFAULT 'normal'
        CHECK (action_context IN ('normal', 'break_glass', 'impersonation', 'platform_admin', 'system')),
    resource_type text,
    resource_id uuid,
    request_id text,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX audit_log_org_created_idx ON audit_log (organization_id, created_at);

CREATE TABLE usage_records (
    id uuid NOT NULL,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability text NOT NULL,
    units bigint NOT NULL CHECK (units >= 0),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);
CREATE INDEX usage_records_org_capability_idx ON usage_records (organization_id, capability, recorded_at);

CREATE TABLE usage_quotas (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability text NOT NULL,
    limit_units bigint NOT NULL CHECK (limit_units >= 0),
    current_units bigint NOT NULL DEFAULT 0 CHECK (current_units >= 0),
    period_start_at timestamptz NOT NULL,
    period_end_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (period_end_at > period_start_at),
    UNIQUE (organization_id, capability),
    UNIQUE (organization_id, id)
);

CREATE TABLE usage_summaries (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability text NOT NULL,
    period_start_at timestamptz NOT NULL,
    period_end_at timestamptz NOT NULL,
    total_units bigint NOT NULL DEFAULT 0 CHECK (total_units >= 0),
    closed_at timestamptz,
    CHECK (period_end_at > period_start_at),
    UNIQUE (organization_id, capability, period_start_at),
    UNIQUE (organization_id, id)
);

CREATE TABLE break_glass_sessions (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    reason text NOT NULL CHECK (length(reason) BETWEEN 10 AND 2000),
    opened_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    closed_at timestamptz,
    closed_by text CHECK (closed_by IN ('user', 'expiry', 'admin')),
    CHECK (expires_at > opened_at),
    UNIQUE (organization_id, id)
);
CREATE INDEX break_glass_sessions_open_idx ON break_glass_sessions (organization_id, expires_at) WHERE closed_at IS NULL;

CREATE TABLE patient_impersonation_sessions (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    patient_id uuid NOT NULL,
    reason text NOT NULL CHECK (length(reason) BETWEEN 10 AND 2000),
    opened_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    closed_at timestamptz,
    closed_by text CHECK (closed_by IN ('user', 'expiry', 'admin')),
    CHECK (expires_at > opened_at),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX patient_impersonation_sessions_open_idx
    ON patient_impersonation_sessions (organization_id, expires_at) WHERE closed_at IS NULL;

CREATE TABLE inbound_webhook_events (
    id uuid PRIMARY KEY,
    provider text NOT NULL,
    event_id text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type text,
    organization_id uuid REFERENCES organizations (id) ON DELETE SET NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    UNIQUE (provider, event_id)
);

CREATE TABLE pose_session_metrics (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL,
    exercise text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    rep_count integer NOT NULL CHECK (rep_count >= 0),
    mean_rom_degrees double precision,
    min_rom_degrees double precision,
    max_rom_degrees double precision,
    mean_rep_duration_ms double precision,
    tempo_cv double precision,
    active_time_ms bigint NOT NULL DEFAULT 0,
    tracked_frame_ratio double precision,
    mean_visibility double precision,
    effective_fps double precision,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at >= started_at),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX pose_session_metrics_org_patient_idx ON pose_session_metrics (organization_id, patient_id, started_at);

CREATE TABLE pose_rep_metrics (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    session_id uuid NOT NULL,
    rep_index integer NOT NULL CHECK (rep_index >= 0),
    start_ms bigint NOT NULL,
    end_ms bigint NOT NULL,
    duration_ms bigint NOT NULL,
    min_angle_degrees double precision NOT NULL,
    max_angle_degrees double precision NOT NULL,
    rom_degrees double precision NOT NULL,
    concentric_ms bigint,
    eccentric_ms bigint,
    peak_velocity_dps double precision,
    mean_visibility double precision,
    partial_range boolean NOT NULL DEFAULT false,
    too_fast boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (end_ms >= start_ms),
    FOREIGN KEY (organization_id, session_id) REFERENCES pose_session_metrics (organization_id, id) ON DELETE CASCADE,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX pose_rep_metrics_org_session_idx ON pose_rep_metrics (organization_id, session_id, rep_index);

CREATE TABLE media_session_metrics (
    id uuid PRIMARY KEY,
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    patient_id uuid NOT NULL,
    video_id text NOT NULL,
    startup_time_ms bigint,
    exit_before_start boolean NOT NULL DEFAULT false,
    watch_time_ms bigint NOT NULL DEFAULT 0,
    playing_time_ms bigint NOT NULL DEFAULT 0,
    rebuffer_count integer NOT NULL DEFAULT 0,
    rebuffer_duration_ms bigint NOT NULL DEFAULT 0,
    rebuffer_percentage double precision,
    rebuffer_frequency_per_minute double precision,
    startup_score double precision,
    smoothness_score double precision,
    failure_count integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX media_session_metrics_org_patient_idx ON media_session_metrics (organization_id, patient_id, created_at);

CREATE TABLE media_buffering_events (
    id uuid NOT NULL,
    organization_id uuid NOT NULL,
    media_session_id uuid NOT NULL,
    started_at_ms bigint NOT NULL,
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
    seek_induced boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (organization_id, media_session_id) REFERENCES media_session_metrics (organization_id, id) ON DELETE CASCADE,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX media_buffering_events_org_session_idx ON media_buffering_events (organization_id, media_session_id);

SELECT restartix_ensure_monthly_partitions(table_name::regclass, 3) FROM restartix_partitioned_tables;

-- Platform (admin) role: all data access, no DDL (partitions are created by the owner role, as
-- migrations are). The app role gets its grants together with
-- the row-level security policies that confine it (tenancy migrations).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'restartix_admin') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO restartix_admin', current_schema());
    END IF;
END;
$$;
"""#
