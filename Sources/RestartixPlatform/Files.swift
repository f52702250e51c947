public import Foundation
public import RestartixKit
public import RestartixTenancy

/// A file refused: a type or size the surface does not take, a file whose upload has not
/// arrived. Details name the rule, never a file name or content.
public typealias FileError = DomainError<FileErrorDomain>

/// The `file` error domain.
public enum FileErrorDomain: ErrorDomain {
    public static let name = "file"

    public static func httpStatus(for code: ErrorCode<FileErrorDomain>) -> Int {
        // A media type off the allow-list or a size over the cap is a declared value the
        // surface refuses (422), not the request's own media type or length (415, 413).
        switch code {
        case .typeNotAllowed, .tooLarge: 422
        case .notUploaded, .uploadMismatch: 409
        case .storageUnavailable: 503
        default: 400
        }
    }

    public static func isTransient(_ code: ErrorCode<FileErrorDomain>) -> Bool { code == .storageUnavailable }
}

extension ErrorCode where Domain == FileErrorDomain {
    /// The media type is not on the surface's allow-list.
    public static var typeNotAllowed: Self { Self("typeNotAllowed") }
    /// The size is over the surface's cap (or not positive: `invalidField`).
    public static var tooLarge: Self { Self("tooLarge") }
    /// A field breaks its rule (the detail names it).
    public static var invalidField: Self { Self("invalidField") }
    /// The file's upload has not arrived (or it is not yet complete): nothing to download.
    public static var notUploaded: Self { Self("notUploaded") }
    /// What arrived is not what was signed for (another size or type).
    public static var uploadMismatch: Self { Self("uploadMismatch") }
    /// The object store could not be reached: try again.
    public static var storageUnavailable: Self { Self("storageUnavailable") }
}

/// The places under which the uploads bucket keeps a clinic's files (the infrastructure
/// document's `{org_id}/{surface}/...`), each with the media types it takes and its size cap,
/// checked before a URL is signed (and then signed into it).
public enum UploadSurface: String, Sendable, CaseIterable, Codable {
    /// Patients' documents and photos: PDF, PNG, JPEG, HEIC; 25 MiB.
    case patientFiles = "patient-files"
    /// Signatures drawn on a consent form: PNG; 1 MiB.
    case signatures
    /// Exercise demonstration videos: MP4, WebM, QuickTime; 500 MiB.
    case exerciseVideos = "exercise-videos"
    /// Clinic documents and attachments: PDF, PNG, JPEG, plain text; 25 MiB.
    case documents
    /// PDFs the platform generates: PDF; 25 MiB.
    case generatedPDFs = "generated-pdfs"

    /// The media types it takes (lower case, no parameters). No SVG or HTML anywhere: a file
    /// served back to a browser must not be able to run script.
    public var allowedTypes: Set<String> {
        switch self {
        case .patientFiles: ["application/pdf", "image/png", "image/jpeg", "image/heic"]
        case .signatures: ["image/png"]
        case .exerciseVideos: ["video/mp4", "video/webm", "video/quicktime"]
        case .documents: ["application/pdf", "image/png", "image/jpeg", "text/plain"]
        case .generatedPDFs: ["application/pdf"]
        }
    }

    /// The largest file it takes, bytes.
    public var maximumSize: Int {
        switch self {
        case .signatures: 1 << 20
        case .exerciseVideos: 500 << 20
        default: 25 << 20
        }
    }

    /// Whether a patient may upload here (its own documents and signatures); the others are
    /// the clinic's staff's.
    public var patientsMayUpload: Bool { self == .patientFiles || self == .signatures }
}

/// A file the Core API signed an upload for (a `files` row).
public struct FileRecord: Sendable, Hashable {
    /// Whether the upload was seen to arrive.
    public enum State: String, Sendable, Hashable, Codable { case pending, uploaded }

    public let id: UUID
    public let organizationID: UUID
    /// Who asked for the upload.
    public let ownerUserID: UUID
    /// The patient record it belongs to, if any.
    public let patientID: UUID?
    public let surface: UploadSurface
    public let contentType: String
    public let size: Int
    public let state: State
    public let createdAt: Date
    public let uploadedAt: Date?
}

