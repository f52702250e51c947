#!/usr/bin/env python3
"""Generates the platform's SQLite policy migrations (row-level security emulation) from the schema of migration 1.

The output is Sources/RestartixPlatform/Schema/sqlite_0002_row_level_security.swift (2),
sqlite_0003_principals_and_elevated_sessions.swift (3), sqlite_0006_tenancy_hardening.swift (6)
and sqlite_0007_legible_policies.swift (7): SQL in a Swift string literal, like every
migration. 2, 3 and 6 are as they were applied (one rule a line, unreadable); 7 makes every view
and trigger again with the rules of 6, written one clause a line in the layout of
TenantPolicySQL (RestartixTenancy), and with its unique-key guard: a key value of another
storage class than its column's is refused, and conflicts are looked up by what will be stored. The rules here are the same
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


# Migration 7: the rules of migration 6, one clause a line, in TenantPolicySQL's layout.
IND = "    "
IS_APP7 = "current_setting('restartix.connection_role', 1) IS 'app'"
UNSCOPED7 = "current_setting('app.unscoped', 1) IS 'on'"


def block(lines, indent):
    return [indent + line for line in lines]


def subquery_own(column, sessions=None):
    """A patient's own telemetry row: its patient (or its session's patient) is the user's."""
    if sessions is None:
        return [f"{{r}}.{column} IN (",
                "    SELECT p.id FROM patients__rows p",
                "    WHERE p.organization_id = {r}.organization_id",
                f"        AND p.user_id = {USER}",
                ")"]
    return [f"{{r}}.{column} IN (",
            f"    SELECT s.id FROM {sessions} s",
            "    JOIN patients__rows p ON p.organization_id = s.organization_id AND p.id = s.patient_id",
            "    WHERE s.organization_id = {r}.organization_id",
            f"        AND p.user_id = {USER}",
            ")"]


OWN7 = {
    "memberships": [f"{{r}}.user_id = {USER}"],
    "patients": [f"{{r}}.user_id = {USER}"],
    "pose_session_metrics": subquery_own("patient_id"),
    "pose_rep_metrics": subquery_own("session_id", "pose_session_metrics__rows"),
    "media_session_metrics": subquery_own("patient_id"),
    "media_buffering_events": subquery_own("media_session_id", "media_session_metrics__rows"),
}
MANAGER7 = [f"{ROLE} IN {MANAGERS}", f"{SESSION} IS NULL"]
STAFF_V7 = {
    # The row's role ranks below the principal's (owner 4 ... patient 0).
    "memberships": {c: MANAGER7 + [f"{rank('{r}.role')}", f"    < {rank(ROLE)}", f"{{r}}.user_id IS NOT {USER}"]
                    for c in ("insert", "update", "delete")},
    "organization_domains": {c: MANAGER7 for c in ("insert", "update", "delete")},
}
for _table, _commands in STAFF_V6.items():
    for _command, _rule in _commands.items():
        if _rule is None:
            STAFF_V7.setdefault(_table, {})[_command] = None


def session_exists(table, extra_join, conditions):
    return (["AND EXISTS (",
             f"    SELECT 1 FROM {table} s"]
            + ([f"    {extra_join}"] if extra_join else [])
            + [f"    WHERE s.id = {SESSION}"]
            + [f"        AND {c}" for c in conditions]
            + [")"])


APP_EXTRA_V7 = {
    ("audit_log", "insert"): (
        ["{r}.actor_kind = 'user'",
         "AND (",
         f"    (coalesce({{r}}.action_context, 'normal') = 'normal' AND {{r}}.actor_user_id = {USER})",
         "    OR (",
         "        {r}.action_context = 'break_glass'",
         f"        AND {{r}}.actor_user_id = {USER}"]
        + block(session_exists("break_glass_sessions__rows", None, [
            "s.organization_id = {r}.organization_id", "s.user_id = {r}.actor_user_id",
            "s.closed_at IS NULL", f"s.expires_at > {NOW}"]), IND * 2)
        + ["    )",
           "    OR (",
           "        {r}.action_context = 'impersonation'"]
        + block(session_exists(
            "patient_impersonation_sessions__rows",
            "JOIN patients__rows p ON p.organization_id = s.organization_id AND p.id = s.patient_id", [
                "s.organization_id = {r}.organization_id", "s.user_id = {r}.actor_user_id", f"p.user_id = {USER}",
                "s.closed_at IS NULL", f"s.expires_at > {NOW}"]), IND * 2)
        + ["    )",
           ")"]),
}


