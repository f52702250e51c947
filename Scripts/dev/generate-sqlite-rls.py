#!/usr/bin/env python3
"""Generates SQLite migrations 2 and 3 (row-level security emulation) from the schema of migration 1.

The output is Sources/RestartixPlatform/Schema/sqlite_0002_row_level_security.swift (2),
sqlite_0003_principals_and_elevated_sessions.swift (3) and sqlite_0006_tenancy_hardening.swift (6): plain,
reviewable SQL in a Swift string literal, like every migration. The rules here are the same
as the Postgres policies of migration 2 (pg_0002_row_level_security.swift); see
Documentation/RestartixTenancy.md for the design. Applied migrations are immutable: run this
only to write a new migration, never to change an applied one (the migrator refuses a changed
checksum, and a test pins this one).

    python3 Scripts/dev/generate-sqlite-rls.py            # write the files
    python3 Scripts/dev/generate-sqlite-rls.py --check    # exit 1 if a file differs (CI)
"""
import pathlib
import re
import sqlite3
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Sources/RestartixPlatform/Schema"
SOURCE = OUT / "sqlite_0001_initial_schema.swift"

ORG = "nullif(current_setting('app.current_org_id', 1), '')"
USER = "nullif(current_setting('app.current_user_id', 1), '')"
ROLE = "nullif(current_setting('app.current_role', 1), '')"
IS_APP = "(current_setting('restartix.connection_role', 1) IS 'app')"
UNSCOPED = "(current_setting('app.unscoped', 1) IS 'on')"
STAFF = "('owner', 'admin', 'specialist', 'assistant')"

ALL = {"select", "insert", "update", "delete"}

# table: (tenant column, patient-own commands, patient clinic-wide commands, own-row predicate)
TENANT = {
    "organizations": ("id", set(), {"select"}, None),
    "organization_domains": ("organization_id", set(), set(), None),
    "memberships": ("organization_id", {"select"}, set(), "{r}.user_id = {user}"),
    "patients": ("organization_id", {"select", "update"}, set(), "{r}.user_id = {user}"),
    "audit_log": ("organization_id", set(), {"insert"}, None),
    "usage_records": ("organization_id", set(), set(), None),
    "usage_quotas": ("organization_id", set(), set(), None),
    "usage_summaries": ("organization_id", set(), set(), None),
    "break_glass_sessions": ("organization_id", set(), set(), None),
    "patient_impersonation_sessions": ("organization_id", set(), set(), None),
    "pose_session_metrics": ("organization_id", {"select", "insert"}, set(),
        "{r}.patient_id IN (SELECT p.id FROM patients__rows p WHERE p.organization_id = {r}.organization_id AND p.user_id = {user})"),
    "pose_rep_metrics": ("organization_id", {"select", "insert"}, set(),
        "{r}.session_id IN (SELECT s.id FROM pose_session_metrics__rows s JOIN patients__rows p "
        "ON p.organization_id = s.organization_id AND p.id = s.patient_id "
        "WHERE s.organization_id = {r}.organization_id AND p.user_id = {user})"),
    "media_session_metrics": ("organization_id", {"select", "insert"}, set(),
        "{r}.patient_id IN (SELECT p.id FROM patients__rows p WHERE p.organization_id = {r}.organization_id AND p.user_id = {user})"),
    "media_buffering_events": ("organization_id", {"select", "insert"}, set(),
        "{r}.media_session_id IN (SELECT s.id FROM media_session_metrics__rows s JOIN patients__rows p "
        "ON p.organization_id = s.organization_id AND p.id = s.patient_id "
        "WHERE s.organization_id = {r}.organization_id AND p.user_id = {user})"),
}
# Extra app-role conditions for one command (restrictive, as on Postgres): an app user appends
# audit rows as itself only.
APP_EXTRA = {
    ("audit_log", "insert"): "{r}.actor_kind = 'user' AND {r}.actor_user_id = {user} "
                             "AND coalesce({r}.action_context, 'normal') IN ('normal', 'break_glass', 'impersonation')",
}
# Audit rows are append-only for everyone: UPDATE and DELETE through the view are refused.
READ_ONLY_COMMANDS = {"audit_log": {"update", "delete"}}


