public import Metrics
public import Hummingbird
import HTTPTypes
import Synchronization

/// Request counts and latency by route template, method and status, and requests in flight by
/// method: the series Hummingbird's `MetricsMiddleware` records, under the same names
/// (`hb.requests`, `http.server.request.duration`, `hb.request.errors`,
/// `http.server.active_requests`; `hb_requests` and `http_server_request_duration` in
/// Prometheus text) so that dashboards do not care which one runs.
///
/// Why not Hummingbird's own: it records after the body is written by wrapping every response
/// body in a closure, and a closure body loses Hummingbird's fast path, which writes the head,
/// a buffered body and the end to the connection in one hand-off to its event loop; wrapped,
/// that is three hand-offs, each able to wake the event loop's thread. On the Core API's
/// `/health` that was measured (Benchmarks/service-footprint) as a third of the middleware
/// stack's cost. This one records when the response leaves the middleware, so the duration is
/// the handling up to a ready response: for buffered answers (every Core API answer) the whole
/// of it; for a streamed body, without the streaming.
public struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let cache: RequestMetricsCache

    /// Records through `factory` (the process's `MetricsSystem.factory` by default).
    public init(factory: (any MetricsFactory)? = nil) {
        cache = RequestMetricsCache(factory: factory ?? MetricsSystem.factory)
    }

    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let active = cache.active(request.method)
        active.increment()
        defer { active.decrement() }
        do {
            let response = try await next(request, context)
            let series = cache.endpoint(context.endpointPath ?? "Unknown", request.method, response.status)
            series.counter.increment()
            series.timer.recordNanoseconds(Self.nanoseconds(ContinuousClock.now - start))
            return response
        } catch {
            // Only an error that nothing inside turned into an answer reaches here (the
            // services' edge answers every error, so behind it this does not happen).
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            let series = cache.endpoint(context.endpointPath ?? "NotFound", request.method, status)
            series.counter.increment()
            series.errors.increment()
            throw error
        }
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// The metric handles of ``RequestMetricsMiddleware``, made once per series.
final class RequestMetricsCache: Sendable {
    struct Series: Sendable {
        let counter: Counter
        let timer: CoreMetrics.Timer
        let errors: Counter
    }

    struct Key: Hashable {
        let route: String
        let method: HTTPRequest.Method
        let status: Int
    }

    let factory: any MetricsFactory
    private let endpoints = Mutex<[Key: Series]>([:])
    private let methods = Mutex<[HTTPRequest.Method: Meter]>([:])

    init(factory: any MetricsFactory) {
        self.factory = factory
    }

    func active(_ method: HTTPRequest.Method) -> Meter {
        methods.withLock { meters in
            if let meter = meters[method] { return meter }
            let meter = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.rawValue)], factory: factory)
            meters[method] = meter
            return meter
        }
    }

    func endpoint(_ route: String, _ method: HTTPRequest.Method, _ status: HTTPResponse.Status) -> Series {
        let key = Key(route: route, method: method, status: status.code)
        return endpoints.withLock { series in
            if let found = series[key] { return found }
            let dimensions = [("http.route", route), ("http.request.method", method.rawValue), ("http.response.status_code", String(status.code))]
            let made = Series(
                counter: Counter(label: "hb.requests", dimensions: dimensions, factory: factory),
                timer: CoreMetrics.Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds, factory: factory),
                errors: Counter(
                    label: "hb.request.errors",
                    dimensions: [("http.route", route), ("http.request.method", method.rawValue), ("error.type", String(status.code))], factory: factory
                )
            )
            series[key] = made
            return made
        }
    }
}