def alternative(clauses):
    """One way a principal qualifies: a clause, or several ANDed in parentheses."""
    if len(clauses) == 1:
        return clauses
    return ["("] + block([clauses[0]] + [c if c.startswith(("AND ", "OR ", ")")) or c.startswith(IND) else f"AND {c}"
                                          for c in clauses[1:]], IND) + [")"]


def case7(table, ref, command):
    """The rule for one row (`ref` is r, NEW or OLD) and one command: a CASE, one clause a line."""
    fill = lambda lines: [line.format(r=ref) for line in lines]
    if table == "users":
        app = [f"{ref}.id = {USER}", f"OR {ref}.id IN (SELECT m.user_id FROM memberships m)"] if command == "select" else ["0"]
        return [f"CASE WHEN {IS_APP7} THEN"] + block(app, IND) + ["ELSE", IND + "1", "END"]
    column, own, clinic_wide, _own_sql = TENANT[table]
    staff = STAFF_V7.get(table, {}).get(command, [f"{ROLE} IN {STAFF}"])
    who = []
    if staff:
        who.append(alternative(fill(staff)))
    if command in clinic_wide:
        who.append([f"{ROLE} = 'patient'"])
    elif command in own:
        who.append(alternative([f"{ROLE} = 'patient'"] + fill(OWN7[table])))
    if command == "select" and table in SESSION_READ_V3:
        who.append([f"{ref}.id = {SESSION}"])
    if who:
        app = [f"{ref}.{column} = {ORG}"]
        if len(who) == 1:
            first, *rest = who[0]
            app += [f"AND {first}"] + rest
        else:
            app.append("AND (")
            for index, lines in enumerate(who):
                first, *rest = lines
                app += block([("OR " if index else "") + first] + rest, IND)
            app.append(")")
        extra = APP_EXTRA_V7.get((table, command))
        if extra:
            first, *rest = fill(extra)
            app += [f"AND {first}"] + rest
    else:
        app = ["0"]
    admin = [UNSCOPED7, f"OR {ref}.{column} = {ORG}"]
    return [f"CASE WHEN {IS_APP7} THEN"] + block(app, IND) + ["ELSE"] + block(admin, IND) + ["END"]


def wrap(items, indent, width=100):
    """`items` joined by ", ", broken into lines of at most `width` characters."""
    lines, line = [], ""
    for item in items:
        candidate = f"{line}, {item}" if line else item
        if line and len(indent + candidate) > width:
            lines.append(indent + line + ",")
            line = item
        else:
            line = candidate
    lines.append(indent + line)
    return lines


