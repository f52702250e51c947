import Foundation
public import Hummingbird
public import HTTPTypes
public import Logging
public import RestartixKit
import Synchronization

/// A request context that carries the request's id: what the shared middleware needs.
public protocol IdentifiedRequestContext: RequestContext, Sendable {
    /// The request's id: the client's `X-Request-Id` when it is sane, else a new UUIDv7.
    var requestID: String { get set }
    /// The connection's peer address (`nil` in an in-process test): set from the channel
    /// when the context is made.
    var peerAddress: String? { get }
    /// The client's address, set by the edge from ``peerAddress`` and, from a trusted proxy,
    /// its forwarding headers (``TrustedProxies/clientAddress(peer:headers:)``): what audit
    /// rows record. Never logged.
    var clientAddress: String? { get set }
    /// Principal ids for the access log line (`organization_id`, `user_id`, `role`), set by
    /// the authentication middleware; never a token or a name. A reference the context
    /// carries, so what a middleware deeper in the chain records reaches the edge's log line
    /// (contexts are values: a copy changed below is not seen above).
    var principal: RequestPrincipal { get }
}

/// The principal's ids for the access log line, filled in by the authentication middleware.
public final class RequestPrincipal: Sendable {
    private let storage = Mutex<Logger.Metadata>([:])

    public init() {}

    /// The ids recorded so far.
    public var metadata: Logger.Metadata { storage.withLock { $0 } }

    /// Records the principal's ids (never a token, a name or an e-mail).
    public func record(_ metadata: Logger.Metadata) { storage.withLock { $0 = metadata } }
}

extension HTTPField.Name {
    /// `X-Request-Id`.
    public static let requestID = Self("X-Request-Id")!
}

/// The outermost middleware of the services: gives every request an id (a sane
/// `X-Request-Id` from the client, 1 to 128 characters of letters, digits and `-._:`, else a
/// new UUIDv7), echoes it in the response, puts it on the request's logger, answers every
/// error as RFC 9457 problem+json (``Problem``), and writes one access log line per request:
/// id, method, route template (never the path: it holds ids), status, duration, principal
/// ids. Never a query string, a header value or a body.
public struct ServiceEdgeMiddleware<Context: IdentifiedRequestContext>: RouterMiddleware {
    let trustedProxies: TrustedProxies

    /// The edge, believing forwarding headers from `trustedProxies` only.
    public init(trustedProxies: TrustedProxies = .none) {
        self.trustedProxies = trustedProxies
    }

    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.requestID = Self.requestID(from: request.headers[.requestID])
        context.clientAddress = trustedProxies.clientAddress(peer: context.peerAddress, headers: request.headers)
        context.logger[metadataKey: "request_id"] = .string(context.requestID)
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            let problem = Problem(for: error, requestId: context.requestID)
            if problem.status >= 500 {
                context.logger.error("Request failed", metadata: ["error": .string(safeDescription(of: error))])
            }
            var extra: HTTPFields = (error as? HTTPError)?.headers ?? (error as? any ProblemHeaders)?.problemHeaders ?? [:]
            if problem.status == 401, extra[.wwwAuthenticate] == nil { extra[.wwwAuthenticate] = "Bearer" }
            response = problem.response(headers: extra)
        }
        response.headers[.requestID] = context.requestID
        var metadata: Logger.Metadata = [
            "http.method": .string(request.method.rawValue),
            "http.route": .string(context.endpointPath ?? "unmatched"),
            "http.status": .string(String(response.status.code)),
            "duration_ms": .string(Self.tenths(Self.milliseconds(ContinuousClock.now - start))),
        ]
        metadata.merge(context.principal.metadata) { $1 }
        context.logger.info("Request", metadata: metadata)
        return response
    }

    /// The client's id when it is 1 to 128 characters of letters, digits and `-._:`; else a
    /// new UUIDv7 (an id that could break a log line or hide another is never echoed).
    public static func requestID(from header: String?) -> String {
        if let header, (1...128).contains(header.utf8.count),
            header.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 45 || $0 == 46 || $0 == 95 || $0 == 58 })
        {
            return header
        }
        return UUIDv7.generate().lowercasedString
    }

    /// `value` with one decimal, "12.3". (Not `String(format:)`: Foundation's formatter on Linux
    /// cost a tenth of the Core API's `/health` throughput, once per access log line.)
    static func tenths(_ value: Double) -> String {
        let tenths = Int((Swift.max(0, value) * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }
}

/// Thrown by ``MethodNotAllowedResponder``: the path exists for other methods.
public struct MethodNotAllowed: RestartixError, ProblemHeaders {
    /// The `Allow` header's value.
    public let allow: String
    public var problemHeaders: HTTPFields { [.allow: allow] }
    public static var domain: String { "http" }
    public var codeName: String { "methodNotAllowed" }
    public var safeDetail: String { "this path accepts \(allow)" }
    public var httpStatus: Int { 405 }
    public var isTransient: Bool { false }
    public var description: String { restartixDescription }
}

/// A route table's answer to "which methods does this path take?", from the router's own
/// list of routes (`Router.routes`): Hummingbird answers 404 for a known path asked with
/// another method; the services answer 405 with `Allow`, as RFC 9110 says.
public struct RouteTable: Sendable {
    /// Each route's components, how literal each is (``rank(_:)``, worked out once), and method.
    let routes: [(components: [Substring], ranks: [Int], method: String)]

    /// The table of `routes` (`router.routes.map { ($0.path.description, $0.method.rawValue) }`).
    public init(_ routes: [(path: String, method: String)]) {
        self.routes = routes.map { route in
            let components = route.path.split(separator: "/")
            return (components: components, ranks: components.map(Self.rank), method: route.method)
        }
    }

    /// The methods `path` is routed for (HEAD with GET), sorted; empty for an unknown path.
    ///
    /// Hummingbird's router finds the route by the path alone, a literal component before a
    /// capture before a wildcard, and only then looks at the method; so when a path matches
    /// several patterns (`/v1/patients/search` and `/v1/patients/{id}`), its methods are those
    /// of the most literal one: PATCH of `/v1/patients/search` is a 405, though
    /// `/v1/patients/{id}` takes PATCH.
    public func methods(for path: String) -> [String] {
        let parts = path.split(separator: "/")
        var best: [Int]?
        var methods = Set<String>()
        for route in routes where Self.matches(route.components, route.ranks, parts) {
            if let current = best, route.ranks == current {
                methods.insert(route.method)
            } else if best.map({ $0.lexicographicallyPrecedes(route.ranks) }) ?? true {
                best = route.ranks
                methods = [route.method]
            }
        }
        if methods.contains("GET") { methods.insert("HEAD") }
        return methods.sorted()
    }

    /// How literal a pattern component is: 2 a literal, 1 a capture (`:id`, `{id}`), 0 a
    /// wildcard (`*` one component, `**` the rest of the path).
    static func rank(_ component: Substring) -> Int {
        if component == "**" || component == "*" { return 0 }
        if component.hasPrefix(":") || (component.hasPrefix("{") && component.hasSuffix("}")) { return 1 }
        return 2
    }

    static func matches(_ pattern: [Substring], _ ranks: [Int], _ parts: [Substring]) -> Bool {
        var index = 0
        for (position, component) in pattern.enumerated() {
            if component == "**" { return true }
            guard index < parts.count else { return false }
            if ranks[position] == 2, component != parts[index] { return false }
            index += 1
            if position == pattern.count - 1 { return index == parts.count }
        }
        return pattern.isEmpty && parts.isEmpty
    }
}

/// Where the router answers 404 for a path that other methods take, throws
/// ``MethodNotAllowed`` instead (405 with `Allow` through ``ServiceEdgeMiddleware``). Add it
/// before the routes (router middleware wraps only what is added after it, and the not-found
/// answer); give it the finished table with ``RouteTableSlot/set(_:)`` once they are added.
public struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let slot: RouteTableSlot

    public init(_ slot: RouteTableSlot) { self.slot = slot }

    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let methods = slot.table.methods(for: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method.rawValue) else { throw error }
            throw MethodNotAllowed(allow: methods.joined(separator: ", "))
        }
    }
}

