@testable import CoreAPI
import Foundation
import Hummingbird
import Logging
import RestartixKit
import RestartixPlatform
import RestartixTenancy
import RestartixTestSupport

/// The Core API on the embedded default with the demo clinics, in a fresh directory, with a
/// development token for each demo person (DemoData.people, by handle).
enum DemoAPI {
    static func make(
        _ label: String, logHandler: (any LogHandler)? = nil, _ configure: (inout CoreAPIConfiguration) -> Void = { _ in }
    ) async throws -> (app: some ApplicationProtocol, directory: TemporaryDirectory, tokens: [String: String], configuration: CoreAPIConfiguration) {
        let directory = try TemporaryDirectory(label)
        var configuration = CoreAPIConfiguration(database: DatabaseConfiguration(sqlitePath: directory.path("data/restartix.sqlite")), isEmbeddedDefault: true)
        configuration.port = 0
        configuration.demoData = true
        configuration.logLevel = .critical
        let secret = "\(label)-test-secret-".padding(toLength: 48, withPad: "x", startingAt: 0)
        configuration.devTokenSecret = secret
        configure(&configuration)
        let app = try await buildApplication(configuration: configuration, logHandler: logHandler)
        let issuer = try await LocalDevIssuer(environment: .development, secret: secret)
        var tokens: [String: String] = [:]
        for person in DemoData.people {
            tokens[person.handle] = try await issuer.issue(user: person.userID, organization: person.organizationID)
        }
        return (app, directory, tokens, configuration)
    }
}