SESSION = "nullif(current_setting('app.session_id', 1), '')"
# Migration 3: the elevated-session rules (as on Postgres). A break-glass or impersonation
# transaction names its session in app.session_id; that session row is readable in it, and an
# impersonation audit row names the staff member behind the session as its actor.
SESSION_READ_V3 = {"break_glass_sessions", "patient_impersonation_sessions"}
APP_EXTRA_V3 = {
    ("audit_log", "insert"): "{r}.actor_kind = 'user' "
                             "AND coalesce({r}.action_context, 'normal') IN ('normal', 'break_glass', 'impersonation') "
                             "AND ({r}.actor_user_id = {user} OR (coalesce({r}.action_context, 'normal') = 'impersonation' "
                             "AND {r}.actor_user_id = (SELECT s.user_id FROM patient_impersonation_sessions__rows s "
                             f"WHERE s.id = {SESSION} AND s.organization_id = {{r}}.organization_id)))",
}


NOW = "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')"
MANAGERS = "('owner', 'admin')"


def rank(expr):
    return (f"(CASE {expr} WHEN 'owner' THEN 4 WHEN 'admin' THEN 3 WHEN 'specialist' THEN 2 "
            f"WHEN 'assistant' THEN 1 WHEN 'patient' THEN 0 END)")


# Migration 6 (tenancy hardening), as on Postgres: who among the app's roles may do what.
# table -> command -> the staff-side condition ({r} is the row); a command missing here is
# the v2 rule (every staff role); None means no app role may (the grant is gone).
# Managing people and domains takes an owner or admin outside an elevated session (break-glass
# acts with the admin role for records, not for people).
MANAGER = f"{ROLE} IN {MANAGERS} AND {SESSION} IS NULL"
STAFF_V6 = {
    "memberships": {
        c: f"{MANAGER} AND {rank('{r}.role')} < {rank(ROLE)} AND {{r}}.user_id IS NOT {USER}"
        for c in ("insert", "update", "delete")
    },
    "organization_domains": {c: MANAGER for c in ("insert", "update", "delete")},
    "break_glass_sessions": {c: None for c in ("insert", "update", "delete")},
    "patient_impersonation_sessions": {c: None for c in ("insert", "update", "delete")},
    "usage_quotas": {"insert": None, "delete": None},
    "usage_summaries": {c: None for c in ("insert", "update", "delete")},
    "usage_records": {"update": None, "delete": None},
}
# Columns the app role may change (Postgres: column UPDATE grants), and columns it may not
# give on INSERT (the database's clock, the platform's verification).
APP_UPDATE_COLUMNS_V6 = {
    "memberships": ["role"],
    "organization_domains": ["is_primary"],
    "usage_quotas": ["current_units", "period_start_at", "period_end_at", "updated_at"],
}
APP_INSERT_DEFAULTED_V6 = {
    "audit_log": ["created_at"],
    "memberships": ["created_at"],
    "organization_domains": ["verified_at", "created_at"],
}
APP_EXTRA_V6 = {
    ("audit_log", "insert"): "{r}.actor_kind = 'user' AND ("
        "(coalesce({r}.action_context, 'normal') = 'normal' AND {r}.actor_user_id = {user}) "
        "OR ({r}.action_context = 'break_glass' AND {r}.actor_user_id = {user} AND EXISTS ("
        "SELECT 1 FROM break_glass_sessions__rows s "
        f"WHERE s.id = {SESSION} AND s.organization_id = {{r}}.organization_id "
        f"AND s.user_id = {{r}}.actor_user_id AND s.closed_at IS NULL AND s.expires_at > {NOW})) "
        "OR ({r}.action_context = 'impersonation' AND EXISTS ("
        "SELECT 1 FROM patient_impersonation_sessions__rows s JOIN patients__rows p "
        "ON p.organization_id = s.organization_id AND p.id = s.patient_id "
        f"WHERE s.id = {SESSION} AND s.organization_id = {{r}}.organization_id "
        f"AND s.user_id = {{r}}.actor_user_id AND p.user_id = {{user}} "
        f"AND s.closed_at IS NULL AND s.expires_at > {NOW})))",
}