/// Uploads and downloads through presigned URLs (the platform's integration pattern: the
/// Core API signs, the browser talks to the store), recorded in the `files` tenant table.
///
/// - Keys are made here and nowhere else, from the caller's tenant context:
///   `{org_id}/{surface}/{file_id}` (``objectKey(for:surface:in:)``); a key of another clinic
///   cannot be formed, and the table checks each row's key names its own clinic and id.
/// - An upload is asked for with its surface, media type and size: the type must be on the
///   surface's allow-list and the size under its cap before anything is signed, and both are
///   signed into the URL (PUT, 5 minutes), so the store refuses any other.
/// - Staff upload for the clinic (and for any of its patients); a patient only to its own
///   record, and only where patients may upload. Who may see a file is the table's rule: the
///   clinic's staff, and the patient it belongs to; another clinic's file is not found.
/// - ``complete(_:as:requestID:)`` checks the object arrived with the size and type signed;
///   only then is it downloadable (GET, 15 minutes).
/// - Asking, completing and downloading are audited (`file.upload`, `file.complete`,
///   `file.download`), with the file's id, never its name or content.
public struct Files: Sendable {
    let tenants: TenantDatabase
    let store: any ObjectStore
    let serverSideEncryption: ServerSideEncryption?

    /// Files of `tenants`' clinics in `store`, uploaded with `serverSideEncryption` (S3).
    public init(tenants: TenantDatabase, store: any ObjectStore, serverSideEncryption: ServerSideEncryption? = nil) {
        self.tenants = tenants
        self.store = store
        self.serverSideEncryption = serverSideEncryption
    }

    /// The key of file `id` on `surface` in `context`'s clinic.
    public static func objectKey(for id: UUID, surface: UploadSurface, in context: TenantContext) -> ObjectKey {
        // Two lower-case UUIDs and a surface name: always a valid key.
        try! ObjectKey("\(context.organizationID.lowercasedString)/\(surface.rawValue)/\(id.lowercasedString)")
    }

    /// Records a pending file and signs its upload.
    public func requestUpload(
        surface: UploadSurface, contentType: String, size: Int, patient: UUID? = nil, as context: TenantContext, requestID: String? = nil
    ) async throws -> (file: FileRecord, upload: PresignedRequest) {
        let type = contentType.lowercased()
        guard surface.allowedTypes.contains(type) else {
            throw FileError(.typeNotAllowed, "\(surface.rawValue) takes \(surface.allowedTypes.sorted().joined(separator: ", "))")
        }
        guard size > 0 else { throw FileError(.invalidField, "size_bytes must be positive") }
        guard size <= surface.maximumSize else { throw FileError(.tooLarge, "\(surface.rawValue) takes files of at most \(surface.maximumSize) bytes") }
        if context.role == .patient, !surface.patientsMayUpload {
            throw TenancyError(.roleNotAllowed, "patients upload to patient-files and signatures only")
        }
        let id = UUIDv7.generate()
        let key = Self.objectKey(for: id, surface: surface, in: context)
        let upload: PresignedRequest
        do {
            upload = try store.presign(key, for: .upload(contentType: type, contentLength: size, serverSideEncryption: serverSideEncryption), expires: PresignedAccess.uploadLifetime)
        } catch {
            // Not the caller's doing: the store cannot sign (unreachable, misconfigured).
            throw FileError(.storageUnavailable, "the upload could not be signed (\(error.codeName))")
        }
        let file = try await tenants.withTenant(context) { tx in
            let (patientID, patientUser) = try await Self.patient(patient, as: context, in: tx)
            try await tx.execute("""
                INSERT INTO files (id, organization_id, owner_user_id, patient_id, patient_user_id, surface, object_key, content_type, size_bytes) \
                VALUES (\(id), \(context.organizationID), \(context.userID), \(patientID), \(patientUser), \(surface.rawValue), \(key.value), \(type), \(size))
                """)
            try await tx.audit(AuditEvent(
                action: "file.upload", resourceType: "file", resourceID: id, requestID: requestID,
                metadata: ["surface": surface.rawValue, "content_type": type, "size_bytes": String(size)]
            ))
            guard let file = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            return file
        }
        return (file, upload)
    }

