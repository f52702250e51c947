public import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RestartixKit
public import RestartixCore
import RestartixTelemetry
import Synchronization

/// What a spooled session holds: the session's manifest and its batches, in the order they
/// were appended.
public struct SpooledSession: Sendable {
    /// The manifest written when the session started (JSON, ``TelemetryIngest``'s).
    public let manifest: [UInt8]
    /// The batches: sequence number and bytes (canonical binary form).
    public let batches: [(sequence: Int, bytes: [UInt8])]
}

/// Where the Telemetry API keeps open sessions until they finish: one append-only file per
/// session under `directory`, `{org}/{session}.spool`. ``append(_:sequence:organization:session:)``
/// returns once the record is on disk (`fdatasync`): that is what makes a batch acknowledged.
///
/// One file and one sync a batch, where an object store pays a file, its metadata, two renames
/// and four syncs: on this project's CI disk the object-store spool kept up with 260 batches a
/// second and this one with the 400 that 200 sessions at 30 frames a second send (the load test
/// measures it). The syncs run on four threads of their own, a session always on the same one
/// (its records stay in order), so a slow disk never blocks the cooperative pool.
///
/// Record layout (little-endian): kind `UInt8` (1 manifest, 2 batch), sequence `UInt32`, length
/// `UInt32`, CRC-32 of the bytes `UInt32`, the bytes. A record cut short by a crash (never
/// acknowledged) and anything after it are ignored when the file is read.
public final class DirectorySpool: Sendable {
    /// The spool's directory.
    public let directory: URL
    /// This spool's id, kept in its directory (`owner`, made the first time): the owner the
    /// engine names for the sessions it opens. A process that takes the spool over after a
    /// restart (the same volume) owns the same sessions.
    public let ownerID: UUID
    private let workers: [BlockingWorker]
    /// Files a failed write could not be cut back to their last good record: they take no more.
    let poisoned = Mutex<Set<String>>([])

    /// A spool in `directory` (created, mode 0700, if missing).
    public init(directory: URL) throws(TelemetryIngestError) {
        self.directory = directory.standardizedFileURL
        do {
            try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw TelemetryIngestError(.storage, "the spool directory cannot be created")
        }
        ownerID = try Self.ownerID(in: self.directory)
        workers = (0..<4).map { BlockingWorker(name: "restartix.spool.\($0)") }
    }

    deinit { for worker in workers { worker.stop() } }

    func file(organization: UUID, session: UUID) -> URL {
        directory.appendingPathComponent(organization.lowercasedString).appendingPathComponent(session.lowercasedString + ".spool")
    }

    func worker(for session: UUID) -> BlockingWorker {
        workers[Int(session.uuid.15) % workers.count]
    }

    /// Starts the session's file with its manifest (replacing any earlier one of the same
    /// session): written whole and synced, then renamed into place, so a file that exists starts
    /// with a complete manifest.
    public func create(manifest: [UInt8], organization: UUID, session: UUID) async throws(TelemetryIngestError) {
        let url = file(organization: organization, session: session)
        try await io("start a session's spool", session) {
            let folder = url.deletingLastPathComponent()
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let temporary = folder.appendingPathComponent(".\(UUID().uuidString).tmp")
            defer { unlink(temporary.path) }
            try self.write(Self.record(kind: 1, sequence: 0, bytes: manifest), to: temporary, create: true)
            guard rename(temporary.path, url.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
            try Self.sync(folder)
        }
    }

    /// Appends batch `sequence` and returns once it is on disk.
    public func append(_ bytes: [UInt8], sequence: Int, organization: UUID, session: UUID) async throws(TelemetryIngestError) {
        let url = file(organization: organization, session: session)
        try await io("store a batch", session) {
            try self.write(Self.record(kind: 2, sequence: UInt32(sequence), bytes: bytes), to: url, create: false)
        }
    }

    /// The session's manifest and batches; nil when the spool has no such session.
    public func read(organization: UUID, session: UUID) async throws(TelemetryIngestError) -> SpooledSession? {
        let url = file(organization: organization, session: session)
        return try await io("read a session's spool", session) { () -> SpooledSession? in
            guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
            return Self.parse(Array(data))
        }
    }

    /// Removes the session's file (nothing when there is none).
    public func remove(organization: UUID, session: UUID) async throws(TelemetryIngestError) {
        let url = file(organization: organization, session: session)
        try await io("clear a session's spool", session) {
            guard unlink(url.path) == 0 || errno == ENOENT else { throw CocoaError(.fileWriteUnknown) }
            self.poisoned.withLock { _ = $0.remove(url.path) }
        }
    }

    /// Every spooled session: its clinic and id.
    public func sessions() throws(TelemetryIngestError) -> [(organization: UUID, session: UUID)] {
        let manager = FileManager.default
        guard let organizations = try? manager.contentsOfDirectory(atPath: directory.path) else {
            throw TelemetryIngestError(.storage, "the spool directory cannot be listed")
        }
        var found: [(UUID, UUID)] = []
        for name in organizations {
            guard let organization = UUID(uuidString: name), let files = try? manager.contentsOfDirectory(atPath: directory.appendingPathComponent(name).path) else { continue }
            for file in files where file.hasSuffix(".spool") {
                if let session = UUID(uuidString: String(file.dropLast(".spool".count))) { found.append((organization, session)) }
            }
        }
        return found
    }

    // MARK: - Files

    /// The id in `directory/owner`, written (synced, then linked into place, so two processes
    /// starting at once agree) when there is none.
    static func ownerID(in directory: URL) throws(TelemetryIngestError) -> UUID {
        let path = directory.appendingPathComponent("owner").path
        for _ in 0..<2 {
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                guard let id = UUID(uuidString: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw TelemetryIngestError(.storage, "the spool's owner file does not hold an id")
                }
                return id
            }
            let temporary = directory.appendingPathComponent(".owner-\(UUID().uuidString).tmp").path
            defer { unlink(temporary) }
            guard FileManager.default.createFile(atPath: temporary, contents: Data(UUID().uuidString.lowercased().utf8), attributes: [.posixPermissions: 0o600]) else { break }
            let fd = open(temporary, O_RDONLY)
            if fd >= 0 { _ = fsync(fd); close(fd) }
            _ = link(temporary, path)  // loses to a racing process's file: read again
        }
        throw TelemetryIngestError(.storage, "the spool's owner file cannot be written")
    }

