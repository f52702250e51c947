import Metrics
import MetricsTestKit

/// One `TestMetrics` for the whole test process, bootstrapped on first use (the metrics system
/// takes one bootstrap per process). Metrics made before that go nowhere, which no test reads.
enum TestMetricsSupport {
    static let metrics: TestMetrics = {
        let metrics = TestMetrics()
        MetricsSystem.bootstrap(metrics)
        return metrics
    }()

    /// The total of counter `label` so far (0 when it was never made).
    static func total(_ label: String) -> Int64 {
        (try? metrics.expectCounter(label).totalValue) ?? 0
    }
}
