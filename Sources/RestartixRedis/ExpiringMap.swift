/// Values with an expiry, for the in-process twins of the Redis services: a live value is
/// returned until its instant passes; expired entries are dropped in one sweep whenever the map
/// has doubled since the last one (amortized O(1) per insert, memory bounded by twice the live
/// entries). Not synchronized: keep it inside a `Mutex`.
import RestartixKit

package struct ExpiringMap<Value> {
    private var entries: [String: (value: Value, expiresAt: ContinuousClock.Instant)] = [:]
    private var sweepAt: Int
    private let floor: Int

    package init(sweepAt floor: Int = 10_000) {
        self.floor = floor
        self.sweepAt = floor
    }

    /// The value of `key` if it has not expired at `now`.
    package func value(_ key: String, now: ContinuousClock.Instant) -> Value? {
        guard let entry = entries[key], entry.expiresAt > now else { return nil }
        return entry.value
    }

    /// Sets `key` to `value` until `expiresAt`.
    package mutating func set(_ key: String, _ value: Value, until expiresAt: ContinuousClock.Instant, now: ContinuousClock.Instant) {
        entries[key] = (value, expiresAt)
        guard entries.count >= sweepAt else { return }
        entries = entries.filter { $0.value.expiresAt > now }
        sweepAt = max(floor, entries.count * 2)
    }

    /// Removes `key`.
    package mutating func remove(_ key: String) {
        entries[key] = nil
    }
}
