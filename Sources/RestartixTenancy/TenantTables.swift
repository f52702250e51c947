/// One table whose rows belong to one clinic, and what the app role's principals may do on it.
///
/// A ``TenantTables`` registry of these is the one statement of a schema's tenancy rules that
/// the rest is derived from or checked against: the SQLite authorizer's grants (``TenantDatabase``),
/// the boot check (every registered table is in `restartix_tenant_tables`, behind its policies,
/// with exactly these app-role grants on Postgres), the policy SQL for a new table
/// (``TenantPolicySQL``), the sealed-column list the key rotation walks, and the isolation
/// matrix in the tests.
///
/// ```swift
/// let notes = TenantTable("notes", patientOwn: [.select], ownership: .userColumn("author_id"))
/// ```
public struct TenantTable: Sendable, Hashable, CustomStringConvertible {
    /// A statement kind, as in a Postgres grant or policy.
    public enum Command: String, Sendable, Hashable, CaseIterable, Comparable {
        case select, insert, update, delete

        public static func < (lhs: Command, rhs: Command) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }
    }

    /// Which rows a patient owns.
    public enum Ownership: Sendable, Hashable {
        /// Rows whose `column` names the patient's own user (`app.current_user_id`).
        case userColumn(String)
        /// A rule the schema's own migrations state (a join through other tables); the policy
        /// generator cannot write it, the registry only records that one exists.
        case definedBySchema
    }

    /// The table's name (an SQL identifier: `a-z`, `0-9`, `_`).
    public let name: String
    /// The column naming the row's clinic: `organization_id`, or `id` for the clinics' own table.
    public let tenantColumn: String
    /// What the app role may do at all (Postgres grants; the SQLite authorizer). Always
    /// includes `select`.
    public let appCommands: Set<Command>
    /// The columns an app-role `UPDATE` may set (Postgres column grants), or `nil` for all.
    public let updatableColumns: Set<String>?
    /// App commands only a clinic's owner or admin may run, outside elevated sessions.
    public let managerCommands: Set<Command>
    /// Commands a patient may run on the rows it owns (``ownership``).
    public let patientOwnCommands: Set<Command>
    /// Commands a patient may run on every row of its clinic.
    public let patientClinicCommands: Set<Command>
    /// Which rows a patient owns, when ``patientOwnCommands`` is not empty.
    public let ownership: Ownership?
    /// Columns sealed by the column cipher (bound to this table, the column and the row's clinic).
    public let sealedColumns: [String]

    /// Describes a tenant table. Staff (owner, admin, specialist, assistant) may run every
    /// command in `app` on their clinic's rows, except `managersOnly`, which only owners and
    /// admins may; patients only what `patientOwn` and `patientClinicWide` give them. Nothing
    /// reaches another clinic's rows. ``TenantTables/init(_:alsoReadable:)`` checks the
    /// description for consistency.
    public init(
        _ name: String,
        tenantColumn: String = "organization_id",
        app: Set<Command> = Set(Command.allCases),
        updatableColumns: Set<String>? = nil,
        managersOnly: Set<Command> = [],
        patientOwn: Set<Command> = [],
        patientClinicWide: Set<Command> = [],
        ownership: Ownership? = nil,
        sealedColumns: [String] = []
    ) {
        self.name = name
        self.tenantColumn = tenantColumn
        self.appCommands = app
        self.updatableColumns = updatableColumns
        self.managerCommands = managersOnly
        self.patientOwnCommands = patientOwn
        self.patientClinicCommands = patientClinicWide
        self.ownership = ownership
        self.sealedColumns = sealedColumns
    }

    public var description: String { name }

    /// Whether `text` is a plain lower-case SQL identifier, safe to splice into SQL.
    static func isIdentifier(_ text: String) -> Bool {
        guard let first = text.utf8.first, (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(first) || first == UInt8(ascii: "_") else {
            return false
        }
        return text.utf8.count <= 63 && text.utf8.allSatisfy {
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || $0 == UInt8(ascii: "_")
        }
    }

    /// Every inconsistency in this description, one line each.
    var problems: [String] {
        var problems: [String] = []
        for identifier in [name, tenantColumn] + (updatableColumns.map(Array.init) ?? []) + sealedColumns where !Self.isIdentifier(identifier) {
            problems.append("\(name): \(identifier) is not a lower-case SQL identifier")
        }
        if name.hasSuffix("__rows") { problems.append("\(name): names ending in __rows are reserved for the rows behind a SQLite policy view") }
        if !appCommands.contains(.select) { problems.append("\(name): the app role must be able to select (its policies decide which rows)") }
        for (label, commands) in [("managersOnly", managerCommands), ("patientOwn", patientOwnCommands), ("patientClinicWide", patientClinicCommands)] {
            let extra = commands.subtracting(appCommands)
            if !extra.isEmpty {
                problems.append("\(name): \(label) has \(extra.sorted().map(\.rawValue).joined(separator: ", ")), which the app role is not granted")
            }
        }
        if updatableColumns != nil, !appCommands.contains(.update) {
            problems.append("\(name): updatableColumns without update in app")
        }
        if updatableColumns?.isEmpty == true { problems.append("\(name): updatableColumns is empty (leave update out of app instead)") }
        if !patientOwnCommands.isEmpty, ownership == nil { problems.append("\(name): patientOwn needs an ownership rule") }
        if Set(sealedColumns).count != sealedColumns.count { problems.append("\(name): a sealed column is listed twice") }
        return problems
    }
}

/// A schema's tenant tables: the registry ``TenantTable`` describes.
///
/// The platform's is `PlatformSchema.tenantTables` (RestartixPlatform); a service with its own
/// schema builds its own and passes it to ``TenantDatabase``.
public struct TenantTables: Sendable, Hashable {
    /// The tenant tables, in the order given.
    public let tables: [TenantTable]
    /// Tables that are not one clinic's but that app connections may read through a policy
    /// view of their own (the platform's `users`: a user sees itself and its clinics' members).
    public let alsoReadable: Set<String>

    /// A registry; throws ``TenancyError/Code/invalidTenantTables`` listing every
    /// inconsistency (a name that is not an identifier, a table listed twice, a patient or
    /// manager command the app role is not granted, ...).
    public init(_ tables: [TenantTable], alsoReadable: Set<String> = []) throws(TenancyError) {
        var problems = tables.flatMap(\.problems)
        var seen = Set<String>()
        for table in tables where !seen.insert(table.name).inserted {
            problems.append("\(table.name) is listed twice")
        }
        for name in alsoReadable.sorted() {
            if !TenantTable.isIdentifier(name) { problems.append("\(name) is not a lower-case SQL identifier") }
            if seen.contains(name) { problems.append("\(name) is both a tenant table and alsoReadable") }
        }
        guard problems.isEmpty else {
            throw TenancyError(.invalidTenantTables, "the tenant-table registry is inconsistent", problems: problems)
        }
        self.tables = tables
        self.alsoReadable = alsoReadable
    }

    /// The table named `name`, if registered.
    public subscript(name: String) -> TenantTable? { tables.first { $0.name == name } }

    /// The names of the tenant tables.
    public var names: [String] { tables.map(\.name) }
}
