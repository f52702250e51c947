public import Foundation
public import RestartixCrypto
public import RestartixKit
public import RestartixTenancy

/// The `platform_service_providers` table: one row per (capability, organization), the
/// platform default with no organization, credentials sealed by the column cipher and bound to
/// their row (table, column, organization, row id), so a value copied to another row does not
/// open.
///
/// Reads go through a ``Database`` connected as the admin role: the table is platform data, not
/// under row-level security, and such a transaction sees no clinic's rows. Rotation goes
/// through ``AdminDatabase`` so the change and its audit row commit together.
public struct ProviderRegistry: Sendable {
    /// The database (admin role).
    public let database: Database
    /// The cipher sealing and opening credentials.
    public let cipher: ColumnCipher

    static let table = "platform_service_providers"

    /// A registry over `database` (the admin role's pool), sealing with `cipher`.
    public init(database: Database, cipher: ColumnCipher) {
        self.database = database
        self.cipher = cipher
    }

    static let columns: SQLQuery = """
        id, capability, organization_id, provider_kind, config, credentials, status, last_checked_at, last_error, updated_at, version
        """

    /// The row that serves `capability` for `organization`: the clinic's own row when it has
    /// one, else the platform default; nil when neither exists.
    public func lookup(_ capability: ProviderCapability, organization: UUID?) async throws -> ProviderRecord? {
        let rows: [SQLRow]
        if let organization {
            rows = try await database.query("""
                SELECT \(Self.columns) FROM platform_service_providers \
                WHERE capability = \(capability.name) AND (organization_id = \(organization) OR organization_id IS NULL) \
                ORDER BY CASE WHEN organization_id IS NULL THEN 1 ELSE 0 END LIMIT 1
                """)
        } else {
            rows = try await database.query("""
                SELECT \(Self.columns) FROM platform_service_providers \
                WHERE capability = \(capability.name) AND organization_id IS NULL
                """)
        }
        return try rows.first.map { try record($0) }
    }

    /// Every row, for `check-providers`.
    public func all() async throws -> [ProviderRecord] {
        try await database.query("SELECT \(Self.columns) FROM platform_service_providers ORDER BY capability, organization_id")
            .map { try record($0) }
    }

    /// Inserts a row unless one exists for its (capability, organization): `INSERT ... ON
    /// CONFLICT DO NOTHING`, so a seed never overwrites a rotated row. Returns whether it
    /// inserted.
    @discardableResult
    public func insertIfAbsent(
        _ capability: ProviderCapability, organization: UUID? = nil, kind: ProviderKind, config: [String: String], secrets: ProviderSecrets
    ) async throws -> Bool {
        try ProviderValidation.check(kind: kind, config: config, secrets: secrets)
        let id = UUIDv7.generate()
        let sealed = try seal(secrets, id: id, organization: organization)
        let inserted = try await database.execute("""
            INSERT INTO platform_service_providers (id, capability, organization_id, provider_kind, config, credentials) \
            VALUES (\(id), \(capability.name), \(organization), \(kind.name), \(json: config), \(sealed)) \
            ON CONFLICT DO NOTHING
            """)
        return inserted == 1
    }