def emit_table7(db, emit, table):
    rows = f"{table}__rows"
    columns = db.execute(f"PRAGMA table_info({rows})").fetchall()
    names = [c[1] for c in columns]
    key = sorted((c[5], c[1]) for c in columns if c[5])
    primary = [name for _position, name in key]
    rule = lambda ref, command, indent: block(case7(table, ref, command), indent)
    emit(f"-- {table}")
    emit(f"CREATE VIEW {table} AS SELECT * FROM {rows} AS r WHERE")
    for line in rule("r", "select", IND)[:-1]:
        emit(line)
    emit(rule("r", "select", IND)[-1] + ";")
    denied = READ_ONLY_COMMANDS.get(table, set())
    message = f"'new row violates row-level security policy for table \"{table}\"'"
    permission = f"'permission denied for table {table}'"
    defaults = {c[1]: c[4] for c in columns if c[3] and c[4] is not None}

    def stored(column):
        # What the write will store: a NOT NULL column with a default takes it for NULL.
        return f"coalesce(NEW.{column}, {defaults[column]})" if column in defaults else f"NEW.{column}"

    unique = unique_keys(db, rows)
    kinds = {}
    for c in columns:
        declared = c[2].upper()
        kinds[c[1]] = "integer" if "INT" in declared else "text" if ("TEXT" in declared or "CHAR" in declared or "CLOB" in declared) else None
    for _name, columns_of_key in unique:
        assert all(kinds[c] for c in columns_of_key), f"{table}: unique key {columns_of_key} is neither TEXT nor INTEGER"

    def rule_call(ref, command, negate, tail):
        """`SELECT ... WHERE [NOT] coalesce(<rule>, 0)<tail>` lines, the rule indented under it."""
        lines = rule(ref, command, IND * 2)
        return [f"{IND}    {'NOT ' if negate else ''}coalesce("] + lines[:-1] + [lines[-1] + f", 0){tail}"]

    def guards(exclude_old):
        # A value of another storage class than its column's would be stored as something the
        # lookup below does not compare (2.5 in an INTEGER column): refuse it. Then refuse every
        # unique-key conflict before the write, which an outer INSERT OR REPLACE, REPLACE or
        # UPDATE OR REPLACE would otherwise resolve by deleting the row in the way, another
        # clinic's included.
        for column in sorted({c for _name, key in unique for c in key}):
            emit(f"    SELECT RAISE(ABORT, 'invalid value for column {column} of table {table}: {kinds[column]} expected')")
            emit(f"        WHERE typeof({stored(column)}) NOT IN ('{kinds[column]}', 'null');")
        for name, key in unique:
            conditions = [f"k.{c} = {stored(c)}" for c in key]
            if exclude_old:
                conditions.append("NOT (" + " AND ".join(f"k.{c} IS OLD.{c}" for c in primary) + ")")
            emit(f"    SELECT RAISE(ABORT, 'duplicate key value violates unique constraint \"{name}\"')")
            emit("        WHERE EXISTS (")
            emit(f"            SELECT 1 FROM {rows} AS k")
            emit(f"            WHERE {conditions[0]}")
            for condition in conditions[1:]:
                emit(f"                AND {condition}")
            if exclude_old:
                emit("        )")
                emit("        AND (" + " OR ".join(f"{stored(c)} IS NOT OLD.{c}" for c in key) + ");")
            else:
                emit("        );")

    emit(f"CREATE TRIGGER {table}__insert INSTEAD OF INSERT ON {table} BEGIN")
    emit(f"    SELECT RAISE(ABORT, {message}) WHERE")
    for line in rule_call("NEW", "insert", True, ";"):
        emit(line)
    defaulted = APP_INSERT_DEFAULTED_V6.get(table, [])
    if defaulted:
        emit(f"    SELECT RAISE(ABORT, {permission})")
        emit(f"        WHERE {IS_APP7} AND (" + " OR ".join(f"NEW.{c} IS NOT NULL" for c in defaulted) + ");")
    guards(False)
    emit(f"    INSERT INTO {rows} (")
    for line in wrap(names, IND * 2):
        emit(line)
    emit("    ) VALUES (")
    for line in wrap([f"coalesce(NEW.{n}, {defaults[n]})" if n in defaults else f"NEW.{n}" for n in names], IND * 2):
        emit(line)
    emit("    );")
    emit("    SELECT restartix_count_changes(changes());")
    emit("END;")
    emit(f"CREATE TRIGGER {table}__update INSTEAD OF UPDATE ON {table} BEGIN")
    if "update" in denied:
        emit(f"    SELECT RAISE(ABORT, {permission});")
    else:
        emit(f"    SELECT RAISE(ABORT, {message}) WHERE")
        for line in rule_call("OLD", "update", False, ""):
            emit(line)
        emit("        AND")
        for line in rule_call("NEW", "update", True, ";"):
            emit(line)
        if table in APP_UPDATE_COLUMNS_V6:
            fixed = [n for n in names if n not in APP_UPDATE_COLUMNS_V6[table]]
            emit(f"    SELECT RAISE(ABORT, {permission})")
            emit(f"        WHERE {IS_APP7} AND (")
            for index, n in enumerate(fixed):
                emit(f"            {'OR ' if index else ''}NEW.{n} IS NOT OLD.{n}")
            emit("        );")
        if table == "usage_quotas":
            same = "NEW.period_start_at IS OLD.period_start_at AND NEW.period_end_at IS OLD.period_end_at"
            fmt = "'%Y-%m-%dT%H:%M:%f000Z'"
            later = f"strftime({fmt}, 'now', '+5 minutes')"
            emit("    SELECT RAISE(ABORT, 'permission denied for table usage_quotas: usage is only counted up within a period')")
            emit(f"        WHERE {IS_APP7} AND (")
            emit("            typeof(NEW.current_units) <> 'integer'")
            emit("            OR typeof(NEW.period_start_at) <> 'text'")
            emit("            OR typeof(NEW.period_end_at) <> 'text'")
            emit(f"            OR ({same} AND NEW.current_units < OLD.current_units)")
            emit("        );")
            # A period moves once it has ended (5 minutes of clock skew allowed), to a whole UTC
            # month that starts no earlier than the old end and has begun: at most once a month.
            emit("    SELECT RAISE(ABORT, 'permission denied for table usage_quotas: only an ended period may move, and only to the current month')")
            emit(f"        WHERE {IS_APP7}")
            emit(f"        AND NOT ({same})")
            emit("        AND NOT coalesce(")
            emit(f"            OLD.period_end_at <= {later}")
            emit("            AND NEW.period_start_at >= OLD.period_end_at")
            emit(f"            AND NEW.period_start_at <= {later}")
            emit(f"            AND NEW.period_start_at = strftime({fmt}, NEW.period_start_at, 'start of month')")
            emit(f"            AND NEW.period_end_at = strftime({fmt}, NEW.period_start_at, 'start of month', '+1 month'), 0);")
        guards(True)
        emit(f"    UPDATE {rows} SET")
        for line in wrap([f"{n} = NEW.{n}" for n in names], IND * 2):
            emit(line)
        emit("    WHERE " + " AND ".join(f"{c} = OLD.{c}" for c in primary) + " AND")
        for line in rule_call("OLD", "update", False, ";"):
            emit(line)
        emit("    SELECT restartix_count_changes(changes());")
    emit("END;")
    emit(f"CREATE TRIGGER {table}__delete INSTEAD OF DELETE ON {table} BEGIN")
    if "delete" in denied:
        emit(f"    SELECT RAISE(ABORT, {permission});")
    else:
        if table == "patients":
            # The cascade would take the impersonation sessions naming the patient with it.
            emit("    SELECT RAISE(ABORT, 'permission denied for table patients: a patient named by an impersonation session is erased by the platform')")
            emit(f"        WHERE {IS_APP7}")
            emit("        AND EXISTS (SELECT 1 FROM patient_impersonation_sessions__rows s WHERE s.organization_id = OLD.organization_id AND s.patient_id = OLD.id)")
            emit("        AND")
            for line in rule_call("OLD", "delete", False, ";"):
                emit(line)
        emit(f"    DELETE FROM {rows} WHERE " + " AND ".join(f"{c} = OLD.{c}" for c in primary) + " AND")
        for line in rule_call("OLD", "delete", False, ";"):
            emit(line)
        emit("    SELECT restartix_count_changes(changes());")
    emit("END;")
    emit("")