def allowed(table, ref, command, version=2):
    """The rule for one row (`ref` is r, NEW or OLD) and one command, as SQL."""
    if table == "users":
        if command == "select":
            return (f"(NOT {IS_APP} OR {ref}.id = {USER} "
                    f"OR {ref}.id IN (SELECT m.user_id FROM memberships m))")
        return f"(NOT {IS_APP})"
    column, own, clinic_wide, own_sql = TENANT[table]
    admin = f"(NOT {IS_APP} AND ({UNSCOPED} OR {ref}.{column} = {ORG}))"
    who = [f"{ROLE} IN {STAFF}"]
    if version >= 6 and command in STAFF_V6.get(table, {}):
        staff = STAFF_V6[table][command]
        who = [f"({staff.format(r=ref)})"] if staff else []
    patient = []
    if command in clinic_wide:
        patient.append("1")
    if command in own:
        patient.append(own_sql.format(r=ref, user=USER))
    if patient:
        who.append(f"({ROLE} = 'patient' AND ({' OR '.join(patient)}))")
    if version >= 3 and command == "select" and table in SESSION_READ_V3:
        who.append(f"{ref}.id = {SESSION}")
    extra = (APP_EXTRA_V6 if version >= 6 else APP_EXTRA_V3 if version >= 3 else APP_EXTRA).get((table, command))
    extra = f" AND {extra.format(r=ref, user=USER)}" if extra else ""
    if not who:
        return f"({admin})"
    app = f"({IS_APP} AND {ref}.{column} = {ORG} AND ({' OR '.join(who)}){extra})"
    return f"({admin} OR {app})"


def migration_one():
    text = SOURCE.read_text()
    match = re.search(r'private let sqlite0001 = #"""\n(.*?)\n"""#', text, re.S)
    return match.group(1)


