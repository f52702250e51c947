import Foundation
import Hummingbird
import RestartixKit
import RestartixPlatform
import ServiceSupport

/// `GET /v1/public/organizations/resolve`'s answer.
struct ResolvedOrganizationBody: ResponseCodable, Equatable {
    let organization_id: String
    let slug: String
    let name: String
    /// `subdomain` or `custom`.
    let via: String
    /// For a subdomain: the platform suffix it was under.
    let surface: String?
}

/// `GET /v1/public/organizations/resolve?domain=`: which active clinic a web address belongs
/// to (``OrganizationDirectory``: platform subdomains and verified custom domains, cached
/// aside). No token: the apps ask before anyone signs in; rate limited per client address.
/// 404 `request.notFound` for an address of no active clinic; 400 for one that is not a host
/// name.
func addPublicRoutes(to group: RouterGroup<CoreRequestContext>, directory: OrganizationDirectory) {
    group.get("organizations/resolve") { request, _ -> ResolvedOrganizationBody in
        guard let domain = request.uri.queryParameters["domain"], !domain.isEmpty else {
            throw RequestError(.invalidField, "domain is required: the host name the app was opened at")
        }
        guard let resolved = try await directory.resolve(domain: String(domain)) else {
            throw RequestError(.notFound, "no active clinic at this address")
        }
        return ResolvedOrganizationBody(
            organization_id: resolved.organizationID.lowercasedString, slug: resolved.slug, name: resolved.name,
            via: resolved.via, surface: resolved.surface
        )
    }
}
