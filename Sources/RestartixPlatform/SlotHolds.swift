public import RestartixKit
public import RestartixRedis
public import Foundation
public import Logging
import Synchronization

/// A hold on an appointment slot while a patient fills in the booking form (P30).
public struct SlotHold: Sendable, Hashable {
    /// Which store granted the hold; ``SlotHolds/release(_:)`` and ``SlotHolds/confirm(_:)``
    /// go back to it.
    public enum Store: String, Sendable, Hashable {
        /// ``RedisSlotHolds`` in Redis.
        case redis
        /// The `slot_holds` reservation (``DatabaseSlotHolds``, or Redis's fallback).
        case database
        /// ``InProcessSlotHolds``.
        case memory
    }

    /// The slot.
    public let slot: String
    /// Who holds it (a patient or session id).
    public let holder: String
    /// The hold's unique token: only its bearer can release or confirm it.
    public let token: String
    /// The fencing token: strictly greater for every later hold of the same slot — the greater
    /// of the previous fence + 1 and the store's clock in microseconds, so it also grows across
    /// stores and restarts (as long as clocks do not go back). Write it with the booking and refuse a booking whose fence is not greater than
    /// the slot's last one, so a holder that stalled past its expiry cannot book over a later one.
    public let fence: Int
    /// When the hold lapses.
    public let expiresAt: Date
    /// The store that granted it.
    public let store: Store

    /// A hold as a request brings it back (the token went to the client with the form).
    public init(slot: String, holder: String, token: String, fence: Int, expiresAt: Date, store: Store) {
        self.slot = slot
        self.holder = holder
        self.token = token
        self.fence = fence
        self.expiresAt = expiresAt
        self.store = store
    }
}

extension SlotHold: Codable {}
extension SlotHold.Store: Codable {}

/// Appointment-slot holds with a time to live: at most one live hold per slot, released or
/// confirmed only by its bearer (compare-and-delete on its token), with a fencing token.
public protocol SlotHolds: Sendable {
    /// Holds `slot` for `holder` for `ttl`; `nil` when someone else holds it.
    func hold(slot: String, holder: String, ttl: Duration) async throws -> SlotHold?
    /// Gives the slot up early — before a booking, or once the booking it was confirmed for is
    /// written and the booking's own uniqueness keeps the slot; `false` when the hold had
    /// already lapsed or been released.
    func release(_ hold: SlotHold) async throws -> Bool
    /// Marks the hold confirmed because the booking goes ahead, and returns when it lapses: the
    /// booking must be written before then (``Appointments`` makes that its transaction's
    /// deadline). `nil` unless the hold is still live and is the one granted — the same token
    /// and fence, so a client cannot present a fence of its own — so a holder whose hold lapsed
    /// learns it here instead of booking over someone else. A confirmed hold keeps the slot
    /// until it expires (nobody else can hold it while the booking is written) and can be
    /// neither released nor confirmed again.
    func confirm(_ hold: SlotHold) async throws -> Date?
}