def emit_table(db, emit, table, version, rename):
    """The policy view of `table` and its INSTEAD OF triggers, from the table's current columns."""
    rows = f"{table}__rows"
    columns = db.execute(f"PRAGMA table_info({table if rename else rows})").fetchall()
    names = [c[1] for c in columns]
    rule = lambda ref, command: allowed(table, ref, command, version)
    emit(f"-- {table}")
    if rename:
        emit(f"ALTER TABLE {table} RENAME TO {table}__rows;")
    emit(f"CREATE VIEW {table} AS SELECT * FROM {table}__rows AS r WHERE {rule('r', 'select')};")
    denied = READ_ONLY_COMMANDS.get(table, set())
    message = f"'new row violates row-level security policy for table \"{table}\"'"
    values = []
    for (_cid, name, _type, notnull, default, _pk) in columns:
        values.append(f"coalesce(NEW.{name}, {default})" if notnull and default is not None else f"NEW.{name}")
    unique = unique_keys(db, rows) if version >= 6 else []
    affinity = {c[1]: ("TEXT" if "TEXT" in c[2].upper() else "INTEGER" if "INT" in c[2].upper() else "BLOB") for c in columns}
    for _name, key in unique:
        assert all(affinity[c] in ("TEXT", "INTEGER") for c in key), f"{table}: unique key {key} of an unexpected type"
    def conflict_guards(exclude_old):
        # A conflict clause on the outer statement (INSERT OR REPLACE, REPLACE, UPDATE OR
        # REPLACE) would carry over to the write below and delete the conflicting row, which can
        # be another clinic's: refuse every unique-key conflict first, as Postgres does.
        for name, key in unique:
            # Compared as the write below will store it (TEXT affinity turns 1000 into '1000'),
            # so a number or a blob cannot slip past the guard and then collide.
            match = " AND ".join(f"k.{c} = CAST(NEW.{c} AS {affinity[c]})" for c in key)
            changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in key)
            same = f" AND k.id IS NOT OLD.id" if exclude_old else ""
            guard = f" AND ({changed})" if exclude_old else ""
            emit(f"    SELECT RAISE(ABORT, 'duplicate key value violates unique constraint \"{name}\"')")
            emit(f"        WHERE EXISTS (SELECT 1 FROM {rows} AS k WHERE {match}{same}){guard};")
    emit(f"CREATE TRIGGER {table}__insert INSTEAD OF INSERT ON {table} BEGIN")
    emit(f"    SELECT RAISE(ABORT, {message}) WHERE NOT coalesce({rule('NEW', 'insert')}, 0);")
    defaulted = APP_INSERT_DEFAULTED_V6.get(table, []) if version >= 6 else []
    if defaulted:
        given = " OR ".join(f"NEW.{c} IS NOT NULL" for c in defaulted)
        emit(f"    SELECT RAISE(ABORT, 'permission denied for table {table}') WHERE {IS_APP} AND ({given});")
    conflict_guards(False)
    emit(f"    INSERT INTO {table}__rows ({', '.join(names)})")
    emit(f"        VALUES ({', '.join(values)});")
    emit("    SELECT restartix_count_changes(changes());")
    emit("END;")
    denial = f"'permission denied for table {table}'"
    if "update" in denied:
        emit(f"CREATE TRIGGER {table}__update INSTEAD OF UPDATE ON {table} BEGIN")
        emit(f"    SELECT RAISE(ABORT, {denial});")
        emit("END;")
    else:
        assignments = ", ".join(f"{n} = NEW.{n}" for n in names)
        emit(f"CREATE TRIGGER {table}__update INSTEAD OF UPDATE ON {table} BEGIN")
        emit(f"    SELECT RAISE(ABORT, {message})")
        emit(f"        WHERE coalesce({rule('OLD', 'update')}, 0) AND NOT coalesce({rule('NEW', 'update')}, 0);")
        if version >= 6 and table in APP_UPDATE_COLUMNS_V6:
            fixed = [n for n in names if n not in APP_UPDATE_COLUMNS_V6[table]]
            changed = " OR ".join(f"NEW.{n} IS NOT OLD.{n}" for n in fixed)
            emit(f"    SELECT RAISE(ABORT, 'permission denied for table {table}') WHERE {IS_APP} AND ({changed});")
        if version >= 6 and table == "usage_quotas":
            same = "NEW.period_start_at IS OLD.period_start_at AND NEW.period_end_at IS OLD.period_end_at"
            fmt = "'%Y-%m-%dT%H:%M:%f000Z'"
            later = f"strftime({fmt}, 'now', '+5 minutes')"
            emit(f"    SELECT RAISE(ABORT, 'permission denied for table usage_quotas: usage is only counted up within a period')")
            emit(f"        WHERE {IS_APP} AND (typeof(NEW.current_units) <> 'integer' OR typeof(NEW.period_start_at) <> 'text'")
            emit(f"            OR typeof(NEW.period_end_at) <> 'text' OR ({same} AND NEW.current_units < OLD.current_units));")
            # A period moves once it has ended (5 minutes of clock skew allowed), to a whole UTC
            # month that starts no earlier than the old end and has begun: at most once a month.
            emit(f"    SELECT RAISE(ABORT, 'permission denied for table usage_quotas: only an ended period may move, and only to the current month')")
            emit(f"        WHERE {IS_APP} AND NOT ({same}) AND NOT coalesce(OLD.period_end_at <= {later}")
            emit(f"            AND NEW.period_start_at >= OLD.period_end_at AND NEW.period_start_at <= {later}")
            emit(f"            AND NEW.period_start_at = strftime({fmt}, NEW.period_start_at, 'start of month')")
            emit(f"            AND NEW.period_end_at = strftime({fmt}, NEW.period_start_at, 'start of month', '+1 month'), 0);")
        conflict_guards(True)
        emit(f"    UPDATE {table}__rows SET {assignments}")
        emit(f"        WHERE id = OLD.id AND coalesce({rule('OLD', 'update')}, 0);")
        emit("    SELECT restartix_count_changes(changes());")
        emit("END;")
    if "delete" in denied:
        emit(f"CREATE TRIGGER {table}__delete INSTEAD OF DELETE ON {table} BEGIN")
        emit(f"    SELECT RAISE(ABORT, {denial});")
        emit("END;")
    else:
        emit(f"CREATE TRIGGER {table}__delete INSTEAD OF DELETE ON {table} BEGIN")
        if version >= 6 and table == "patients":
            # The cascade would take the impersonation sessions naming the patient with it.
            emit(f"    SELECT RAISE(ABORT, 'permission denied for table patients: a patient named by an impersonation session is erased by the platform')")
            emit(f"        WHERE {IS_APP} AND coalesce({rule('OLD', 'delete')}, 0) AND EXISTS (SELECT 1 FROM patient_impersonation_sessions__rows s")
            emit(f"            WHERE s.organization_id = OLD.organization_id AND s.patient_id = OLD.id);")
        emit(f"    DELETE FROM {table}__rows WHERE id = OLD.id AND coalesce({rule('OLD', 'delete')}, 0);")
        emit("    SELECT restartix_count_changes(changes());")
        emit("END;")
    emit("")