    /// The patient a new file belongs to, and its account: for a patient, its own record
    /// (another is not found); for staff, the one named (if any) when the clinic has it.
    static func patient(_ requested: UUID?, as context: TenantContext, in tx: borrowing TenantTransaction) async throws -> (UUID?, UUID?) {
        if context.role == .patient {
            guard let own = try await tx.first("SELECT id FROM patients WHERE user_id = \(context.userID) AND deleted_at IS NULL")?.decode("id", as: UUID.self) else {
                throw TenancyError(.notFound, "this account has no patient record in the clinic")
            }
            if let requested, requested != own { throw TenancyError(.notFound, "no such patient in this clinic") }
            return (own, context.userID)
        }
        guard let requested else { return (nil, nil) }
        guard let row = try await tx.first("SELECT user_id FROM patients WHERE id = \(requested) AND deleted_at IS NULL") else {
            throw TenancyError(.notFound, "no such patient in this clinic")
        }
        return (requested, try row.decode("user_id", as: UUID?.self))
    }

    /// Marks the file uploaded once its object is there with the size and type signed.
    public func complete(_ id: UUID, as context: TenantContext, requestID: String? = nil) async throws -> FileRecord {
        guard let file = try await get(id, as: context) else { throw Self.notFound }
        if file.state == .uploaded { return file }
        let head: ObjectInfo?
        do { head = try await store.head(Self.objectKey(for: id, surface: file.surface, in: context)) } catch {
            throw FileError(.storageUnavailable, "the upload could not be checked (\(error.codeName))")
        }
        guard let head else { throw FileError(.notUploaded, "the file's upload has not arrived") }
        guard head.size == file.size, head.contentType.map({ $0.lowercased() == file.contentType }) ?? true else {
            throw FileError(.uploadMismatch, "what arrived is not the size and type the upload was signed for")
        }
        return try await tenants.withTenant(context) { tx in
            try await tx.execute("UPDATE files SET state = 'uploaded', uploaded_at = \(tx.dialect.now) WHERE id = \(id) AND state = 'pending'")
            try await tx.audit(AuditEvent(action: "file.complete", resourceType: "file", resourceID: id, requestID: requestID))
            guard let file = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            return file
        }
    }

    /// A download URL (GET, 15 minutes) for an uploaded file the caller may see.
    public func download(_ id: UUID, as context: TenantContext, requestID: String? = nil) async throws -> (file: FileRecord, download: PresignedRequest) {
        try await tenants.withTenant(context) { tx in
            guard let file = try await Self.fetch(id, in: tx) else { throw Self.notFound }
            guard file.state == .uploaded else { throw FileError(.notUploaded, "the file's upload has not been completed") }
            let download: PresignedRequest
            do throws(ObjectStoreError) {
                download = try store.presign(Self.objectKey(for: id, surface: file.surface, in: context), for: .download, expires: PresignedAccess.downloadLifetime)
            } catch {
                throw FileError(.storageUnavailable, "the download could not be signed (\(error.codeName))")
            }
            try await tx.audit(AuditEvent(action: "file.download", resourceType: "file", resourceID: id, requestID: requestID))
            return (file, download)
        }
    }

    /// The file, when the caller may see it.
    public func get(_ id: UUID, as context: TenantContext) async throws -> FileRecord? {
        try await tenants.withTenant(context) { tx in try await Self.fetch(id, in: tx) }
    }

    static let notFound = TenancyError(.notFound, "no such file in this clinic")

    static func fetch(_ id: UUID, in tx: borrowing TenantTransaction) async throws -> FileRecord? {
        guard let row = try await tx.first("""
            SELECT id, organization_id, owner_user_id, patient_id, surface, content_type, size_bytes, state, created_at, uploaded_at \
            FROM files WHERE id = \(id)
            """) else { return nil }
        guard let surface = UploadSurface(rawValue: try row.decode("surface", as: String.self)),
              let state = FileRecord.State(rawValue: try row.decode("state", as: String.self))
        else { throw FileError(.invalidField, "a file row has an unknown surface or state") }
        return FileRecord(
            id: try row.decode("id", as: UUID.self), organizationID: try row.decode("organization_id", as: UUID.self),
            ownerUserID: try row.decode("owner_user_id", as: UUID.self), patientID: try row.decode("patient_id", as: UUID?.self), surface: surface,
            contentType: try row.decode("content_type", as: String.self), size: try row.decode("size_bytes", as: Int.self), state: state,
            createdAt: try row.decode("created_at", as: Date.self), uploadedAt: try row.decode("uploaded_at", as: Date?.self)
        )
    }
}
