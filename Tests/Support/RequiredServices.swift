public import Foundation
public import Testing

/// The one rule for the real services the suites use (Postgres, PgBouncer, Redis,
/// moto_server), shared by every test target: their URLs come from the environment that
/// `Scripts/services env` prints; locally a suite whose service is absent skips, and under
/// `CI=true` (or `RESTARTIX_REQUIRE_SERVICES=1`) its absence fails the test instead.
public enum RequiredServices {
    /// The process environment the tests run in.
    public static let environment = ProcessInfo.processInfo.environment

    /// Whether an absent service fails the test (CI) rather than skipping it.
    public static var areRequired: Bool {
        environment["CI"] == "true" || environment["RESTARTIX_REQUIRE_SERVICES"] == "1"
    }

    /// The variable `name`, or nil when it is unset or empty.
    public static func value(_ name: String) -> String? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        return text
    }

    /// Whether a suite needing `names` runs: when they are all set, or when services are
    /// required (then ``require(_:)`` fails it loudly instead of letting it skip).
    public static func shouldRun(_ names: String...) -> Bool {
        areRequired || names.allSatisfy { value($0) != nil }
    }

    /// The variable `name`; when it is missing, records an issue naming it and throws
    /// ``MissingService``.
    public static func require(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        if let text = value(name) { return text }
        Issue.record("\(name) is not set: run the tests with Scripts/test-all (services are required under CI=true)", sourceLocation: sourceLocation)
        throw MissingService(name: name)
    }
}

/// A service the environment does not name.
public struct MissingService: Error, CustomStringConvertible {
    /// The variable that is missing.
    public let name: String
    public init(name: String) { self.name = name }
    public var description: String { "missing service configuration \(name)" }
}

/// A directory of its own under the system's temporary directory, removed by ``remove()``.
public struct TemporaryDirectory: Sendable {
    /// The directory.
    public let url: URL

    /// Creates `restartix-<label>-<uuid>`.
    public init(_ label: String) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("restartix-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// A path inside the directory.
    public func path(_ name: String) -> String { url.appendingPathComponent(name).path }

    /// Removes the directory and everything in it.
    public func remove() { try? FileManager.default.removeItem(at: url) }
}
