import Foundation
import Hummingbird
import HTTPTypes
import RestartixKit
import RestartixProviders
import RestartixTenancy
import ServiceSupport

/// A provider row as the admin routes show it: settings, health and version; the secrets by
/// name only, never a value.
struct ProviderBody: ResponseCodable, Equatable {
    let capability: String
    let organization_id: String?
    let provider_kind: String
    let config: [String: String]
    /// The names of the secrets set (`api_key`, ...), never their values.
    let secrets: [String]
    let status: String
    let version: Int
    let last_checked_at: String?
    let last_error: String?
    let updated_at: String

    init(_ record: ProviderRecord) {
        capability = record.capability.name
        organization_id = record.organizationID?.lowercasedString
        provider_kind = record.kind.name
        config = record.config
        secrets = record.secrets.values.filter { !$0.value.isEmpty }.keys.sorted()
        status = record.status.rawValue
        version = record.version
        last_checked_at = record.lastCheckedAt.map(APITime.string)
        last_error = record.lastError
        updated_at = APITime.string(record.updatedAt)
    }
}

/// `GET /v1/admin/platform-service-providers`' answer.
struct ProviderList: ResponseCodable, Equatable {
    let providers: [ProviderBody]
}

/// `PATCH /v1/admin/platform-service-providers/{capability}`'s body: what changes; a field left
/// out keeps its value, a given `config` or `secrets` replaces that whole object.
struct ProviderPatch: Decodable, Sendable {
    let provider_kind: String?
    let config: [String: String]?
    let secrets: [String: String]?

    /// Each field may be absent (left as it is), never `null` (the document's rule).
    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        provider_kind = try JSONBodyDecoder.optional(String.self, .provider_kind, in: container)
        config = try JSONBodyDecoder.optional([String: String].self, .config, in: container)
        secrets = try JSONBodyDecoder.optional([String: String].self, .secrets, in: container)
    }

    enum CodingKeys: String, CodingKey { case provider_kind, config, secrets }
}

/// `If-Match` names another version than the row's (412), or is missing (428).
struct PreconditionError: RestartixError, ProblemHeaders {
    static let domain = "request"
    let missing: Bool
    let current: Int?

    var codeName: String { missing ? "preconditionRequired" : "preconditionFailed" }
    var safeDetail: String {
        missing ? "send If-Match with the provider's ETag (its version) from a GET" : "the provider changed since that version; GET it again"
    }
    var httpStatus: Int { missing ? 428 : 412 }
    var description: String { restartixDescription }
    var problemHeaders: HTTPFields { current.map { [.eTag: "\"\($0)\""] } ?? [:] }
}

/// The platform administrators' provider routes (`/v1/admin`, ``PlatformAdminAuthMiddleware``):
/// list every Cat A provider row (secrets by name only) and rotate one
/// (``ProviderResolver/rotate(_:organization:kind:config:secrets:expectedVersion:actor:admin:)``:
/// validated, re-sealed, audited with the fields that changed, every instance's resolver
/// invalidated), guarded by `If-Match` on the row's version.
func addAdminProviderRoutes(to group: RouterGroup<CoreRequestContext>, providers: ProviderResolver, admin: AdminDatabase) {
    group.get("platform-service-providers") { _, _ -> ProviderList in
        ProviderList(providers: try await providers.registry.all().map(ProviderBody.init))
    }
    group.patch("platform-service-providers/{capability}") { request, context -> Response in
        guard let user = context.platformAdmin else { throw RequestError(.missingToken, "send Authorization: Bearer <token>") }
        let capability: ProviderCapability
        do { capability = try ProviderCapability(context.parameters.get("capability") ?? "") } catch {
            throw RequestError(.invalidField, "capability must be 1-32 characters of a-z, 0-9 and _, starting with a letter")
        }
        var organization: UUID?
        if let text = request.uri.queryParameters["organization_id"] {
            organization = try uuid(String(text), field: "organization_id")
        }
        guard let ifMatch = request.headers[.ifMatch] else { throw PreconditionError(missing: true, current: nil) }
        // An entity tag as RFC 9110 writes it: "7", or W/"7" (weak tags compare the same here).
        let tag = ifMatch.hasPrefix("W/") ? ifMatch.dropFirst(2) : Substring(ifMatch)
        let digits = tag.dropFirst().dropLast()
        guard tag.count >= 3, tag.count <= 20, tag.first == "\"", tag.last == "\"", digits.allSatisfy({ $0.isASCII && $0.isNumber }),
            let expected = Int(digits)
        else {
            throw RequestError(.invalidField, "If-Match must be the provider's ETag, its version in quotes")
        }
        let patch = try await request.decode(as: ProviderPatch.self, context: context)
        var kind: ProviderKind?
        if let name = patch.provider_kind {
            do { kind = try ProviderKind(name) } catch { throw RequestError(.invalidField, "provider_kind must be 1-32 characters of a-z, 0-9 and _, starting with a letter") }
        }
        let record: ProviderRecord
        do {
            record = try await providers.rotate(
                capability, organization: organization, kind: kind, config: patch.config, secrets: patch.secrets.map { ProviderSecrets($0) },
                expectedVersion: expected, actor: .user(user), admin: admin
            )
        } catch let error as ProviderError where error.code == .versionConflict {
            throw PreconditionError(missing: false, current: try? await providers.registry.lookup(capability, organization: organization)?.version)
        }
        var response = try context.responseEncoder.encode(ProviderBody(record), from: request, context: context)
        response.headers[.eTag] = "\"\(record.version)\""
        return response
    }
}
