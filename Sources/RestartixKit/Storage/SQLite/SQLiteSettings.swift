/// Postgres's configuration settings on SQLite: what `set_config(name, value, is_local)` and
/// `current_setting(name [, missing_ok])` read and write, so the same SQL — the tenancy
/// layer's context statement and the policies that read it — runs on both backends.
///
/// As on Postgres: a local setting lasts until its transaction ends (or its statement, outside
/// a transaction); a session setting lasts for the connection; a name that was ever set reads
/// as '' once its value is gone; names need a dot (custom settings); an unknown name is an
/// error unless `missing_ok`. Locked names (set by the connection's setup) refuse `set_config`.
struct SQLiteSettings {
    private var session: [String: String] = [:]
    private var local: [String: String] = [:]
    private var known: Set<String> = []
    private var locked: Set<String> = []

    mutating func set(_ name: String, _ value: String, local isLocal: Bool) throws {
        try validate(name)
        guard !locked.contains(name) else {
            throw SQLiteFunctionError("permission denied to set parameter \"\(name)\"")
        }
        known.insert(name)
        if isLocal {
            // Outside a transaction a local setting still lasts for the statement.
            local[name] = value
        } else {
            session[name] = value
            local[name] = nil
        }
    }

    func value(of name: String) -> String? {
        if let value = local[name] ?? session[name] { return value }
        return known.contains(name) ? "" : nil
    }

    mutating func preset(_ name: String, _ value: String?, locked isLocked: Bool) throws {
        try validate(name)
        session[name] = value
        if value != nil { known.insert(name) }
        if isLocked { locked.insert(name) }
    }

    mutating func endTransaction() {
        if !local.isEmpty { local.removeAll(keepingCapacity: true) }
    }

    private func validate(_ name: String) throws {
        guard name.contains("."), !name.hasPrefix("."), !name.hasSuffix("."), name.count <= 63,
              name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ".") })
        else {
            throw SQLiteFunctionError("invalid configuration parameter name \"\(name)\"")
        }
    }
}

/// An error raised by a built-in SQL function; its text becomes the SQLite error message, so
/// it names settings and functions only, never values.
struct SQLiteFunctionError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