/// Holds in Redis (`SET NX PX` with a random token, compare-and-delete by Lua, a fence counter
/// per slot), falling back to the database reservation when Redis cannot be asked: fail
/// closed, never "no hold needed". A hold is released or confirmed in the store that granted
/// it; if that store cannot be asked, the call throws.
///
/// A hold granted by Redis is given up again when the database still has a live hold of the
/// slot (granted while Redis was down). The other way round cannot be checked — while Redis is
/// down, holds made earlier in Redis are unknown to the database — so what finally makes a
/// double booking impossible is the booking write: unique per slot, carrying the hold's fence.
public final class RedisSlotHolds: SlotHolds {
    /// KEYS[1] the hold, KEYS[2] the slot's last fence; ARGV token, ttl ms. Returns the new
    /// fence — the greater of the last one + 1 and the server's time in µs, so fences keep
    /// growing across a lost counter, a restarted Redis and the database store — or nil when
    /// the slot is held.
    static let holdScript = RedisScript("""
        if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
          local t = redis.call('TIME')
          local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
          local fence = math.max((tonumber(redis.call('GET', KEYS[2])) or 0) + 1, now)
          redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', 2592000000)
          return fence
        end
        return false
        """)
    /// KEYS[1] the hold; ARGV token. Release: deletes the bearer's hold, confirmed or not. 1
    /// when it did.
    static let releaseScript = RedisScript("""
        local held = redis.call('GET', KEYS[1])
        if held == ARGV[1] or held == 'confirmed:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)
    /// KEYS[1] the hold, KEYS[2] the slot's last fence; ARGV token, fence. Confirm: marks the
    /// bearer's live hold confirmed, keeping it (and the slot) until it expires. Its time to
    /// live in ms when it did (the fence must be the slot's last: the one granted with the
    /// token), -1 when not.
    static let confirmScript = RedisScript("""
        if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
          redis.call('SET', KEYS[1], 'confirmed:' .. ARGV[1], 'KEEPTTL')
          return redis.call('PTTL', KEYS[1])
        end
        return -1
        """)

    private let redis: RedisClient
    private let fallback: DatabaseSlotHolds
    private let prefix: String
    private let degradation: Degradation

    /// Holds on `redis` (keys `"\(prefix)\(slot)"` and `"\(prefix)\(slot):fence"`), falling back
    /// to `database`'s `slot_holds`.
    public init(redis: RedisClient, database: Database, prefix: String = "hold:", logger: Logger, logInterval: Duration = .seconds(60)) {
        self.redis = redis
        self.fallback = DatabaseSlotHolds(database: database)
        self.prefix = prefix
        self.degradation = Degradation(
            logger: logger, metric: "restartix_slot_holds_fallback_total",
            message: "Slot holds falling back to the database reservation: Redis could not be asked", interval: logInterval
        )
    }

    public func hold(slot: String, holder: String, ttl: Duration) async throws -> SlotHold? {
        try Holds.validate(slot: slot, holder: holder, ttl: ttl)
        let token = UUID().uuidString.lowercased()
        let reply: RedisValue
        do {
            reply = try await redis.evaluate(Self.holdScript, keys: [prefix + slot, prefix + slot + ":fence"], arguments: [token, ttl.pxMilliseconds])
        } catch {
            degradation.record(error)
            return try await fallback.hold(slot: slot, holder: holder, ttl: ttl)
        }
        guard let fence = reply.int else { return nil }
        // A hold the database granted while Redis was down may still be live: it wins.
        if (try? await fallback.isHeld(slot)) == true {
            _ = try? await redis.evaluate(Self.releaseScript, keys: [prefix + slot], arguments: [token])
            return nil
        }
        return SlotHold(slot: slot, holder: holder, token: token, fence: fence, expiresAt: Date().addingTimeInterval(ttl.secondsValue), store: .redis)
    }

    public func release(_ hold: SlotHold) async throws -> Bool {
        guard hold.store == .redis else { return try await fallback.release(hold) }
        return try await redis.evaluate(Self.releaseScript, keys: [prefix + hold.slot], arguments: [hold.token]).int == 1
    }

    public func confirm(_ hold: SlotHold) async throws -> Date? {
        guard hold.store == .redis else { return try await fallback.confirm(hold) }
        let reply = try await redis.evaluate(
            Self.confirmScript, keys: [prefix + hold.slot, prefix + hold.slot + ":fence"], arguments: [hold.token, String(hold.fence)]
        )
        guard let milliseconds = reply.int, milliseconds > 0 else { return nil }
        return Date().addingTimeInterval(Double(milliseconds) / 1000)
    }
}

/// Holds as rows of `slot_holds` (one per slot): a hold is an upsert that only overwrites an
/// expired row and moves its fence on; ending one expires it in place, by token. Time is the
/// database's clock. The fallback of ``RedisSlotHolds``, and enough on its own for one database.
public final class DatabaseSlotHolds: SlotHolds {
    private let database: Database

    /// Holds in `database` (a role that may write `slot_holds`).
    public init(database: Database) { self.database = database }

    public func hold(slot: String, holder: String, ttl: Duration) async throws -> SlotHold? {
        try Holds.validate(slot: slot, holder: holder, ttl: ttl)
        let token = UUID().uuidString.lowercased()
        let dialect = database.dialect
        let expires: SQLQuery = dialect == .postgres
            ? "now() + (\(ttl.pxMilliseconds)::double precision * interval '1 millisecond')"
            : "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now', \("+\(ttl.secondsValue) seconds"))"
        // Fences: the greater of the last + 1 and the database's time in µs (as in Redis).
        let micros: SQLQuery = dialect == .postgres
            ? "(extract(epoch from clock_timestamp()) * 1000000)::bigint"
            : "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
        let rows = try await database.query("""
            INSERT INTO slot_holds (slot_id, holder, token, fence, expires_at) VALUES (\(slot), \(holder), \(token), \(micros), \(expires)) \
            ON CONFLICT (slot_id) DO UPDATE SET holder = excluded.holder, token = excluded.token, \
            fence = CASE WHEN slot_holds.fence + 1 > excluded.fence THEN slot_holds.fence + 1 ELSE excluded.fence END, \
            expires_at = excluded.expires_at \
            WHERE slot_holds.expires_at <= \(dialect.now) \
            RETURNING fence, expires_at
            """)
        guard let row = rows.first else { return nil }
        let expiresAt = try row.decode("expires_at", as: Date.self)
        return SlotHold(slot: slot, holder: holder, token: token, fence: try row.decode("fence", as: Int.self), expiresAt: expiresAt, store: .database)
    }

    public func release(_ hold: SlotHold) async throws -> Bool {
        let now = database.dialect.now
        return try await database.execute("""
            UPDATE slot_holds SET expires_at = \(now), token = '' \
            WHERE slot_id = \(hold.slot) AND token IN (\(hold.token), \("confirmed:" + hold.token)) AND expires_at > \(now)
            """) == 1
    }

    public func confirm(_ hold: SlotHold) async throws -> Date? {
        let now = database.dialect.now
        return try await database.query("""
            UPDATE slot_holds SET token = \("confirmed:" + hold.token) \
            WHERE slot_id = \(hold.slot) AND token = \(hold.token) AND fence = \(hold.fence) AND expires_at > \(now) \
            RETURNING expires_at
            """).first?.decode("expires_at", as: Date.self)
    }

    /// Whether `slot` has a live hold here.
    func isHeld(_ slot: String) async throws -> Bool {
        try await !database.query("SELECT 1 FROM slot_holds WHERE slot_id = \(slot) AND expires_at > \(database.dialect.now)").isEmpty
    }
}

/// Holds in this process's memory, for the embedded default: the same semantics on one
/// instance only.
public final class InProcessSlotHolds: SlotHolds {
    private struct Entry {
        var token: String
        var fence: Int
        var expiresAt: ContinuousClock.Instant
        /// The same instant on the wall clock, as ``SlotHold/expiresAt`` says it.
        var expiresAtDate: Date
    }

    private let slots = Mutex<[String: Entry]>([:])

    /// No holds yet.
    public init() {}

    public func hold(slot: String, holder: String, ttl: Duration) async throws -> SlotHold? {
        try Holds.validate(slot: slot, holder: holder, ttl: ttl)
        let token = UUID().uuidString.lowercased(), now = ContinuousClock.now
        let expiresAt = Date().addingTimeInterval(ttl.secondsValue)
        let fence: Int? = slots.withLock { slots in
            let previous = slots[slot]
            if let previous, previous.expiresAt > now { return nil }
            let micros = Int(Date().timeIntervalSince1970 * 1_000_000)
            let fence = max((previous?.fence ?? 0) + 1, micros)
            slots[slot] = Entry(token: token, fence: fence, expiresAt: now + ttl, expiresAtDate: expiresAt)
            return fence
        }
        guard let fence else { return nil }
        return SlotHold(slot: slot, holder: holder, token: token, fence: fence, expiresAt: expiresAt, store: .memory)
    }

    public func release(_ hold: SlotHold) async throws -> Bool {
        end(hold, confirmedToo: true) { entry, now in
            entry.token = ""
            entry.expiresAt = now
        } != nil
    }

    public func confirm(_ hold: SlotHold) async throws -> Date? {
        end(hold) { entry, _ in entry.token = "confirmed:" + entry.token }
    }

    /// Applies `change` to the bearer's live hold (its token and fence) and returns when the
    /// hold lapses; `nil` when there is none (`confirmedToo`: a confirmed one counts).
    private func end(_ hold: SlotHold, confirmedToo: Bool = false, _ change: (inout Entry, ContinuousClock.Instant) -> Void) -> Date? {
        let now = ContinuousClock.now
        return slots.withLock { slots in
            guard var entry = slots[hold.slot], entry.fence == hold.fence, entry.expiresAt > now,
                entry.token == hold.token || (confirmedToo && entry.token == "confirmed:" + hold.token)
            else { return nil }
            change(&entry, now)
            slots[hold.slot] = entry
            return entry.expiresAtDate
        }
    }
}

enum Holds {
    static func validate(slot: String, holder: String, ttl: Duration) throws(RedisError) {
        guard (1...200).contains(slot.utf8.count), (1...200).contains(holder.utf8.count), ttl >= .milliseconds(1), ttl <= .seconds(86_400) else {
            throw RedisError(.invalidArgument, "a hold needs a slot and a holder of 1-200 bytes and a ttl of 1 ms to 24 hours")
        }
    }
}
