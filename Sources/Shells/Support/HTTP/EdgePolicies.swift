public import Metrics
public import Hummingbird
public import HTTPTypes
import Foundation
public import RestartixKit
import Synchronization

/// What the services' shared edge does besides ids, errors and the access log
/// (``addServiceEdge(to:options:)``); each field has its environment variable
/// (``ServiceEnvironment/edgeOptions()``).
public struct EdgeOptions: Sendable {
    /// `CORS_ALLOWED_ORIGINS`: the app origins whose browsers may call the API.
    public var corsOrigins: [String]
    /// `TRUSTED_PROXY_CIDRS`: whose forwarding headers name the client.
    public var trustedProxies: TrustedProxies
    /// `REQUEST_TIMEOUT_SECONDS`: the longest a request may take (30 s by default).
    public var requestTimeout: Duration
    /// `MAINTENANCE_MODE`: when set, every route but `/health` answers 503.
    public var maintenance: Maintenance?
    /// `METRICS_TOKEN`: who may read `/metrics` (loopback peers only by default).
    public var metricsAccess: MetricsAccess
    /// Where request counts and latency go: the process's `MetricsSystem.factory` when nil
    /// (tests pass their own; the metrics system takes one bootstrap per process).
    public var metricsFactory: (any MetricsFactory)?

    /// The default request timeout: 30 seconds.
    public static let defaultRequestTimeout: Duration = .seconds(30)

    public init(
        corsOrigins: [String] = [], trustedProxies: TrustedProxies = .none, requestTimeout: Duration = Self.defaultRequestTimeout,
        maintenance: Maintenance? = nil, metricsAccess: MetricsAccess = .loopback, metricsFactory: (any MetricsFactory)? = nil
    ) {
        self.metricsAccess = metricsAccess
        self.corsOrigins = corsOrigins
        self.trustedProxies = trustedProxies
        self.requestTimeout = requestTimeout
        self.maintenance = maintenance
        self.metricsFactory = metricsFactory
    }
}

/// Maintenance mode: every route but `/health` (the process is up; the load balancer must not
/// replace it) answers 503 `service.maintenance` with `Retry-After`. `/ready` answers 503 too,
/// so a load balancer stops sending traffic.
public struct Maintenance: Sendable, Hashable {
    /// What `Retry-After` says. Default: 300 seconds.
    public var retryAfter: Duration

    public init(retryAfter: Duration = .seconds(300)) {
        self.retryAfter = retryAfter
    }
}

/// The service refuses this request for now (maintenance, a request over its time): 503.
public struct ServiceUnavailable: RestartixError, ProblemHeaders {
    public static let domain = "service"

    /// Why.
    public enum Code: String, Sendable {
        /// Maintenance mode is on.
        case maintenance
        /// The request took longer than the request timeout.
        case timedOut
    }

    public let code: Code
    /// What `Retry-After` says, if anything.
    public let retryAfter: Duration?

    public init(_ code: Code, retryAfter: Duration? = nil) {
        self.code = code
        self.retryAfter = retryAfter
    }

    public var codeName: String { code.rawValue }
    public var safeDetail: String {
        switch code {
        case .maintenance: "the service is down for maintenance; retry later"
        case .timedOut: "the request took longer than the service allows"
        }
    }
    public var httpStatus: Int { 503 }
    public var isTransient: Bool { true }
    public var description: String { restartixDescription }

    /// `Retry-After` in whole seconds, rounded up.
    public var problemHeaders: HTTPFields {
        guard let retryAfter else { return [:] }
        let (seconds, fraction) = retryAfter.components
        return [.retryAfter: "\(max(1, seconds + (fraction > 0 ? 1 : 0)))"]
    }
}

/// Answers 503 with `Retry-After` on every route but `/health` while maintenance is on.
public struct MaintenanceMiddleware<Context: RequestContext>: RouterMiddleware {
    let maintenance: Maintenance

