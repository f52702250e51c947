extension Duration {
    /// Whole milliseconds, rounded toward zero.
    package var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole microseconds, rounded toward zero.
    package var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }

    /// Seconds as a `Double` (a `TimeInterval`).
    package var secondsValue: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    /// The wait after `failures` consecutive failures (at least 1): `initial` doubled for each
    /// failure after the first, at most `maximum`, with ±20 % jitter so a fleet does not retry in
    /// step. Redis reconnects and the storage retry helper share it.
    package static func backoff(initial: Duration, maximum: Duration, afterFailures failures: Int) -> Duration {
        let doubled = initial * (1 << Swift.min(Swift.max(failures, 1) - 1, 20))
        return Swift.min(doubled, maximum) * Double.random(in: 0.8...1.2)
    }
}