def unique_keys(db, rows):
    """Every unique key of a table (primary key included) as (constraint name, columns)."""
    keys = []
    for (_seq, index, is_unique, origin, _partial) in db.execute(f"PRAGMA index_list({rows})").fetchall():
        if not is_unique:
            continue
        columns = [c[2] for c in db.execute(f"PRAGMA index_info({index})").fetchall()]
        assert all(columns), f"{rows}: expression index {index} is not supported here"
        base = rows[: -len("__rows")]
        name = f"{base}_pkey" if origin == "pk" else (index if origin == "c" else f"{base}_{'_'.join(columns)}_key")
        keys.append((name, columns))
    return sorted(keys)


def migration_two(db):
    out = []
    emit = out.append
    emit("-- Generated by Scripts/dev/generate-sqlite-rls.py from migration 1; do not edit by hand.")
    emit("-- Each protected table's rows move to <table>__rows; <table> becomes a view showing only")
    emit("-- the rows the current context may see, with INSTEAD OF triggers enforcing the write rules.")
    emit("")
    emit("CREATE TABLE restartix_tenant_tables (")
    emit("    table_name TEXT PRIMARY KEY NOT NULL,")
    emit("    tenant_column TEXT NOT NULL")
    emit(");")
    for table, (column, *_rest) in TENANT.items():
        emit(f"INSERT INTO restartix_tenant_tables (table_name, tenant_column) VALUES ('{table}', '{column}');")
    emit("")
    for table in list(TENANT) + ["users"]:
        emit_table(db, emit, table, 2, rename=True)
    return "\n".join(out).rstrip() + "\n"


def migration_three(db):
    out = []
    emit = out.append
    emit("-- Generated by Scripts/dev/generate-sqlite-rls.py; do not edit by hand.")
    emit("-- Clerk organization ids on organizations (the principal lookup), and the elevated-session")
    emit("-- rules: views and triggers of the changed tables are dropped and made again.")
    emit("")
    emit("ALTER TABLE organizations__rows ADD COLUMN clerk_organization_id TEXT")
    emit("    CHECK (clerk_organization_id IS NULL OR length(clerk_organization_id) BETWEEN 1 AND 255);")
    emit("CREATE UNIQUE INDEX organizations_clerk_organization_id_key ON organizations__rows (clerk_organization_id);")
    emit("")
    db.executescript("\n".join(out))  # the views below are made from the new columns
    for table in ["organizations", "break_glass_sessions", "patient_impersonation_sessions", "audit_log"]:
        emit(f"DROP VIEW {table};")
        emit_table(db, emit, table, 3, rename=False)
    return "\n".join(out).rstrip() + "\n"