    /// Rotation, the admin PATCH's library half: validates the new settings, re-seals the
    /// credentials under the keyring's current key, writes them with `version + 1`, and audits
    /// who did it (`provider.rotate`, naming changed fields, never values), in one transaction.
    /// `expectedVersion`, when given, must match the row's (a concurrent rotation fails with
    /// `versionConflict` instead of being overwritten). Fields left nil keep their value; a
    /// given `config` or `secrets` replaces the whole object (send every setting). Credentials
    /// that no longer open can be replaced by giving `secrets`.
    ///
    /// The caller invalidates resolvers afterwards (``ProviderResolver/invalidate(_:)`` and,
    /// across instances, ``ProviderResolver/publishInvalidation(_:)``); ``ProviderResolver/rotate(_:organization:kind:config:secrets:expectedVersion:actor:admin:)``
    /// does all of it.
    public func rotate(
        _ capability: ProviderCapability,
        organization: UUID?,
        kind: ProviderKind? = nil,
        config: [String: String]? = nil,
        secrets: ProviderSecrets? = nil,
        expectedVersion: Int? = nil,
        actor: PlatformActor,
        admin: AdminDatabase
    ) async throws -> ProviderRecord {
        let body: (borrowing AdminTransaction) async throws -> ProviderRecord = { tx in
            let select: SQLQuery
            if let organization {
                select = "SELECT \(Self.columns) FROM platform_service_providers WHERE capability = \(capability.name) AND organization_id = \(organization)"
            } else {
                select = "SELECT \(Self.columns) FROM platform_service_providers WHERE capability = \(capability.name) AND organization_id IS NULL"
            }
            let rows = try await tx.query(select)
            guard let row = rows.first else {
                throw ProviderError(.notFound, "no \(capability) provider row for \(organization.map { "organization \($0.lowercasedString)" } ?? "the platform") to rotate")
            }
            // Credentials that no longer open (a lost key) can still be replaced whole.
            let current: ProviderRecord
            do { current = try record(row) } catch let error as ProviderError where error.code == .decryptionFailed && secrets != nil {
                current = try record(row, openingCredentials: false)
            }
            if let expectedVersion, expectedVersion != current.version {
                throw ProviderError(.versionConflict, "the \(capability) provider is at version \(current.version), not \(expectedVersion)")
            }
            var next = current
            next.kind = kind ?? current.kind
            next.config = config ?? current.config
            next.secrets = secrets ?? current.secrets
            try ProviderValidation.check(kind: next.kind, config: next.config, secrets: next.secrets)
            let sealed = try seal(next.secrets, id: current.id, organization: current.organizationID)
            let updated = try await tx.execute("""
                UPDATE platform_service_providers SET provider_kind = \(next.kind.name), config = \(json: next.config), \
                credentials = \(sealed), version = version + 1, updated_at = \(Date()) \
                WHERE id = \(current.id) AND version = \(current.version)
                """)
            guard updated == 1 else { throw ProviderError(.versionConflict, "the \(capability) provider changed during the rotation") }
            var changed: [String] = []
            if next.kind != current.kind { changed.append("provider_kind") }
            changed += Set(next.config.keys).union(current.config.keys).filter { next.config[$0] != current.config[$0] }.sorted().map { "config.\($0)" }
            changed += Set(next.secrets.values.keys).union(current.secrets.values.keys).filter { next.secrets.values[$0] != current.secrets.values[$0] }
                .sorted().map { "secrets.\($0)" }
            try await tx.audit(
                AuditEvent(
                    action: "provider.rotate", resourceType: "platform_service_provider", resourceID: current.id,
                    metadata: ["capability": capability.name, "version": "\(current.version + 1)", "changed": changed.joined(separator: ",")]
                ),
                organizationID: current.organizationID
            )
            let after = try await tx.query("SELECT \(Self.columns) FROM platform_service_providers WHERE id = \(current.id)")
            guard let fresh = after.first else { throw ProviderError(.notFound, "the \(capability) provider row vanished during the rotation") }
            return try record(fresh)
        }
        if let organization {
            return try await admin.withOrganization(organization, actor: actor, body)
        }
        return try await admin.unscoped(reason: "rotate the platform \(capability) provider", actor: actor, body)
    }

