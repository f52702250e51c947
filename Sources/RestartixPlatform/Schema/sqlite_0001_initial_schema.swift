// The platform's schema, migration 1 for SQLite: the same tables and constraints as on Postgres, in SQLite's
// types. uuid -> TEXT (lower-case canonical), timestamptz -> TEXT (`YYYY-MM-DDTHH:MM:SS.ffffffZ`,
// fixed width so text order is time order), bytea -> BLOB, jsonb -> TEXT, boolean -> INTEGER 0/1.
// No partitions: SQLite is the embedded, single-node backend.

import RestartixKit

extension MigrationSet {
    static let sqliteInitialSchema = Migration(version: 1, name: "initial_schema", sql: sqlite0001)
}

private let sqlite0001 = #"""
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE CHECK (length(slug) BETWEEN 1 AND 63 AND slug NOT GLOB '*[^a-z0-9-]*' AND slug NOT GLOB '-*'),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    tenancy TEXT NOT NULL DEFAULT 'shared' CHECK (tenancy IN ('shared', 'dedicated')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

CREATE TABLE organization_domains (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    domain TEXT NOT NULL UNIQUE CHECK (domain = lower(domain) AND length(domain) BETWEEN 3 AND 253),
    is_primary INTEGER NOT NULL DEFAULT 0 CHECK (is_primary IN (0, 1)),
    verified_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    UNIQUE (organization_id, id)
);
CREATE INDEX organization_domains_org_idx ON organization_domains (organization_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    clerk_user_id TEXT UNIQUE,
    primary_email TEXT,
    display_name TEXT,
    is_platform_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_platform_admin IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    deleted_at TEXT
);

CREATE TABLE memberships (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'specialist', 'assistant', 'patient')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    UNIQUE (organization_id, user_id),
    UNIQUE (organization_id, id)
);

CREATE TABLE patients (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users (id) ON DELETE SET NULL,
    name BLOB NOT NULL,
    date_of_birth BLOB,
    email BLOB,
    phone BLOB,
    email_index BLOB,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    deleted_at TEXT,
    UNIQUE (organization_id, id)
);
CREATE INDEX patients_org_email_idx ON patients (organization_id, email_index);
CREATE INDEX patients_org_user_idx ON patients (organization_id, user_id);

CREATE TABLE platform_service_providers (
    id TEXT PRIMARY KEY NOT NULL,
    capability TEXT NOT NULL CHECK (length(capability) BETWEEN 1 AND 32 AND capability NOT GLOB '*[^a-z0-9_]*' AND capability GLOB '[a-z]*'),
    organization_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    provider_kind TEXT NOT NULL CHECK (length(provider_kind) BETWEEN 1 AND 32 AND provider_kind NOT GLOB '*[^a-z0-9_]*' AND provider_kind GLOB '[a-z]*'),
    config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config)),
    credentials BLOB,
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'degraded', 'down')),
    last_checked_at TEXT,
    last_error TEXT,
    version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
-- One row per (capability, organization), NULL organization included (Postgres: NULLS NOT DISTINCT).
CREATE UNIQUE INDEX platform_service_providers_capability_org_key
    ON platform_service_providers (capability, ifnull(organization_id, ''));

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT,
    actor_user_id TEXT,
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'service', 'system')),
    action TEXT NOT NULL,
    action_context TEXT NOT NULL DEFAULT 'normal'
        CHECK (action_context IN ('normal', 'break_glass', 'impersonation', 'platform_admin', 'system')),
    resource_type TEXT,
    resource_id TEXT,
    request_id TEXT,
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX audit_log_org_created_idx ON audit_log (organization_id, created_at);

CREATE TABLE usage_records (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability TEXT NOT NULL,
    units INTEGER NOT NULL CHECK (units >= 0),
    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);
CREATE INDEX usage_records_org_capability_idx ON usage_records (organization_id, capability, recorded_at);

CREATE TABLE usage_quotas (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability TEXT NOT NULL,
    limit_units INTEGER NOT NULL CHECK (limit_units >= 0),
    current_units INTEGER NOT NULL DEFAULT 0 CHECK (current_units >= 0),
    period_start_at TEXT NOT NULL,
    period_end_at TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CHECK (period_end_at > period_start_at),
    UNIQUE (organization_id, capability),
    UNIQUE (organization_id, id)
);

CREATE TABLE usage_summaries (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    capability TEXT NOT NULL,
    period_start_at TEXT NOT NULL,
    period_end_at TEXT NOT NULL,
    total_units INTEGER NOT NULL DEFAULT 0 CHECK (total_units >= 0),
    closed_at TEXT,
    CHECK (period_end_at > period_start_at),
    UNIQUE (organization_id, capability, period_start_at),
    UNIQUE (organization_id, id)
);

