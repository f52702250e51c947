public import Foundation
import Synchronization
#if os(Linux)
import CSystemShims
#endif

/// Generates RFC 9562 version 7 UUIDs: a 48-bit Unix millisecond timestamp, then random bits.
///
/// Ids are made by the client so they are known before insert (the column cipher binds a value
/// to its row id) and sort by creation time, which keeps B-tree inserts local.
/// Within one process, ids generated in the same millisecond are still strictly increasing:
/// the 12-bit `rand_a` field is used as a counter seeded randomly each millisecond (RFC 9562
/// §6.2, method 1).
public enum UUIDv7 {
    private struct State {
        var lastMillis: UInt64 = 0
        var counter: UInt16 = 0
    }

    private static let state = Mutex(State())

    /// A new version 7 UUID.
    public static func generate(now: Date = Date()) -> UUID {
        // 8 random bytes for `rand_b` and 2 for the counter's seed, in one read of the system's
        // CSPRNG (`SystemRandomNumberGenerator` reads 8 bytes a call: two system calls an id).
        let random = RandomBytes()
        let wallMillis = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        let (millis, counter) = state.withLock { state -> (UInt64, UInt16) in
            if wallMillis > state.lastMillis {
                state.lastMillis = wallMillis
                state.counter = random.seed & 0x7FF  // leave headroom
            } else if state.counter < 0xFFF {
                state.counter += 1
            } else {
                // Counter exhausted within one millisecond: borrow the next millisecond.
                state.lastMillis += 1
                state.counter = 0
            }
            return (state.lastMillis, state.counter)
        }
        let tail = random.tail
        return UUID(uuid: (
            UInt8(truncatingIfNeeded: millis >> 40), UInt8(truncatingIfNeeded: millis >> 32),
            UInt8(truncatingIfNeeded: millis >> 24), UInt8(truncatingIfNeeded: millis >> 16),
            UInt8(truncatingIfNeeded: millis >> 8), UInt8(truncatingIfNeeded: millis),
            0x70 | UInt8(counter >> 8), UInt8(truncatingIfNeeded: counter),
            0x80 | (UInt8(truncatingIfNeeded: tail) & 0x3F),  // RFC 9562 variant
            UInt8(truncatingIfNeeded: tail >> 8), UInt8(truncatingIfNeeded: tail >> 16), UInt8(truncatingIfNeeded: tail >> 24),
            UInt8(truncatingIfNeeded: tail >> 32), UInt8(truncatingIfNeeded: tail >> 40), UInt8(truncatingIfNeeded: tail >> 48),
            UInt8(truncatingIfNeeded: tail >> 56)
        ))
    }

    /// Ten bytes from the system's CSPRNG: `getrandom(2)` once on Linux (it never returns
    /// short for so few bytes once the pool is initialized; on any failure, and elsewhere,
    /// `SystemRandomNumberGenerator`).
    struct RandomBytes {
        var tail: UInt64
        var seed: UInt16

        init() {
            #if os(Linux)
            var bytes: (UInt64, UInt16) = (0, 0)
            let read = withUnsafeMutableBytes(of: &bytes) { getrandom($0.baseAddress, 10, 0) }
            if read == 10 {
                (tail, seed) = bytes
                return
            }
            #endif
            var system = SystemRandomNumberGenerator()
            tail = system.next()
            seed = system.next()
        }
    }

    /// The Unix millisecond timestamp in a version 7 UUID, or `nil` for other versions.
    public static func timestamp(of id: UUID) -> Date? {
        let u = id.uuid
        guard u.6 >> 4 == 7 else { return nil }
        let millis = [u.0, u.1, u.2, u.3, u.4, u.5].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return Date(timeIntervalSince1970: Double(millis) / 1000)
    }
}

extension UUID {
    /// The canonical lower-case text form (`0190a4c2-...`), as Postgres prints a `uuid` and as
    /// the kit stores ids on SQLite. Formatted directly from the bytes: `uuidString` goes
    /// through `snprintf` and `lowercased()` allocates again, and ids are formatted on every
    /// tenant transaction.
    public var lowercasedString: String {
        let hex: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { buffer in
                hex.withUTF8Buffer { digits in
                    var out = 0
                    for index in 0..<16 {
                        if index == 4 || index == 6 || index == 8 || index == 10 {
                            buffer[out] = UInt8(ascii: "-")
                            out += 1
                        }
                        buffer[out] = digits[Int(bytes[index] >> 4)]
                        buffer[out + 1] = digits[Int(bytes[index] & 0x0F)]
                        out += 2
                    }
                    return out
                }
            }
        }
    }
}
