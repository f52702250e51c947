import ArgumentParser
import Crypto
import Foundation
@testable import Jobs
import RestartixAWS
import RestartixBackup
import RestartixCrypto
import RestartixKit
import RestartixPlatform
import RestartixTestSupport
import Testing

/// `backup`, `restore` and `backups` on bad input: each a clear message naming the problem
/// (never a key), nothing stored, nothing restored. The whole round trip, the kill and the
/// memory bound are the restore drill's (RestartixTenancyTests/RestoreDrillTests).
extension JobsTests {
    func refusal<J: Job>(_ type: J.Type, _ arguments: [String], environment: [String: String] = [:]) async -> String {
        do {
            _ = try await job(type, arguments, environment: environment)
            return "no error"
        } catch {
            return J.message(for: error)
        }
    }

    static func keyText(_ key: SymmetricKey) -> String { key.withUnsafeBytes { Data($0).base64EncodedString() } }

    @Test("backup: no key, a bad key, SQLite, an unreachable bucket, a bucket without Object Lock; each refused, nothing stored")
    func backupBadInput() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let local = ["--directory", dir.path]
        let postgres = RequiredServices.value("DATABASE_DIRECT_URL") ?? "postgres://nobody@127.0.0.1:1/none"

        let missing = await refusal(BackupJob.self, ["--database-url", postgres] + local)
        #expect(missing.contains("BACKUP_ENCRYPTION_KEY is not set"), "\(missing)")
        let notBase64 = await refusal(BackupJob.self, ["--database-url", postgres] + local, environment: ["BACKUP_ENCRYPTION_KEY": "not*base64*hunter2"])
        #expect(notBase64.contains("BACKUP_ENCRYPTION_KEY") && !notBase64.contains("hunter2"), "\(notBase64)")
        let short = Self.keyText(SymmetricKey(size: .bits128))
        let shortKey = await refusal(BackupJob.self, ["--database-url", postgres] + local, environment: ["BACKUP_ENCRYPTION_KEY": short])
        #expect(shortKey.contains("BACKUP_ENCRYPTION_KEY") && !shortKey.contains(short), "\(shortKey)")

        let key = ["BACKUP_ENCRYPTION_KEY": Self.keyText(SymmetricKey(size: .bits256))]
        let sqlite = await refusal(BackupJob.self, ["--database-url", "sqlite://" + dir.appendingPathComponent("x.sqlite").path] + local, environment: key)
        #expect(sqlite.contains("backup dumps PostgreSQL"), "\(sqlite)")
        #expect(await refusal(BackupJob.self, ["--retain-days=-1"] + local, environment: key).contains("--retain-days must be between 0 and 36500"))
        #expect(await refusal(BackupJob.self, ["--lock-mode", "forever"] + local, environment: key).contains("--lock-mode is compliance or governance"))

        let aws = ["AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"]
        let unreachable = await refusal(
            BackupJob.self, ["--database-url", postgres, "--bucket", "restartix-nowhere"], environment: key.merging(aws) { $1 }.merging(["AWS_ENDPOINT_URL": "http://127.0.0.1:1"]) { $1 }
        )
        #expect(unreachable.contains("the backup bucket restartix-nowhere cannot be used"), "\(unreachable)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty, "nothing written locally")

