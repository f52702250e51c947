public import Logging
public import RestartixKit

/// The platform's schema: the tenancy contract (roles, row-level security, audit, elevated
/// sessions) and the platform's own tables (patients, providers, usage, telemetry metrics, slot
/// holds), one migration per version and dialect, in the `pg_NNNN_*` and `sqlite_NNNN_*` files
/// beside this one.
///
/// Applied migrations are immutable: a change is a new migration with the next version, never
/// an edit. The migrator refuses a changed checksum, and `MigrationTests` pins every one, so a
/// file moved or reformatted here must keep its SQL byte for byte.
/// Documentation/Guides/AddingAMigration.md walks through adding one.
public enum PlatformSchema {
    /// The platform's migrations for a dialect, in order.
    public static func migrations(for dialect: SQLDialect) -> MigrationSet {
        // The lists are checked by the test suite; a failure here is a build defect.
        try! MigrationSet(dialect == .postgres ? postgres : sqlite)
    }

    static let postgres: [Migration] = [
        MigrationSet.postgresInitialSchema,
        MigrationSet.postgresTenancy,
        MigrationSet.postgresTenancy3,
        MigrationSet.postgresSlotHolds,
        MigrationSet.postgresProviderChecks,
        MigrationSet.postgresHardening,
        MigrationSet.postgresPolicies7,
        MigrationSet.postgresEmailSuppressions,
        MigrationSet.postgresUserActivity,
        MigrationSet.postgresClerkSyncState,
        MigrationSet.postgresAppointments,
        MigrationSet.postgresTelemetrySessions,
        MigrationSet.postgresAppointmentGuards,
        MigrationSet.postgresAppointmentFollowups,
        MigrationSet.postgresBackupRead,
        MigrationSet.postgresFiles,
        MigrationSet.postgresAuditClientAddress,
    ]

    static let sqlite: [Migration] = [
        MigrationSet.sqliteInitialSchema,
        MigrationSet.sqliteTenancy,
        MigrationSet.sqliteTenancy3,
        MigrationSet.sqliteSlotHolds,
        MigrationSet.sqliteProviderChecks,
        MigrationSet.sqliteHardening,
        MigrationSet.sqlitePolicies7,
        MigrationSet.sqliteEmailSuppressions,
        MigrationSet.sqliteUserActivity,
        MigrationSet.sqliteClerkSyncState,
        MigrationSet.sqliteAppointments,
        MigrationSet.sqliteTelemetrySessions,
        MigrationSet.sqliteAppointmentGuards,
        MigrationSet.sqliteAppointmentFollowups,
        MigrationSet.sqliteBackupRead,
        MigrationSet.sqliteFiles,
        MigrationSet.sqliteAuditClientAddress,
    ]
}

extension MigrationSet {
    /// The platform's schema for a dialect (``PlatformSchema/migrations(for:)``). Before the
    /// platform module existed this was `MigrationSet.builtIn(for:)` in RestartixKit, which now
    /// carries the migration mechanism only.
    public static func platform(for dialect: SQLDialect) -> MigrationSet {
        PlatformSchema.migrations(for: dialect)
    }
}

extension Migrator {
    /// A migrator for the platform's schema (``PlatformSchema``) on `database`.
    public init(platformSchemaOn database: Database, logger: Logger) {
        self.init(database: database, migrations: .platform(for: database.dialect), logger: logger)
    }
}
