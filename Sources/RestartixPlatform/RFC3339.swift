public import Foundation

/// The one reading of an RFC 3339 date-time the platform accepts from outside (a request body,
/// another service's payload): an offset required (`2026-12-07T09:30:00Z`, `+02:00`),
/// fractional seconds allowed, at most 40 bytes.
public enum RFC3339 {
    /// The instant `text` names, or `nil` when it is not such a date-time.
    public static func date(_ text: String) -> Date? {
        guard text.utf8.count <= 40 else { return nil }
        return (try? Date.ISO8601FormatStyle().parse(text)) ?? (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
    }
}
