import Foundation
import HTTPTypes
import Hummingbird
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import ServiceSupport

/// A file as the routes answer it (``FileRecord``).
struct FileBody: ResponseCodable, Equatable {
    let id: String
    let organization_id: String
    let owner_user_id: String
    let patient_id: String?
    let surface: String
    let content_type: String
    let size_bytes: Int
    /// `pending` until the upload is completed, then `uploaded`.
    let state: String
    let created_at: String
    let uploaded_at: String?

    init(_ file: FileRecord) {
        id = file.id.lowercasedString
        organization_id = file.organizationID.lowercasedString
        owner_user_id = file.ownerUserID.lowercasedString
        patient_id = file.patientID?.lowercasedString
        surface = file.surface.rawValue
        content_type = file.contentType
        size_bytes = file.size
        state = file.state.rawValue
        created_at = APITime.string(file.createdAt)
        uploaded_at = file.uploadedAt.map(APITime.string)
    }
}

/// A presigned request: what the browser sends, to where, until when. The URL is a credential
/// for one object: handed to the caller, never logged.
struct PresignedBody: Codable, Equatable {
    let method: String
    let url: String
    /// Headers the request must carry with exactly these values.
    let headers: [String: String]
    let expires_at: String

    init(_ request: PresignedRequest) {
        method = request.method
        url = request.url.absoluteString
        headers = request.headers
        expires_at = APITime.string(request.expiresAt)
    }
}

/// `POST /v1/files`' body. `patient_id` is absent or a UUID (`null` is refused, as the
/// document says).
struct UploadRequestBody: Decodable {
    let surface: String
    let content_type: String
    let size_bytes: Int
    let patient_id: String?

    enum CodingKeys: String, CodingKey { case surface, content_type, size_bytes, patient_id }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        surface = try container.decode(String.self, forKey: .surface)
        content_type = try container.decode(String.self, forKey: .content_type)
        size_bytes = try container.decode(Int.self, forKey: .size_bytes)
        patient_id = try JSONBodyDecoder.optional(String.self, .patient_id, in: container)
    }
}

struct UploadBody: ResponseCodable, Equatable {
    let file: FileBody
    let upload: PresignedBody
}

struct DownloadBody: ResponseCodable, Equatable {
    let file: FileBody
    let download: PresignedBody
}

