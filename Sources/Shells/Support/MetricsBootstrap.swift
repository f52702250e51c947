public import Hummingbird
import Metrics
public import Prometheus

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

/// `GET /metrics` on `router`: the Prometheus text exposition of `registry`.
public func addMetricsRoute<Context: RequestContext>(to router: Router<Context>, registry: PrometheusCollectorRegistry) {
    router.get("metrics") { _, _ -> Response in
        Response(
            status: .ok,
            headers: [.contentType: MetricsBootstrap.contentType],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
        )
    }
}
