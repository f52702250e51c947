public import Hummingbird
public import Logging
public import RestartixKit
import ServiceLifecycle
import UnixSignals

/// How a service stops on SIGTERM or SIGINT: it stops accepting connections, lets the requests
/// in flight finish for up to `grace` (`SHUTDOWN_GRACE_SECONDS`, 25 s by default: inside the
/// 30 s a container orchestrator waits before SIGKILL), then cancels what is left; the
/// application's services (pools, Redis) shut down after the server, in the reverse of the
/// order they were given to the application, so list what others depend on first.
public struct DrainPolicy: Sendable, Hashable {
    /// The longest the requests in flight may take to finish after the signal.
    public var grace: Duration
    /// How long cancelled work may take to end before the process gives up on it.
    public var cancellation: Duration

    /// The default grace: 25 seconds.
    public static let defaultGrace: Duration = .seconds(25)

    public init(grace: Duration = Self.defaultGrace, cancellation: Duration = .seconds(5)) {
        self.grace = grace
        self.cancellation = cancellation
    }
}

/// Runs `app` until SIGTERM or SIGINT, then drains it under `policy` (``DrainPolicy``).
/// (Hummingbird's `runService()` drains with no bound: a request that never ends would keep
/// the process alive until the orchestrator's SIGKILL, with the pools never closed.)
public func runUntilSignalled(_ app: some ApplicationProtocol, policy: DrainPolicy = DrainPolicy(), logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = policy.grace
    configuration.maximumCancellationDuration = policy.cancellation
    try await ServiceGroup(configuration: configuration).run()
}

extension ServiceEnvironment {
    /// `SHUTDOWN_GRACE_SECONDS` (1 to 600; 25 by default): the drain's grace.
    public func drainPolicy() throws(ConfigurationError) -> DrainPolicy {
        DrainPolicy(grace: .seconds(try int("SHUTDOWN_GRACE_SECONDS", in: 1...600) ?? 25))
    }
}
