import Foundation

/// Microsecond-precision UTC timestamps in the text form SQLite stores
/// (`2026-11-25T08:15:30.123456Z`: fixed width, so text order is time order) and parsing of the
/// ISO 8601 forms SQLite and Postgres produce. No `DateFormatter`: this is on the row-decoding path.
enum UTCTimestamp {
    /// Microseconds since 1970-01-01T00:00:00Z, rounded to the nearest microsecond.
    static func microseconds(since1970 date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    }

    static func date(microsecondsSince1970 us: Int64) -> Date {
        let seconds = us.quotientRoundingDown(1_000_000)
        let micros = us - seconds * 1_000_000
        return Date(timeIntervalSince1970: TimeInterval(seconds) + TimeInterval(micros) / 1_000_000)
    }

    /// Formats as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    static func format(_ date: Date) -> String {
        let us = microseconds(since1970: date)
        let totalSeconds = us.quotientRoundingDown(1_000_000)
        let micros = Int(us - totalSeconds * 1_000_000)
        let days = totalSeconds.quotientRoundingDown(86_400)
        var secondOfDay = Int(totalSeconds - days * 86_400)
        let (y, m, d) = civil(fromDays: days)
        let hour = secondOfDay / 3600
        secondOfDay %= 3600
        let minute = secondOfDay / 60
        let second = secondOfDay % 60
        var out = ""
        out.reserveCapacity(27)
        append(&out, y, width: 4)
        out.append("-")
        append(&out, m, width: 2)
        out.append("-")
        append(&out, d, width: 2)
        out.append("T")
        append(&out, hour, width: 2)
        out.append(":")
        append(&out, minute, width: 2)
        out.append(":")
        append(&out, second, width: 2)
        out.append(".")
        append(&out, micros, width: 6)
        out.append("Z")
        return out
    }

    /// Parses `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]]` with an optional `Z` or
    /// `±HH[:MM]` offset (no offset means UTC, as SQLite's own functions assume).
    static func parse(_ text: String) -> Date? {
        var bytes = Array(text.utf8)[...]
        func number(_ count: Int) -> Int? {
            guard bytes.count >= count else { return nil }
            var value = 0
            for _ in 0..<count {
                let c = bytes.removeFirst()
                guard c >= 48, c <= 57 else { return nil }
                value = value * 10 + Int(c - 48)
            }
            return value
        }
        func expect(_ c: UInt8) -> Bool {
            guard bytes.first == c else { return false }
            bytes.removeFirst()
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2),
              (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var hour = 0, minute = 0, second = 0, micros = 0, offsetSeconds = 0
        if let sep = bytes.first, sep == 84 || sep == 32 {  // 'T' or ' '
            bytes.removeFirst()
            guard let h = number(2), expect(58), let mi = number(2), h < 24, mi < 60 else { return nil }
            hour = h
            minute = mi
            if expect(58) {
                guard let s = number(2), s < 61 else { return nil }
                second = s
                if expect(46) {
                    var digits = 0
                    while let c = bytes.first, c >= 48, c <= 57 {
                        bytes.removeFirst()
                        if digits < 6 { micros = micros * 10 + Int(c - 48) }
                        digits += 1
                    }
                    guard digits > 0 else { return nil }
                    for _ in digits..<max(digits, 6) { micros *= 10 }
                }
            }
            if expect(90) {  // 'Z'
            } else if let sign = bytes.first, sign == 43 || sign == 45 {  // '+' '-'
                bytes.removeFirst()
                guard let oh = number(2) else { return nil }
                var om = 0
                if expect(58) || (bytes.first.map { $0 >= 48 && $0 <= 57 } ?? false) {
                    guard let m = number(2) else { return nil }
                    om = m
                }
                offsetSeconds = (oh * 3600 + om * 60) * (sign == 45 ? -1 : 1)
            }
        }
        guard bytes.isEmpty else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second - offsetSeconds)
        return date(microsecondsSince1970: seconds * 1_000_000 + Int64(micros))
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = y.quotientRoundingDown(400)
        let yoe = y - era * 400
        let mp = Int64((month + 9) % 12)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays z0: Int64) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = z.quotientRoundingDown(146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(yoe + era * 400 + (m <= 2 ? 1 : 0)), Int(m), Int(d))
    }

    private static func append(_ out: inout String, _ value: Int, width: Int) {
        let digits = String(value)
        if digits.count < width { out.append(String(repeating: "0", count: width - digits.count)) }
        out.append(digits)
    }
}

extension Int64 {
    /// Floor division (rounds toward negative infinity), for dates before 1970.
    func quotientRoundingDown(_ divisor: Int64) -> Int64 {
        let q = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? q - 1 : q
    }
}