    /// The row decoded and its credentials opened (or left empty, not opened).
    func record(_ row: SQLRow, openingCredentials: Bool = true) throws -> ProviderRecord {
        let id = try row.decode("id", as: UUID.self)
        let organization = try row.decode("organization_id", as: UUID?.self)
        let statusText = try row.decode("status", as: String.self)
        guard let status = ProviderStatus(rawValue: statusText) else { throw ProviderError(.corruptRow, "a provider row has an unknown status") }
        let config: [String: String]
        do { config = try row.decode("config", as: SQLJSON<[String: String]>.self).value } catch {
            throw ProviderError(.corruptRow, "a provider row's config is not a JSON object of strings")
        }
        var secrets = ProviderSecrets()
        if openingCredentials, let sealed = try row.decode("credentials", as: Data?.self) {
            let opened: Data
            do {
                opened = try cipher.open(sealed, at: place(id: id, organization: organization))
            } catch {
                throw ProviderError(.decryptionFailed, "the credentials of provider row \(id.lowercasedString) do not open (\(error.code))")
            }
            guard let values = try? JSONDecoder().decode([String: String].self, from: opened) else {
                throw ProviderError(.corruptRow, "the credentials of provider row \(id.lowercasedString) are not a JSON object of strings")
            }
            secrets = ProviderSecrets(values)
        }
        return ProviderRecord(
            id: id,
            capability: try ProviderCapability(try row.decode("capability", as: String.self)),
            organizationID: organization,
            kind: try ProviderKind(try row.decode("provider_kind", as: String.self)),
            config: config,
            secrets: secrets,
            status: status,
            lastCheckedAt: try row.decode("last_checked_at", as: Date?.self),
            lastError: try row.decode("last_error", as: String?.self),
            updatedAt: try row.decode("updated_at", as: Date.self),
            version: try row.decode("version", as: Int.self)
        )
    }

    /// Where a row's credentials are bound (the same place `reencrypt` uses).
    func place(id: UUID, organization: UUID?) -> ColumnPlace {
        ColumnPlace(table: Self.table, column: "credentials", organizationID: organization, rowID: id)
    }

    func seal(_ secrets: ProviderSecrets, id: UUID, organization: UUID?) throws -> Data? {
        guard !secrets.values.isEmpty else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try cipher.seal(try encoder.encode(secrets.values), at: place(id: id, organization: organization))
    }
}

/// The checks every write runs: sizes, URLs, and what each known kind needs.
enum ProviderValidation {
    static func check(kind: ProviderKind, config: [String: String], secrets: ProviderSecrets) throws(ProviderError) {
        for (name, value) in config {
            guard ProviderCapability.valid(name), value.utf8.count <= 2048, !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw ProviderError(.invalidArgument, "setting \(name.prefix(32)) must be a lower-case name with a one-line value of at most 2048 bytes")
            }
            if name.hasSuffix("_url"), !value.isEmpty {
                guard let url = URL(string: value), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
                    throw ProviderError(.invalidArgument, "setting \(name) must be an http(s) URL")
                }
            }
        }
        for (name, value) in secrets.values {
            // No control characters: a secret goes into HTTP headers, where a line break is an
            // error that could carry the value into a message.
            guard ProviderCapability.valid(name), value.utf8.count <= 8192, !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw ProviderError(.invalidArgument, "secret \(name.prefix(32)) must be a lower-case name with a value of at most 8192 bytes and no control characters")
            }
        }
        func require(_ present: Bool, _ what: String) throws(ProviderError) {
            guard present else { throw ProviderError(.invalidArgument, "a \(kind) provider needs \(what)") }
        }
        switch kind {
        case .ses:
            let from = config["from_address"] ?? ""
            try require(from.contains("@") && !from.hasPrefix("@") && !from.hasSuffix("@"), "a from_address")
            try require((secrets["access_key_id"] == nil) == (secrets["secret_access_key"] == nil), "both AWS keys or neither (neither: the default credential chain)")
        case .s3:
            try require(!(config["bucket"] ?? "").isEmpty, "a bucket")
            try require((secrets["access_key_id"] == nil) == (secrets["secret_access_key"] == nil), "both AWS keys or neither (neither: the default credential chain)")
            if let style = config["use_path_style"], !style.isEmpty { try require(["true", "false"].contains(style), "use_path_style true or false") }
        case .clerk:
            try require(secrets["secret_key"] != nil, "a secret_key")
        case .daily, .anthropic:
            try require(secrets["api_key"] != nil, "an api_key")
        default:
            break
        }
    }
}
