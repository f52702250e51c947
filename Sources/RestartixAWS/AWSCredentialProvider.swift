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
/// and is shared by every caller that asks meanwhile. While the keys held are still valid, a
/// failed refresh keeps them and is tried again at the next request after ``retryInterval``;
/// once they have expired, the refresh's error is the request's.
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
        let (credentials, due) = state.withLock { state -> (AWSCredentials, Bool) in
            (state.credentials, state.refreshing == nil && isDue(state))
        }
        if due { Task { _ = try? await self.credentials() } }
        return credentials
    }

    /// How many times the keys were fetched again since the first time (for tests and metrics).
    public var refreshCount: Int { state.withLock { $0.refreshes } }

    /// The keys to sign a request with now: the ones held, or fresh ones when those are due.
    public func credentials() async throws(AWSError) -> AWSCredentials {
        enum Next { case use(AWSCredentials), wait(Task<AWSCredentials, any Error>, fallback: AWSCredentials?) }
        let now = clock()
        let next = state.withLock { state -> Next in
            guard isDue(state) else { return .use(state.credentials) }
            // Still valid: a failed refresh is retried only after the interval.
            let valid = state.credentials.expiration.map { $0 > now } ?? true
            if state.refreshing == nil {
                if valid, now < state.nextAttempt { return .use(state.credentials) }
                let source = self.source, httpClient = self.httpClient
                state.refreshing = Task { try await source.resolve(httpClient: httpClient) }
            }
            return .wait(state.refreshing!, fallback: valid ? state.credentials : nil)
        }
        switch next {
        case .use(let credentials):
            return credentials
        case .wait(let task, let fallback):
            let result = await task.result
            return try state.withLock { state throws(AWSError) -> AWSCredentials in
                if state.refreshing == task {
                    state.refreshing = nil
                    switch result {
                    case .success(let fresh):
                        state.credentials = fresh
                        state.refreshes += 1
                    case .failure:
                        state.nextAttempt = clock().addingTimeInterval(retryInterval.seconds)
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
