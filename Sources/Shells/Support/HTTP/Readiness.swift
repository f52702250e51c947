import Foundation
public import RestartixKit

/// The checks behind a service's `/ready` (the Core API's tenancy checks, the Telemetry API's
/// spool and object store). They may be costly, so they run at most once per `interval`
/// however often the probe asks (an unauthenticated flood of probes costs one run per
/// interval), in the background under a deadline of their own (``checkDeadline``), concurrent
/// probes sharing one run. A probe waits for a run in progress only until its own deadline,
/// then answers with the last result known.
public actor Readiness {
    /// The longest one run of the checks may take.
    public static let checkDeadline: Duration = .seconds(10)

    private let checks: [@Sendable () async -> [String]]
    private let interval: Duration
    private var last: (at: ContinuousClock.Instant, problems: [String])?
    private var refreshing = false
    private var waiters: [UInt64: CheckedContinuation<[String]?, Never>] = [:]
    private var nextWaiter: UInt64 = 0

    /// Readiness from `checks`, each answering the problems it found ([] when all is well;
    /// names of things, never data: they go to the log).
    public init(checks: [@Sendable () async -> [String]], interval: Duration = .seconds(5)) {
        self.checks = checks
        self.interval = interval
    }

    /// Every problem found ([] when all is well): the last result while it is fresh;
    /// otherwise a new run's, if it ends by `deadline`, else the last result known, or `nil`
    /// when no run has ended yet.
    public func problems(waitingUntil deadline: ContinuousClock.Instant) async -> [String]? {
        if let last, ContinuousClock.now - last.at < interval { return last.problems }
        startRun()
        nextWaiter += 1
        let id = nextWaiter
        let fresh = await withCheckedContinuation { (continuation: CheckedContinuation<[String]?, Never>) in
            waiters[id] = continuation
            DispatchQueue.global().asyncAfter(deadline: .at(deadline)) { Task { await self.giveUp(id) } }
        }
        return fresh ?? last?.problems
    }

    private func startRun() {
        guard !refreshing else { return }
        refreshing = true
        let checks = self.checks
        Task.detached {
            let problems = await Database.withDeadline(Self.checkDeadline) { await Self.run(checks) }
            await self.finish(problems)
        }
    }

    private static func run(_ checks: [@Sendable () async -> [String]]) async -> [String] {
        var problems: [String] = []
        for check in checks { problems += await check() }
        return problems
    }

    /// Records the result of a run made elsewhere (the boot sequence's own check).
    public func record(_ problems: [String]) {
        last = (ContinuousClock.now, problems)
    }

    private func finish(_ problems: [String]) {
        refreshing = false
        last = (ContinuousClock.now, problems)
        let waiting = waiters
        waiters = [:]
        for continuation in waiting.values { continuation.resume(returning: problems) }
    }

    private func giveUp(_ id: UInt64) {
        waiters.removeValue(forKey: id)?.resume(returning: nil)
    }
}