/// The files routes (the library's ``Files``): `POST /v1/files` asks for an upload (surface,
/// media type and size checked before signing: 422 `file.typeNotAllowed`, `file.tooLarge`; 201 with the file and its presigned
/// PUT, 5 minutes); `POST /v1/files/{id}/complete` once the browser's PUT succeeded (409 while
/// nothing arrived); `GET /v1/files/{id}`; `GET /v1/files/{id}/download` (a presigned GET, 15
/// minutes, of an uploaded file). A file the caller may not see (another clinic's, another
/// patient's) is 404.
func addFileRoutes(to group: RouterGroup<CoreRequestContext>, files: Files) {
    group.post("files") { request, context -> EditedResponse<UploadBody> in
        let tenant = try context.requireTenant()
        let body = try await request.decode(as: UploadRequestBody.self, context: context)
        guard let surface = UploadSurface(rawValue: body.surface) else {
            throw RequestError(.invalidField, "surface must be one of \(UploadSurface.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let patient = try body.patient_id.map { try uuid($0, field: "patient_id") }
        let (file, upload) = try await files.requestUpload(
            surface: surface, contentType: body.content_type, size: body.size_bytes, patient: patient, as: tenant, requestID: context.requestID
        )
        return EditedResponse(status: .created, response: UploadBody(file: FileBody(file), upload: PresignedBody(upload)))
    }
    group.get("files/{id}") { _, context -> FileBody in
        let tenant = try context.requireTenant()
        guard let file = try await files.get(try uuid(context.parameters.get("id"), field: "id"), as: tenant) else {
            throw TenancyError(.notFound, "no such file in this clinic")
        }
        return FileBody(file)
    }
    group.post("files/{id}/complete") { _, context -> FileBody in
        let tenant = try context.requireTenant()
        return FileBody(try await files.complete(try uuid(context.parameters.get("id"), field: "id"), as: tenant, requestID: context.requestID))
    }
    group.get("files/{id}/download") { _, context -> DownloadBody in
        let tenant = try context.requireTenant()
        let (file, download) = try await files.download(try uuid(context.parameters.get("id"), field: "id"), as: tenant, requestID: context.requestID)
        return DownloadBody(file: FileBody(file), download: PresignedBody(download))
    }
}

/// What serves the local uploads store's presigned URLs (the embedded default; with an uploads
/// bucket, S3 serves its own): `PUT` and `GET /v1/objects/{organization}/{surface}/{file}`,
/// with no bearer token — the URL's signature is the credential, checked by the store's own
/// verifier (``LocalObjectStore/verifyPresigned(method:key:query:headers:)``) before a byte
/// is read: 403 `objectStore.presignRefused` for anything not signed (another key, method,
/// type, length or expiry), `objectStore.presignExpired` after the expiry. A PUT must send
/// exactly the signed length; a body of another length is refused and nothing is stored.
func addLocalObjectRoutes(to router: Router<CoreRequestContext>, store: LocalObjectStore) {
    let path: RouterPath = "v1/objects/{organization}/{surface}/{file}"
    @Sendable func target(_ request: Request, _ context: CoreRequestContext) throws -> (ObjectKey, [String: String]) {
        let parts = ["organization", "surface", "file"].compactMap { context.parameters.get($0) }
        guard parts.count == 3, let key = try? ObjectKey(parts.joined(separator: "/")) else {
            throw RequestError(.invalidField, "the object path is {organization}/{surface}/{file}")
        }
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters { query[String(name)] = String(value) }
        return (key, query)
    }
    router.put(path) { request, context -> Response in
        let (key, query) = try target(request, context)
        var headers: [String: String] = [:]
        for field in request.headers where ["content-type", "content-length", "if-none-match", "x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"].contains(field.name.canonicalName) {
            headers[field.name.canonicalName] = field.value
        }
        guard case .upload(let type, let length, _) = try store.verifyPresigned(method: "PUT", key: key, query: query, headers: headers) else {
            throw ObjectStoreError(.presignRefused, "the URL is not an upload's")
        }
        // Once stored, an object is not replaced through a URL still within its five minutes
        // (a completed file, a signed consent, stays what was completed): refused at once when
        // it is there, and by the store's own create-only placement when two PUTs race.
        guard try await store.head(key) == nil else { throw RequestError(.conflict, "the object was uploaded already") }
        let upload = try await store.beginUpload(key, options: ObjectPutOptions(contentType: type, ifAbsent: true))
        var received = 0
        do {
            for try await chunk in request.body {
                received += chunk.readableBytes
                guard received <= length else { throw RequestError(.invalidField, "the body is longer than the signed content length") }
                try await upload.write(Array(chunk.readableBytesView))
            }
            guard received == length else { throw RequestError(.invalidField, "the body is shorter than the signed content length") }
            _ = try await upload.complete()
        } catch {
            await upload.abort()
            throw error
        }
        return Response(status: .ok)
    }
    router.get(path) { request, context -> Response in
        let (key, query) = try target(request, context)
        _ = try store.verifyPresigned(method: "GET", key: key, query: query, headers: [:])
        guard let info = try await store.head(key) else { throw RequestError(.notFound, "no such object") }
        let chunk = 1 << 20
        return Response(
            // Served from the API's own origin: never rendered in it (no sniffing, a download).
            status: .ok, headers: [
                .contentType: info.contentType ?? "application/octet-stream", .cacheControl: "private, no-store",
                HTTPField.Name("X-Content-Type-Options")!: "nosniff", HTTPField.Name("Content-Disposition")!: "attachment",
            ],
            body: ResponseBody(contentLength: info.size) { writer in
                // In ranges of a megabyte: a large video never sits whole in memory.
                var offset = 0
                while offset < info.size {
                    let bytes = try await store.read(key, range: offset..<min(offset + chunk, info.size)) ?? []
                    guard !bytes.isEmpty else { break }
                    try await writer.write(ByteBuffer(bytes: bytes))
                    offset += bytes.count
                }
                try await writer.finish(nil)
            }
        )
    }
}