CREATE TABLE break_glass_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    reason TEXT NOT NULL CHECK (length(reason) BETWEEN 10 AND 2000),
    opened_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    expires_at TEXT NOT NULL,
    closed_at TEXT,
    closed_by TEXT CHECK (closed_by IN ('user', 'expiry', 'admin')),
    CHECK (expires_at > opened_at),
    UNIQUE (organization_id, id)
);
CREATE INDEX break_glass_sessions_open_idx ON break_glass_sessions (organization_id, expires_at) WHERE closed_at IS NULL;

CREATE TABLE patient_impersonation_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id),
    patient_id TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (length(reason) BETWEEN 10 AND 2000),
    opened_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    expires_at TEXT NOT NULL,
    closed_at TEXT,
    closed_by TEXT CHECK (closed_by IN ('user', 'expiry', 'admin')),
    CHECK (expires_at > opened_at),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX patient_impersonation_sessions_open_idx
    ON patient_impersonation_sessions (organization_id, expires_at) WHERE closed_at IS NULL;

CREATE TABLE inbound_webhook_events (
    id TEXT PRIMARY KEY NOT NULL,
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type TEXT,
    organization_id TEXT REFERENCES organizations (id) ON DELETE SET NULL,
    received_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    processed_at TEXT,
    UNIQUE (provider, event_id)
);

CREATE TABLE pose_session_metrics (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    patient_id TEXT NOT NULL,
    exercise TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    rep_count INTEGER NOT NULL CHECK (rep_count >= 0),
    mean_rom_degrees REAL,
    min_rom_degrees REAL,
    max_rom_degrees REAL,
    mean_rep_duration_ms REAL,
    tempo_cv REAL,
    active_time_ms INTEGER NOT NULL DEFAULT 0,
    tracked_frame_ratio REAL,
    mean_visibility REAL,
    effective_fps REAL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CHECK (ended_at >= started_at),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX pose_session_metrics_org_patient_idx ON pose_session_metrics (organization_id, patient_id, started_at);

CREATE TABLE pose_rep_metrics (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    rep_index INTEGER NOT NULL CHECK (rep_index >= 0),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    min_angle_degrees REAL NOT NULL,
    max_angle_degrees REAL NOT NULL,
    rom_degrees REAL NOT NULL,
    concentric_ms INTEGER,
    eccentric_ms INTEGER,
    peak_velocity_dps REAL,
    mean_visibility REAL,
    partial_range INTEGER NOT NULL DEFAULT 0 CHECK (partial_range IN (0, 1)),
    too_fast INTEGER NOT NULL DEFAULT 0 CHECK (too_fast IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    CHECK (end_ms >= start_ms),
    FOREIGN KEY (organization_id, session_id) REFERENCES pose_session_metrics (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX pose_rep_metrics_org_session_idx ON pose_rep_metrics (organization_id, session_id, rep_index);

CREATE TABLE media_session_metrics (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    patient_id TEXT NOT NULL,
    video_id TEXT NOT NULL,
    startup_time_ms INTEGER,
    exit_before_start INTEGER NOT NULL DEFAULT 0 CHECK (exit_before_start IN (0, 1)),
    watch_time_ms INTEGER NOT NULL DEFAULT 0,
    playing_time_ms INTEGER NOT NULL DEFAULT 0,
    rebuffer_count INTEGER NOT NULL DEFAULT 0,
    rebuffer_duration_ms INTEGER NOT NULL DEFAULT 0,
    rebuffer_percentage REAL,
    rebuffer_frequency_per_minute REAL,
    startup_score REAL,
    smoothness_score REAL,
    failure_count INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    FOREIGN KEY (organization_id, patient_id) REFERENCES patients (organization_id, id) ON DELETE CASCADE,
    UNIQUE (organization_id, id)
);
CREATE INDEX media_session_metrics_org_patient_idx ON media_session_metrics (organization_id, patient_id, created_at);

CREATE TABLE media_buffering_events (
    id TEXT PRIMARY KEY NOT NULL,
    organization_id TEXT NOT NULL,
    media_session_id TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL CHECK (duration_ms >= 0),
    seek_induced INTEGER NOT NULL DEFAULT 0 CHECK (seek_induced IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    FOREIGN KEY (organization_id, media_session_id) REFERENCES media_session_metrics (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX media_buffering_events_org_session_idx ON media_buffering_events (organization_id, media_session_id);
"""#