        guard RequiredServices.shouldRun("AWS_ENDPOINT_URL", "DATABASE_DIRECT_URL") else { return }
        let endpoint = try RequiredServices.require("AWS_ENDPOINT_URL")
        let s3 = try S3Client(bucket: "restartix-unlocked-\(UUID().uuidString.prefix(8).lowercased())", region: "us-east-1",
                              credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), endpoint: endpoint, usePathStyle: true)
        try await s3.createBucket()
        let moto = key.merging(aws) { $1 }.merging(["AWS_ENDPOINT_URL": endpoint]) { $1 }
        let unlocked = await refusal(BackupJob.self, ["--database-url", postgres, "--bucket", s3.bucket], environment: moto)
        #expect(unlocked.contains("bucket \(s3.bucket) has no Object Lock"), "\(unlocked)")
        let retained = await refusal(BackupJob.self, ["--database-url", postgres, "--bucket", s3.bucket, "--no-require-object-lock", "--retain-days", "3"], environment: moto)
        #expect(retained.contains("--retain-days needs a bucket with Object Lock"), "\(retained)")
        let missingBucket = await refusal(BackupJob.self, ["--database-url", postgres, "--bucket", "restartix-missing-\(UUID().uuidString.prefix(8).lowercased())"], environment: moto)
        #expect(missingBucket.contains("does not exist"), "\(missingBucket)")
        #expect(try await s3.list(prefix: "").isEmpty, "nothing stored in the bucket")
        // A locked bucket and no retention: the objects would be deletable; refused unless said.
        let locked = try S3Client(bucket: "restartix-locked-\(UUID().uuidString.prefix(8).lowercased())", region: "us-east-1",
                                  credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing"), endpoint: endpoint, usePathStyle: true)
        try await locked.createBucket(objectLockEnabled: true)
        let unretained = await refusal(BackupJob.self, ["--database-url", postgres, "--bucket", locked.bucket, "--retain-days", "0"], environment: moto)
        #expect(unretained.contains("--retain-days 0 would leave these objects deletable") && unretained.contains("--no-require-object-lock"), "\(unretained)")
        #expect(try await locked.list(prefix: "").isEmpty, "nothing stored in the locked bucket")

        // The binary: status 1, one line naming the variable.
        let binary = try await run(["backup", "--database-url", postgres, "--directory", dir.path], environment: ["BACKUP_ENCRYPTION_KEY": ""])
        #expect(binary.status == 1 && binary.stderr.contains("BACKUP_ENCRYPTION_KEY is not set"), "\(binary.stderr)")
    }

    @Test("restore: which backup, a target, another key, a non-empty target, a damaged backup; each refused before anything is written")
    func restoreBadInput() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try LocalObjectStore(directory: dir)
        let envelope = SymmetricKey(size: .bits256)
        let key = ["BACKUP_ENCRYPTION_KEY": Self.keyText(envelope)]
        let local = ["--directory", dir.path]

        #expect(await refusal(RestoreJob.self, ["--verify-only"] + local, environment: key).contains("--backup-id ID or --latest"))
        #expect(await refusal(RestoreJob.self, ["--verify-only", "--latest", "--backup-id", "x"] + local, environment: key).contains("--backup-id ID or --latest"))
        #expect(await refusal(RestoreJob.self, ["--latest"] + local, environment: key).contains("--target-url is required unless --verify-only"))
        // The tenancy boot check is part of a restore: leaving it out is said explicitly.
        let unchecked = await refusal(RestoreJob.self, ["--latest", "--target-url", "postgres://o@127.0.0.1:1/x"] + local, environment: key)
        #expect(unchecked.contains("pass --target-app-url and --target-admin-url") && unchecked.contains("--skip-tenancy-check"), "\(unchecked)")
        let halfChecked = await refusal(RestoreJob.self, ["--latest", "--target-url", "postgres://o@127.0.0.1:1/x", "--target-app-url", "postgres://a@127.0.0.1:1/x"] + local, environment: key)
        #expect(halfChecked.contains("pass --target-app-url and --target-admin-url"), "\(halfChecked)")
        let contradicted = await refusal(
            RestoreJob.self, ["--latest", "--target-url", "postgres://o@127.0.0.1:1/x", "--target-app-url", "postgres://a@127.0.0.1:1/x", "--target-admin-url", "postgres://d@127.0.0.1:1/x", "--skip-tenancy-check"] + local,
            environment: key
        )
        #expect(contradicted.contains("--skip-tenancy-check contradicts"), "\(contradicted)")
        #expect(await refusal(RestoreJob.self, ["--latest", "--verify-only"] + local, environment: key).contains("there is no backup under postgres/"))
        #expect(await refusal(RestoreJob.self, ["--backup-id", "../etc", "--verify-only"] + local, environment: key).contains("a backup id is"))

        // A backup (a stand-in dump: restore refuses before pg_restore would read it).
        let writer = try await EncryptedArchiveWriter.begin(id: "20261206T000000Z-00c0ffee", kind: "postgres-custom-dump", prefix: "postgres", in: store, envelopeKey: envelope)
        try await writer.write(Array("PGDMP stand-in".utf8))
        _ = try await writer.finish(source: [:], rowCounts: [:])
        let listed = try await job(ListBackups.self, local)
        #expect(listed.ids == ["20261206T000000Z-00c0ffee"])
        let verified = try await job(RestoreJob.self, ["--latest", "--verify-only"] + local, environment: key)
        #expect(verified.verified && !verified.restored)

        let other = SymmetricKey(size: .bits256)
        let wrong = await refusal(RestoreJob.self, ["--latest", "--verify-only"] + local, environment: ["BACKUP_ENCRYPTION_KEY": Self.keyText(other)])
        #expect(wrong.contains("backup.wrongKey") && wrong.contains(WrappedBackupKey.keyID(of: envelope)) && !wrong.contains(Self.keyText(other)), "\(wrong)")

        // After a rotation: the deployment's key is the new one, the retired key is named by
        // variable for the one command, and backup-key-id says which is which (never the key).
        let rotated = ["BACKUP_ENCRYPTION_KEY": Self.keyText(other), "RETIRED_BACKUP_KEY": Self.keyText(envelope)]
        let reopened = try await job(RestoreJob.self, ["--latest", "--verify-only", "--backup-key-variable", "RETIRED_BACKUP_KEY"] + local, environment: rotated)
        #expect(reopened.verified)
        let current = try await job(BackupKeyID.self, [], environment: rotated)
        let retired = try await job(BackupKeyID.self, ["--backup-key-variable", "RETIRED_BACKUP_KEY"], environment: rotated)
        #expect(current.keyID == WrappedBackupKey.keyID(of: other) && retired.keyID == WrappedBackupKey.keyID(of: envelope) && retired.origin == "RETIRED_BACKUP_KEY")
        let unset = await refusal(RestoreJob.self, ["--latest", "--verify-only", "--backup-key-variable", "NO_SUCH_KEY"] + local, environment: rotated)
        #expect(unset.contains("NO_SUCH_KEY (--backup-key-variable) is not set"), "\(unset)")
        let badName = await refusal(RestoreJob.self, ["--latest", "--verify-only", "--backup-key-variable", "not a name"] + local, environment: rotated)
        #expect(badName.contains("--backup-key-variable names an environment variable"), "\(badName)")
        let shortRetired = await refusal(RestoreJob.self, ["--latest", "--verify-only", "--backup-key-variable", "SHORT"] + local, environment: ["SHORT": "c2hvcnQ="])
        #expect(shortRetired.contains("SHORT") && !shortRetired.contains("c2hvcnQ="), "\(shortRetired)")

        if let target = RequiredServices.value("DATABASE_DIRECT_URL") {
            // The shared test database holds tables (migrated here, so this does not depend on
            // another suite having migrated it first): refused before anything is restored.
            _ = try await job(Migrate.self, ["--database-url", target])
            let full = await refusal(RestoreJob.self, ["--latest", "--target-url", target, "--skip-tenancy-check"] + local, environment: key)
            #expect(full.contains("backup.targetNotEmpty"), "\(full)")
        }
        let sqliteTarget = await refusal(RestoreJob.self, ["--latest", "--target-url", "sqlite::memory:", "--skip-tenancy-check"] + local, environment: key)
        #expect(sqliteTarget.contains("--target-url must be a postgres:// URL"), "\(sqliteTarget)")

        // A flipped byte: refused with the cipher's code.
        let objectKey = try EncryptedArchive.objectKey(prefix: "postgres", id: "20261206T000000Z-00c0ffee")
        var bytes = try #require(try await store.get(objectKey))
        bytes[bytes.count - 3] ^= 0x20
        try await store.put(bytes, at: objectKey)
        let damaged = await refusal(RestoreJob.self, ["--latest", "--verify-only"] + local, environment: key)
        #expect(damaged.contains("backup.authenticationFailed"), "\(damaged)")
    }

    @Test("audit-archive and audit-restore: bad months, windows, ids and databases refused before anything is done")
    func auditBadInput() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = ["BACKUP_ENCRYPTION_KEY": Self.keyText(SymmetricKey(size: .bits256))]
        let local = ["--directory", dir.path]
        for month in ["2025-13", "2025-1", "25-01", "2025/01", "x"] {
            #expect(await refusal(AuditArchiveJob.self, ["--month", month] + local, environment: key).contains("a month is YYYY-MM"), "\(month)")
            #expect(await refusal(AuditRestoreJob.self, ["--month", month] + local, environment: key).contains("a month is YYYY-MM"), "\(month)")
        }
        #expect(await refusal(AuditArchiveJob.self, ["--hot-months", "0"] + local, environment: key).contains("--hot-months must be between 1 and 120"))
        #expect(await refusal(AuditRestoreJob.self, ["--month", "2024-01", "--organization", "clinic-a"] + local, environment: key).contains("--organization must be a UUID"))
        let sqlite = "sqlite://" + dir.appendingPathComponent("x.sqlite").path
        #expect(await refusal(AuditArchiveJob.self, ["--database-url", sqlite] + local, environment: key).contains("the embedded SQLite file has none"))
        #expect(await refusal(AuditArchiveJob.self, ["--database-url", "postgres://nobody@127.0.0.1:1/none"] + local).contains("BACKUP_ENCRYPTION_KEY is not set"))

        // The hot window, computed: the current month and the 11 before it stay.
        let june = try #require(AuditArchive.Month("2026-06"))
        #expect(june.adding(-11).description == "2025-07" && june.adding(7).description == "2027-01" && june.partition == "audit_log_2026_06")
        if let target = RequiredServices.value("DATABASE_DIRECT_URL") {
            let hot = AuditArchive.Month(containing: Date()).adding(-3)
            let refused = await refusal(AuditArchiveJob.self, ["--database-url", target, "--month", "\(hot)"] + local, environment: key)
            #expect(refused.contains("inside the hot window"), "\(refused)")
            #expect(await refusal(AuditRestoreJob.self, ["--database-url", target, "--month", "2001-01"] + local, environment: key).contains("backup.notFound"))
        }
    }
}
