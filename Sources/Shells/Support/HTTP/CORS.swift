public import Hummingbird
import HTTPTypes
import Foundation
public import RestartixKit

/// CORS for the configured app origins only (`CORS_ALLOWED_ORIGINS`): a request whose `Origin`
/// is on the list gets the origin echoed, `Vary: Origin`, and its preflight answered 204 with
/// the methods and headers the API takes; any other passes through with no CORS header, so a
/// browser on another origin cannot read the answer. (Hummingbird's `CORSMiddleware` takes its
/// allow-list only as a variadic literal, not from configuration, and cannot be delegated to
/// per request from a middleware of this package's isolation; the headers are the same.)
public struct AllowListCORSMiddleware<Context: RequestContext>: RouterMiddleware {
    let origins: Set<String>
    static var allowMethods: String { "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS" }
    static var allowHeaders: String { "Accept, Authorization, Content-Type, Origin, X-Request-Id, If-Match, If-None-Match" }
    static var exposedHeaders: String { "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, ETag" }

    /// CORS for `origins` (exact `scheme://host[:port]` strings, lower case). Bearer tokens
    /// travel in `Authorization`, not cookies, so credentials are not allowed.
    public init(origins: [String]) {
        self.origins = Set(origins)
    }

    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], origins.contains(origin.lowercased()) else {
            return try await next(request, context)
        }
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(status: .noContent, headers: [
                .accessControlAllowOrigin: origin, .accessControlAllowMethods: Self.allowMethods,
                .accessControlAllowHeaders: Self.allowHeaders, .accessControlMaxAge: "600", .vary: "Origin",
            ])
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = origin
        response.headers[.accessControlExposeHeaders] = Self.exposedHeaders
        response.headers[values: .vary].append("Origin")
        return response
    }
}

extension ServiceEnvironment {
    /// `CORS_ALLOWED_ORIGINS`: comma-separated origins (`https://app.example.com`, scheme, host
    /// and an optional port; no path, no wildcard) whose browsers may call the API; none by
    /// default.
    public func corsOrigins() throws(ConfigurationError) -> [String] {
        guard let text = string("CORS_ALLOWED_ORIGINS") else { return [] }
        var origins: [String] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            guard let components = URLComponents(string: item), let scheme = components.scheme, ["http", "https"].contains(scheme),
                let host = components.host, !host.isEmpty, components.path.isEmpty, components.query == nil, components.fragment == nil,
                components.user == nil, components.password == nil
            else {
                throw ConfigurationError(.invalidValue, "CORS_ALLOWED_ORIGINS lists origins such as https://app.example.com (scheme, host, optional port; no path or wildcard)")
            }
            origins.append(item.lowercased())
        }
        return origins
    }
}