    func io<T: Sendable>(_ what: String, _ session: UUID, _ body: @escaping @Sendable () throws -> T) async throws(TelemetryIngestError) -> T {
        do { return try await worker(for: session).run(body) } catch {
            throw TelemetryIngestError(.storage, "the spool could not \(what)")
        }
    }

    static func record(kind: UInt8, sequence: UInt32, bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [kind]
        out.reserveCapacity(13 + bytes.count)
        for value in [sequence, UInt32(bytes.count), bytes.withUnsafeBytes { CRC32.checksum($0) }] {
            withUnsafeBytes(of: value.littleEndian) { out += $0 }
        }
        return out + bytes
    }

    /// Writes `bytes` at the end of the file (creating it when `create`) and syncs its data. A
    /// write or sync that fails cuts the file back to where it was, so the next record follows
    /// the last good one (the reader stops at the first bad record, and everything acknowledged
    /// after a leftover fragment would be lost); if even that fails, the session's file takes no
    /// more records (``poisoned``).
    func write(_ bytes: [UInt8], to url: URL, create: Bool) throws {
        guard !poisoned.withLock({ $0.contains(url.path) }) else { throw CocoaError(.fileWriteUnknown) }
        let fd = open(url.path, O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteUnknown) }
        defer { close(fd) }
        let start = lseek(fd, 0, SEEK_END)
        guard start >= 0 else { throw CocoaError(.fileWriteUnknown) }
        var written = 0
        let complete = bytes.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let count = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { return false }
                written += count
            }
            return true
        }
        guard complete, fdatasync(fd) == 0 else {
            if ftruncate(fd, start) != 0 || fdatasync(fd) != 0 { poisoned.withLock { _ = $0.insert(url.path) } }
            throw CocoaError(.fileWriteUnknown)
        }
    }

    static func sync(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CocoaError(.fileReadUnknown) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    /// The records of a file: the manifest first, then the batches, up to the first record that
    /// is cut short or does not match its checksum.
    static func parse(_ bytes: [UInt8]) -> SpooledSession? {
        var offset = 0
        var manifest: [UInt8]?
        var batches: [(Int, [UInt8])] = []
        while bytes.count - offset >= 13 {
            let kind = bytes[offset]
            let sequence = read32(bytes, offset + 1), length = Int(read32(bytes, offset + 5)), crc = read32(bytes, offset + 9)
            let start = offset + 13
            guard length <= bytes.count - start else { break }
            let body = Array(bytes[start..<(start + length)])
            guard body.withUnsafeBytes({ CRC32.checksum($0) }) == crc else { break }
            if kind == 1, manifest == nil { manifest = body } else if kind == 2, manifest != nil { batches.append((Int(sequence), body)) } else { break }
            offset = start + length
        }
        guard let manifest else { return nil }
        return SpooledSession(manifest: manifest, batches: batches)
    }

    static func read32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }
}