def migration_six(db):
    out = []
    emit = out.append
    emit("-- Generated by Scripts/dev/generate-sqlite-rls.py; do not edit by hand.")
    emit("-- Tenancy hardening, the rules of Postgres migration 6: every policy view and trigger is")
    emit("-- made again, with unique-key conflicts refused before any write (so INSERT OR REPLACE,")
    emit("-- REPLACE and UPDATE OR REPLACE can never delete a row, another clinic's included),")
    emit("-- elevated sessions read-only to app connections, audit rows bound to the context's user")
    emit("-- or its open session with the database's clock, memberships and domains managed by")
    emit("-- owners and admins, and usage counted only upwards.")
    emit("")
    for table in list(TENANT) + ["users"]:
        emit(f"DROP VIEW {table};")
        emit_table(db, emit, table, 6, rename=False)
    return "\n".join(out).rstrip() + "\n"


def swift_file(version, name, symbol, sql, header):
    return (header + f'''
import RestartixKit

extension MigrationSet {{
    static let {symbol} = Migration(version: {version}, name: "{name}", sql: sqlite000{version})
}}

private let sqlite000{version} = #"""
''' + sql + '"""#\n')


def main():
    def database():
        db = sqlite3.connect(":memory:")
        db.create_function("restartix_count_changes", 1, lambda n: n)
        db.create_function("current_setting", 2, lambda name, missing: None)
        db.executescript(migration_one())
        return db

    work = database()
    two = migration_two(work)
    work.executescript(two)
    three = migration_three(work)
    work = database()
    work.executescript(two)
    work.executescript(three)
    six = migration_six(work)
    # Check that the migrations apply in order on a fresh database before writing them.
    check = database()
    check.executescript(two)
    check.executescript(three)
    check.executescript(six)
    outputs = {}
    outputs["sqlite_0002_row_level_security.swift"] = (swift_file(2, "row_level_security", "sqliteTenancy", two,
        '''// Row-level security emulation for SQLite: migration 2, generated by
// Scripts/dev/generate-sqlite-rls.py (do not edit by hand; applied migrations are immutable).
// The rules are those of the Postgres policies in pg_0002_row_level_security.swift.
'''))
    outputs["sqlite_0006_tenancy_hardening.swift"] = (swift_file(6, "tenancy_hardening", "sqliteHardening", six,
        '''// SQLite migration 6, generated by Scripts/dev/generate-sqlite-rls.py (do not edit by hand;
// applied migrations are immutable). The rules are those of Postgres migration 6 in
// pg_0006_tenancy_hardening.swift.
'''))
    outputs["sqlite_0003_principals_and_elevated_sessions.swift"] = (swift_file(3, "principals_and_elevated_sessions", "sqliteTenancy3", three,
        '''// SQLite migration 3, generated by Scripts/dev/generate-sqlite-rls.py (do not edit by hand;
// applied migrations are immutable). The rules are those of Postgres migration 3 in
// pg_0003_principals_and_elevated_sessions.swift.
'''))

    if "--check" in sys.argv[1:]:
        stale = [name for name, text in outputs.items() if (OUT / name).read_text() != text]
        for name in stale:
            print(f"generate-sqlite-rls: {name} differs from what the generator writes", file=sys.stderr)
        sys.exit(1 if stale else 0)
    for name, text in outputs.items():
        (OUT / name).write_text(text)


if __name__ == "__main__":
    main()