def migration_seven(db):
    out = []
    emit = out.append
    emit("-- Generated by Scripts/dev/generate-sqlite-rls.py; do not edit by hand.")
    emit("-- The rules of migration 6, made again one clause a line (TenantPolicySQL's layout): every")
    emit("-- policy view and its triggers. A rule reads: app connections (the restricted app role)")
    emit("-- see and write their clinic's rows as their role allows; other connections (the admin")
    emit("-- role) their context's clinic, or every clinic in an audited unscoped transaction.")
    emit("-- Unique-key guards compare what will be stored and refuse a key value of another")
    emit("-- storage class than its column's, so no conflict clause can delete a row in the way.")
    emit("")
    for table in list(TENANT) + ["users"]:
        emit(f"DROP VIEW {table};")
        emit_table7(db, emit, table)
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
    work.executescript(six)
    seven = migration_seven(work)
    # Check that the migrations apply in order on a fresh database before writing them.
    check = database()
    check.executescript(two)
    check.executescript(three)
    check.executescript(six)
    check.executescript(seven)
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

    outputs["sqlite_0007_legible_policies.swift"] = (swift_file(7, "legible_policies", "sqlitePolicies7", seven,
        '''// SQLite migration 7, generated by Scripts/dev/generate-sqlite-rls.py (do not edit by hand;
// applied migrations are immutable). The rules of migration 6 (Postgres: pg_0006_tenancy_hardening.swift),
// one clause a line: read this file for the SQLite policies in force.
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