    public init(_ maintenance: Maintenance) {
        self.maintenance = maintenance
    }

    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        throw ServiceUnavailable(.maintenance, retryAfter: maintenance.retryAfter)
    }
}

/// Bounds a request's handling to `timeout`: the database calls it makes end at that deadline
/// themselves (``Database/withDeadline(_:_:)``: a statement still running is canceled on the
/// server), and once it passes the handler's task is canceled and the request answered 503
/// `service.timedOut` (unless the handler still answered: then that answer stands; and an
/// error the handler ended with before the time was up stays that error). A handler
/// that ignores cancellation delays the 503 until it returns (every call of the kit and of
/// AsyncHTTPClient honours it).
///
/// The handler runs in a task of its own that this scope always awaits; the requests in flight
/// are in one table (``RequestDeadlines``) that a sweeping task looks through a few times a
/// second, canceling the overdue. Three designs this replaced, each measured by
/// Benchmarks/service-footprint: a task group with the handler and a sleeping child cost 10-20%
/// of `/health`'s throughput; that sleeping child's `Task.sleep`, canceled when the request was
/// answered, kept its timer and the task's memory until the sleep was due (on Linux a canceled
/// `Task.sleep` resumes at once but its timer stays), so every request of the last 30 seconds
/// stayed in memory: 341 MB and climbing under load; and a NIO timer per request, scheduled
/// and canceled from outside its event loop, woke that loop's thread twice a request (an
/// `eventfd` write each, and a context switch on a busy core).
public struct RequestTimeoutMiddleware<Context: RequestContext & Sendable>: RouterMiddleware {
    /// The requests in flight and their timeout.
    let deadlines: RequestDeadlines

    public init(_ timeout: Duration) {
        deadlines = RequestDeadlines(timeout: timeout)
    }

    // @concurrent like `next` and the standard library's `withoutActuallyEscaping`, so that
    // `next` stays in one isolation domain.
    @concurrent
    public func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        let deadlines = self.deadlines
        return try await withoutActuallyEscaping(next) { next in
            // `next` is called once, from the handler's task, which this scope awaits before it
            // returns on every path: it never outlives the call it was handed for.
            let handler = UncheckedHandler(call: next)
            return try await Database.withDeadline(deadlines.timeout) {
                let flight = RequestDeadlines.Flight()
                // Created inside the deadline's scope, so it carries the deadline (a task-local);
                // on the connection's event loop when the server runs connections there (an
                // unstructured task inherits no executor preference: without it the whole
                // handler would run on the global executor, a thread hand-off each way).
                let task = Task(executorPreference: EventLoopTaskExecutor.connection) {
                    defer { flight.finish() }
                    return try await handler.call(request, context)
                }
                let id = deadlines.insert(flight, cancel: { task.cancel() })
                let result = await withTaskCancellationHandler {
                    await task.result
                } onCancel: {
                    task.cancel()
                }
                deadlines.remove(id)
                switch result {
                case .success(let response):
                    return response
                case .failure where flight.timedOut:
                    throw ServiceUnavailable(.timedOut)
                case .failure(let error):
                    throw error
                }
            }
        }
    }
}

/// The requests in flight under one ``RequestTimeoutMiddleware``, each with its deadline, and
/// the task that cancels the overdue: it looks through the table every twentieth of the
/// timeout (between 5 ms and half a second), so a request is canceled at most that much after
/// its deadline; it runs only while requests are in flight (it ends when it finds the table
/// empty; the next request starts it again). Per request: two short locks and a table entry,
/// no timer and no thread woken.
public final class RequestDeadlines: Sendable {
    /// One request's state: running until it finishes or the sweep finds it overdue, whichever
    /// comes first (so a handler's own error is never reported as a timeout).
    public final class Flight: Sendable {
        private let state = Atomic<Int>(0) // 0 running, 1 finished, 2 timed out

        public init() {}

        /// The handler returned or threw.
        public func finish() { _ = state.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing) }

