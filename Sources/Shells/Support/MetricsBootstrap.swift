import Crypto
import Foundation
public import HTTPTypes
public import Hummingbird
import Metrics
public import Prometheus
public import RestartixKit

/// The one metrics bootstrap of the executables: swift-metrics backed by swift-prometheus, so
/// what the libraries already emit (pool gauges per role, the provider resolver's and the
/// rate limiter's counters, the cipher's) is served at `/metrics` in Prometheus text.
public enum MetricsBootstrap {
    /// The `Content-Type` of the Prometheus text exposition format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Bootstraps swift-metrics for the process (once: the metrics system takes one bootstrap)
    /// and returns the registry `/metrics` renders.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}

/// Who may read `/metrics`. The exposition names routes, pools and counters, never data, but
/// it tells an outsider how busy each route is and what fails: it is not served to the public
/// listener's clients unless they hold the token.
public enum MetricsAccess: Sendable, Equatable, CustomStringConvertible, CustomReflectable {
    /// A scraper presenting `Authorization: Bearer <token>` (`METRICS_TOKEN`), from anywhere.
    case bearer(String)
    /// Loopback peers only (an operator on the machine, a scraper beside the process), and only
    /// requests without a forwarding header: a reverse proxy on the same machine forwards the
    /// public's requests from loopback too, and most say so (`X-Forwarded-For`, `Forwarded`,
    /// `Via`...). A proxy that adds none cannot be told apart, so this is the default in
    /// development and test only; staging and production need `METRICS_TOKEN`.
    case loopback
    /// Not served (staging or production without `METRICS_TOKEN`): 403 `metrics.notConfigured`.
    case disabled

    /// The mode, never the token.
    public var description: String {
        switch self {
        case .bearer: "MetricsAccess.bearer(<token>)"
        case .loopback: "MetricsAccess.loopback"
        case .disabled: "MetricsAccess.disabled"
        }
    }

    /// `dump()` and debuggers see the description only.
    public var customMirror: Mirror { Mirror(self, children: ["description": description], displayStyle: .enum) }

    /// The headers that say a request was forwarded by a proxy.
    static let forwardingHeaders: [HTTPField.Name] = [
        "X-Forwarded-For", "Forwarded", "CF-Connecting-IP", "X-Real-IP", "Via", "X-Forwarded-Host", "X-Forwarded-Proto", "True-Client-IP", "X-Client-IP",
    ].map { HTTPField.Name($0)! }

    /// Whether a request from `peer` (the connection's address; nil when there is none to
    /// read, which is refused) with `headers` may read the metrics; the error says why not.
    /// A loopback peer inside `trustedProxies` is a proxy by the operator's own word: refused.
    func check(peer: String?, headers: HTTPFields, trustedProxies: TrustedProxies = .none) -> MetricsRefused? {
        switch self {
        case .bearer(let token):
            guard let presented = try? bearerToken(headers), Self.equal(presented, token) else { return MetricsRefused(.tokenRequired) }
            return nil
        case .loopback:
            guard let peer, Self.isLoopback(peer), let bytes = IPAddress.parse(peer), !trustedProxies.contains(bytes) else {
                return MetricsRefused(.notLoopback)
            }
            if Self.forwardingHeaders.contains(where: { headers[$0] != nil }) { return MetricsRefused(.notLoopback) }
            return nil
        case .disabled:
            return MetricsRefused(.notConfigured)
        }
    }

    /// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
    static func isLoopback(_ address: String) -> Bool {
        // IPAddress.parse reads an IPv4-mapped IPv6 address as its IPv4 address.
        guard let bytes = IPAddress.parse(address) else { return false }
        return bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }

    /// Compares the SHA-256 digests in constant time, so neither the token's bytes nor its
    /// length show in the timing.
    static func equal(_ presented: String, _ token: String) -> Bool {
        let a = SHA256.hash(data: Data(presented.utf8)), b = SHA256.hash(data: Data(token.utf8))
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

/// `/metrics` refused to this caller (``MetricsAccess``): 401 without the token (the edge adds
/// `WWW-Authenticate: Bearer`), 403 off loopback.
public typealias MetricsRefused = DomainError<MetricsErrorDomain>

/// The `metrics` error domain.
public enum MetricsErrorDomain: ErrorDomain {
    public static let name = "metrics"

    public static func httpStatus(for code: ErrorCode<MetricsErrorDomain>) -> Int { code == .tokenRequired ? 401 : 403 }
}

extension ErrorCode where Domain == MetricsErrorDomain {
    /// `METRICS_TOKEN` is set and the request does not present it (401).
    public static var tokenRequired: Self { Self("tokenRequired") }
    /// No `METRICS_TOKEN`: only loopback peers without forwarding headers are served (403).
    public static var notLoopback: Self { Self("notLoopback") }
    /// Staging or production without `METRICS_TOKEN`: not served (403).
    public static var notConfigured: Self { Self("notConfigured") }
}

extension DomainError where Domain == MetricsErrorDomain {
    /// A refusal of `code`, with the sentence that says what to do about it.
    public init(_ code: Code) {
        let detail = switch code {
        case .tokenRequired: "the metrics need Authorization: Bearer with the deployment's METRICS_TOKEN"
        case .notLoopback: "the metrics are served to this machine's loopback only; set METRICS_TOKEN to scrape them from elsewhere"
        default: "the metrics need METRICS_TOKEN in staging and production"
        }
        self.init(code, detail)
    }
}

extension ServiceEnvironment {
    /// `METRICS_TOKEN`: with it, `/metrics` needs it as a bearer token (at least 32 characters);
    /// without it, only loopback peers are served in development and test
    /// (``MetricsAccess/loopback``), and nobody in staging and production.
    public func metricsAccess() throws(ConfigurationError) -> MetricsAccess {
        guard let token = string("METRICS_TOKEN") else {
            let deployment = try deployment()
            return deployment == .staging || deployment == .production ? .disabled : .loopback
        }
        guard token.count >= 32, token.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw ConfigurationError(.invalidValue, "METRICS_TOKEN must be at least 32 printable ASCII characters without spaces")
        }
        return .bearer(token)
    }
}

/// `GET /metrics` on `router`: the Prometheus text exposition of `registry`, to the callers
/// `access` admits (``MetricsAccess``); others get a problem (401 or 403) and no figures.
public func addMetricsRoute<Context: IdentifiedRequestContext>(
    to router: Router<Context>, registry: PrometheusCollectorRegistry, access: MetricsAccess, trustedProxies: TrustedProxies = .none
) {
    router.get("metrics") { request, context -> Response in
        if let refused = access.check(peer: context.peerAddress, headers: request.headers, trustedProxies: trustedProxies) { throw refused }
        return Response(
            status: .ok,
            headers: [.contentType: MetricsBootstrap.contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
        )
    }
}
