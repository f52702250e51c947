public import AsyncHTTPClient
public import Foundation
import Synchronization

/// Credentials that stay usable for as long as a client lives: fixed keys as they are, or a
/// container role's temporary keys (ECS task role, EKS pod identity), fetched again from the
/// endpoint before they expire. The clients (``S3Client``, ``AWSJSONClient``, ``SESClient``)
/// ask it for the keys of every request, so a service that runs for days keeps signing after
/// the keys it started with have expired (they last hours).
///
/// A refresh starts when the keys held have less than ``refreshWindow`` left (15 minutes by
/// default: a presigned GET lives up to 15 minutes and must not outlive the keys that signed it)
/// and is shared by every caller that asks meanwhile. After any fetch, the next waits at least
/// ``retryInterval``: while the keys held are still valid they go on signing (a failed refresh,
/// or an endpoint that has not rotated yet, costs one fetch per interval, not one per request);
/// once they have expired, a request fails with the last fetch's error until the next attempt.
///
/// Not ``AWSCredentialSource/resolve(httpClient:)``, which fetches once: that is for boot-time
/// work (loading a keyring) that is over long before the keys expire. The SDKs' credential
/// providers do the same job, and AWS's Swift SDK is not among the kit's dependencies.
public final class AWSCredentialProvider: Sendable, CustomStringConvertible {
    /// Keys with less than this left are fetched again. Default: 15 minutes.
    public let refreshWindow: Duration
    /// After a failed refresh, how long before the next request tries again. Default: 10 s.
    public let retryInterval: Duration

    private let source: AWSCredentialSource
    private let httpClient: HTTPClient
    private let clock: @Sendable () -> Date
    private let state: Mutex<State>

    private struct State {
        var credentials: AWSCredentials
        var refreshing: Task<AWSCredentials, any Error>?
        var nextAttempt: Date = .distantPast
        var lastError: AWSError?
        var refreshes = 0
    }

    /// Fixed keys, never refreshed.
    public init(_ credentials: AWSCredentials) {
        self.source = .static(credentials)
        self.httpClient = .shared
        self.clock = { Date() }
        self.refreshWindow = .seconds(15 * 60)
        self.retryInterval = .seconds(10)
        self.state = Mutex(State(credentials: credentials))
    }

    /// The keys `source` gives now (fetched at once, so a role that cannot be assumed stops the
    /// caller at start), and again before they expire.
    public init(
        _ source: AWSCredentialSource, httpClient: HTTPClient = .shared, refreshWindow: Duration = .seconds(15 * 60),
        retryInterval: Duration = .seconds(10), clock: @escaping @Sendable () -> Date = { Date() }
    ) async throws(AWSError) {
        self.source = source
        self.httpClient = httpClient
        self.refreshWindow = refreshWindow
        self.retryInterval = retryInterval
        self.clock = clock
        self.state = Mutex(State(credentials: try await source.resolve(httpClient: httpClient)))
    }

    /// The keys held now, without waiting: what a synchronous signature (a presigned URL) uses.
    /// When they are due for a refresh, one starts in the background.
    public var current: AWSCredentials {
        let now = clock()
        let (credentials, due) = state.withLock { state -> (AWSCredentials, Bool) in
            (state.credentials, state.refreshing == nil && isDue(state) && now >= state.nextAttempt)
        }
        if due { Task { _ = try? await self.credentials() } }
        return credentials
    }

    /// How many times the keys were fetched again since the first time (for tests and metrics).
    public var refreshCount: Int { state.withLock { $0.refreshes } }

    /// The keys to sign a request with now: the ones held, or fresh ones when those are due.
    public func credentials() async throws(AWSError) -> AWSCredentials {
        enum Next { case use(AWSCredentials), fail(AWSError), wait(Task<AWSCredentials, any Error>, fallback: AWSCredentials?) }
        let now = clock()
        let next = state.withLock { state -> Next in
            guard isDue(state) else { return .use(state.credentials) }
            let valid = state.credentials.expiration.map { $0 > now } ?? true
            if state.refreshing == nil {
                // One fetch per interval: the keys held while they are valid, else the last error.
                if now < state.nextAttempt {
                    if valid { return .use(state.credentials) }
                    return .fail(state.lastError ?? AWSError(.unreachable, "the AWS credentials expired and could not be fetched again yet"))
                }
                let source = self.source, httpClient = self.httpClient
                state.refreshing = Task { try await source.resolve(httpClient: httpClient) }
            }
            return .wait(state.refreshing!, fallback: valid ? state.credentials : nil)
        }
        switch next {
        case .use(let credentials):
            return credentials
        case .fail(let error):
            throw error
        case .wait(let task, let fallback):
            let result = await task.result
            return try state.withLock { state throws(AWSError) -> AWSCredentials in
                if state.refreshing == task {
                    state.refreshing = nil
                    state.nextAttempt = clock().addingTimeInterval(retryInterval.seconds)
                    switch result {
                    case .success(let fresh):
                        state.credentials = fresh
                        state.lastError = nil
                        state.refreshes += 1
                    case .failure(let error):
                        state.lastError = (error as? AWSError) ?? AWSError(.unreachable, "the AWS credentials could not be refreshed")
                    }
                }
                switch result {
                case .success(let fresh): return fresh
                case .failure(let error):
                    if let fallback { return fallback }
                    throw (error as? AWSError) ?? AWSError(.unreachable, "the AWS credentials could not be refreshed")
                }
            }
        }
    }

    /// Whether the keys held have less than the refresh window left (never, for keys without
    /// an expiration).
    private func isDue(_ state: State) -> Bool {
        guard let expiration = state.credentials.expiration else { return false }
        return expiration.timeIntervalSince(clock()) < refreshWindow.seconds
    }

    /// The source; never a key.
    public var description: String { "AWSCredentialProvider(\(source))" }
}

extension Duration {
    /// The duration in seconds, with its fraction.
    var seconds: TimeInterval {
        let (seconds, attoseconds) = components
        return TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18
    }
}
