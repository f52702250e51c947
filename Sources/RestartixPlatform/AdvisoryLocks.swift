import Crypto
import Foundation
import RestartixKit
import RestartixTenancy

extension TenantTransaction {
    /// On Postgres, takes a transaction-scoped advisory lock on `label` and `parts` (held until
    /// the transaction ends, which PgBouncer's transaction mode keeps); nothing on SQLite,
    /// whose transactions already run one writer at a time. For a check-then-insert that a
    /// unique key cannot express, or that must not fail two racing writers.
    ///
    /// The key is the first 8 bytes of a SHA-256 of the label and the parts: another feature's
    /// label cannot meet it.
    func lockForTransaction(_ label: String, _ parts: String...) async throws {
        guard dialect == .postgres else { return }
        let digest = SHA256.hash(data: Data(([label] + parts).joined(separator: ":").utf8))
        let key = digest.prefix(8).reduce(Int64(0)) { ($0 << 8) | Int64($1) }
        _ = try await query("SELECT pg_advisory_xact_lock(\(key)) AS locked")
    }
}
