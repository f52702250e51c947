import Foundation
import Hummingbird
import Logging
import Prometheus
import RestartixKit
import RestartixTelemetryIngest
import ServiceLifecycle
import ServiceSupport

/// Builds the Telemetry API: the object stores (the telemetry bucket or its local directory;
/// the spool's directory), the engine (``TelemetryIngest``) delivering to the Core API, and the
/// routes behind the services' shared edge. The engine runs beside the server as a service:
/// on SIGTERM the server stops taking requests and finishes the ones in flight, then the
/// engine stops (open sessions stay in the spool, where the next process resumes them).
func buildApplication(
    configuration: TelemetryAPIConfiguration, metrics: PrometheusCollectorRegistry? = nil, sink: (any AggregatesSink)? = nil,
    logger: Logger = Logger(label: "restartix.telemetry-api")
) async throws -> some ApplicationProtocol {
    let (store, _) = try await configuration.service.objectStore(what: "telemetry", bucket: configuration.bucket, directory: configuration.directory)
    let spool: DirectorySpool
    do { spool = try DirectorySpool(directory: URL(fileURLWithPath: configuration.spoolDirectory)) } catch {
        throw ConfigurationError(.invalidValue, "the telemetry spool directory \(configuration.spoolDirectory) cannot be used: \(error.detail)")
    }
    let ingest = TelemetryIngest(
        spool: spool, store: store,
        sink: sink ?? CoreAPIAggregatesClient(baseURL: configuration.coreAPIURL, tokens: configuration.serviceAccounts),
        configuration: configuration.ingest, logger: logger
    )
    let router = makeRouter(configuration: configuration, ingest: ingest, spool: spool, store: store, metrics: metrics)
    return Application(
        router: router,
        server: .http1(configuration: .services),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "restartix-telemetry-api"),
        services: [IngestService(ingest: ingest)],
        logger: logger
    )
}

/// The Telemetry API's routes behind the services' shared edge (``TelemetryOpenAPIDocument``
/// lists them): health, readiness (taking work, the spool listed, the object store answering),
/// metrics, the document, and the session routes (``SessionRoutes``).
func makeRouter(
    configuration: TelemetryAPIConfiguration, ingest: TelemetryIngest, spool: DirectorySpool, store: any ObjectStore, metrics: PrometheusCollectorRegistry?
) -> Router<TelemetryRequestContext> {
    let router = Router(context: TelemetryRequestContext.self, options: .autoGenerateHeadEndpoints)
    let slot = addServiceEdge(to: router, options: configuration.edge)
    if let metrics { addMetricsRoute(to: router, registry: metrics, access: configuration.edge.metricsAccess, trustedProxies: configuration.edge.trustedProxies) }
    router.get("openapi.json") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: TelemetryOpenAPIDocument.json)))
    }
    router.get("health") { _, _ -> Response in
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
    }
    // Ready while it takes work, the spool can be listed and the object store answers; the two
    // stores are looked at once per interval however often the unauthenticated probe asks.
    let probe = try! ObjectKey("ready-probe")
    let readiness = Readiness(checks: [
        {
            do throws(TelemetryIngestError) { _ = try spool.sessions(); return [] } catch { return ["the spool cannot be listed (\(error.codeName))"] }
        },
        {
            do throws(ObjectStoreError) { _ = try await store.head(probe); return [] } catch {
                return ["the object store does not answer (\(error.codeName))"]
            }
        },
    ])
    router.get("ready") { _, _ -> Response in
        guard ingest.isAccepting else { throw RetryLater(error: TelemetryIngestError(.draining, "the service is shutting down"), after: .seconds(5)) }
        guard let problems = await readiness.problems(waitingUntil: .now + .milliseconds(900)) else {
            throw TelemetryIngestError(.storage, "the stores have not been checked yet")
        }
        if let problem = problems.first { throw TelemetryIngestError(.storage, problem) }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: #"{"status":"ready"}"#)))
    }
    SessionRoutes.add(to: router, ingest: ingest, tokens: configuration.sessionTokens, retryAfter: configuration.retryAfter)
    finishServiceEdge(router, slot: slot)
    return router
}

/// The engine's background work (idle sessions, deliveries) for as long as the application
/// runs; on graceful shutdown (after the server has drained) it stops taking batches and waits
/// for the ones being stored.
struct IngestService: Service {
    let ingest: TelemetryIngest

    func run() async throws {
        let worker = Task { await ingest.run() }
        try? await gracefulShutdown()
        worker.cancel()
        await ingest.drain()
        await worker.value
    }
}