/// The route table, set once the routes are added.
public final class RouteTableSlot: Sendable {
    private let storage = Mutex(RouteTable([]))

    public init() {}

    /// The table (empty until set).
    public var table: RouteTable { storage.withLock { $0 } }

    /// Sets the table: `slot.set(RouteTable(router.routes.map { ($0.path.description, $0.method.rawValue) }))`.
    public func set(_ table: RouteTable) { storage.withLock { $0 = table } }
}

/// A request context with the request's id and no principal: for services whose routes need
/// nothing more (the Telemetry API's health and metrics so far).
public struct ServiceRequestContext: IdentifiedRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var requestID = ""
    public let principal = RequestPrincipal()
    public let peerAddress: String?
    public var clientAddress: String?

    public init(source: Source) {
        coreContext = .init(source: source)
        peerAddress = source.channel.remoteAddress?.ipAddress
    }
}

/// Puts the services' shared edge on `router`, before any route, outermost first: request
/// counts and latency by route template and status (``RequestMetricsMiddleware``, outermost so
/// it counts the answer the client got); CORS for the configured origins
/// (``AllowListCORSMiddleware``); request ids, the client's address, problem+json errors and
/// the access log line (``ServiceEdgeMiddleware``); maintenance mode
/// (``MaintenanceMiddleware``); the request timeout (``RequestTimeoutMiddleware``); 405 with
/// `Allow` (``MethodNotAllowedMiddleware``). Call ``finishServiceEdge(_:slot:)`` with the
/// returned slot once every route is added.
public func addServiceEdge<Context: IdentifiedRequestContext>(to router: Router<Context>, options: EdgeOptions = EdgeOptions()) -> RouteTableSlot {
    let slot = RouteTableSlot()
    router.add(middleware: RequestMetricsMiddleware(factory: options.metricsFactory))
    // Outside the edge: it sees the answer the edge made of any error, and adds its headers.
    if !options.corsOrigins.isEmpty { router.add(middleware: AllowListCORSMiddleware(origins: options.corsOrigins)) }
    router.add(middleware: ServiceEdgeMiddleware(trustedProxies: options.trustedProxies))
    if let maintenance = options.maintenance { router.add(middleware: MaintenanceMiddleware(maintenance)) }
    router.add(middleware: RequestTimeoutMiddleware(options.requestTimeout))
    router.add(middleware: MethodNotAllowedMiddleware(slot))
    return slot
}

/// Gives the edge's 405 check the router's finished route table.
public func finishServiceEdge<Context: RequestContext>(_ router: Router<Context>, slot: RouteTableSlot) {
    slot.set(RouteTable(router.routes.map { ($0.path.description, $0.method.rawValue) }))
}