        /// The sweep found it overdue before it finished: `true` when this call decided it.
        func expire() -> Bool { state.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing).exchanged }

        /// Whether the sweep decided it.
        public var timedOut: Bool { state.load(ordering: .acquiring) == 2 }
    }

    struct Entry {
        let deadline: ContinuousClock.Instant
        let flight: Flight
        let cancel: @Sendable () -> Void
    }

    struct Table {
        var entries: [UInt64: Entry] = [:]
        var nextID: UInt64 = 0
        var sweeping = false
    }

    let timeout: Duration
    let interval: Duration
    private let table = Mutex(Table())

    /// A table for requests bounded to `timeout`.
    public init(timeout: Duration) {
        self.timeout = timeout
        interval = Swift.min(Swift.max(timeout / 20, .milliseconds(5)), .milliseconds(500))
    }

    /// Adds a request that started now; `cancel` is called once if it is still running at its
    /// deadline. Returns its id for ``remove(_:)``.
    public func insert(_ flight: Flight, cancel: @escaping @Sendable () -> Void) -> UInt64 {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let (id, startSweep) = table.withLock { table in
            let id = table.nextID
            table.nextID &+= 1
            table.entries[id] = Entry(deadline: deadline, flight: flight, cancel: cancel)
            let start = !table.sweeping
            table.sweeping = true
            return (id, start)
        }
        if startSweep {
            Task { [weak self] in await self?.sweep() }
        }
        return id
    }

    /// Removes a request that is done.
    public func remove(_ id: UInt64) {
        _ = table.withLock { $0.entries.removeValue(forKey: id) }
    }

    /// The requests in flight.
    public var count: Int { table.withLock { $0.entries.count } }

    private func sweep() async {
        while true {
            try? await Task.sleep(for: interval)
            let now = ContinuousClock.now
            let (overdue, done): ([Entry], Bool) = table.withLock { table in
                if table.entries.isEmpty {
                    table.sweeping = false
                    return ([], true)
                }
                var overdue: [Entry] = []
                for (id, entry) in table.entries where entry.deadline <= now {
                    overdue.append(entry)
                    table.entries.removeValue(forKey: id)
                }
                return (overdue, false)
            }
            // Outside the lock: canceling runs the task's cancellation handlers.
            for entry in overdue where entry.flight.expire() { entry.cancel() }
            if done { return }
        }
    }
}

/// `next`, carried into the handler's task of ``RequestTimeoutMiddleware``.
private struct UncheckedHandler<Context>: @unchecked Sendable {
    let call: (Request, Context) async throws -> Response
}

extension ServiceEnvironment {
    /// The edge's options: `CORS_ALLOWED_ORIGINS`, `TRUSTED_PROXY_CIDRS` (comma-separated CIDR
    /// ranges; none by default), `REQUEST_TIMEOUT_SECONDS` (1 to 300; 30 by default),
    /// `MAINTENANCE_MODE` (on or off) with `MAINTENANCE_RETRY_AFTER_SECONDS` (1 to 86400;
    /// 300 by default), `METRICS_TOKEN` (``metricsAccess()``).
    public func edgeOptions() throws(ConfigurationError) -> EdgeOptions {
        var options = EdgeOptions(corsOrigins: try corsOrigins(), metricsAccess: try metricsAccess())
        if let text = string("TRUSTED_PROXY_CIDRS") {
            options.trustedProxies = try TrustedProxies(cidrs: text.split(separator: ",").map(String.init))
        }
        if let seconds = try int("REQUEST_TIMEOUT_SECONDS", in: 1...300) { options.requestTimeout = .seconds(seconds) }
        switch string("MAINTENANCE_MODE")?.lowercased() {
        case nil, "off", "false", "0": break
        case "on", "true", "1": options.maintenance = Maintenance(retryAfter: .seconds(try int("MAINTENANCE_RETRY_AFTER_SECONDS", in: 1...86_400) ?? 300))
        default: throw ConfigurationError(.invalidValue, "MAINTENANCE_MODE must be on or off")
        }
        return options
    }
}
