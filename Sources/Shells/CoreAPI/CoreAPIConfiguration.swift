import Foundation
import Logging
import RestartixKit

/// The Core API's configuration, read from the environment by the shell only.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `HOST`, `PORT` | listen address | `127.0.0.1`, `8080` |
/// | `DATABASE_URL` | the platform database, admin role (`postgres://` through PgBouncer in production) | unset: embedded SQLite |
/// | `DATABASE_APP_URL` | the tenant database, restricted app role (required with `DATABASE_URL`) | the embedded SQLite file |
/// | `RESTARTIX_SQLITE_PATH` | the embedded SQLite file | `.restartix/restartix.sqlite` |
/// | `LOG_LEVEL` | swift-log level | `info` |
struct CoreAPIConfiguration: Sendable {
    var host = "127.0.0.1"
    var port = 8080
    var database: DatabaseConfiguration
    /// The tenant-scoped app database (`TenantDatabase`): the restricted app role on Postgres,
    /// app connections on the same SQLite file on the embedded default.
    var appDatabase: DatabaseConfiguration
    /// True when no database was configured and the embedded SQLite default is in use.
    var isEmbeddedDefault: Bool
    var logLevel: Logger.Level = .info

    static let defaultSQLitePath = ".restartix/restartix.sqlite"

    init(database: DatabaseConfiguration, appDatabase: DatabaseConfiguration? = nil, isEmbeddedDefault: Bool) {
        self.database = database
        self.appDatabase = appDatabase ?? database
        self.isEmbeddedDefault = isEmbeddedDefault
    }

    init(environment: [String: String]) throws {
        if let url = environment["DATABASE_URL"], !url.isEmpty {
            database = try DatabaseConfiguration(url: url)
            guard let appURL = environment["DATABASE_APP_URL"], !appURL.isEmpty else {
                throw ConfigurationError("DATABASE_APP_URL must be set with DATABASE_URL: tenant data is served through the restricted app role")
            }
            appDatabase = try DatabaseConfiguration(url: appURL)
            isEmbeddedDefault = false
        } else {
            database = DatabaseConfiguration(sqlitePath: environment["RESTARTIX_SQLITE_PATH"] ?? Self.defaultSQLitePath)
            appDatabase = database
            isEmbeddedDefault = true
        }
        if let host = environment["HOST"], !host.isEmpty { self.host = host }
        if let text = environment["PORT"] {
            guard let port = Int(text), (0...65535).contains(port) else {
                throw ConfigurationError("PORT must be a number from 0 to 65535")
            }
            self.port = port
        }
        if let text = environment["LOG_LEVEL"] {
            guard let level = Logger.Level(rawValue: text.lowercased()) else {
                throw ConfigurationError("LOG_LEVEL must be one of trace, debug, info, notice, warning, error, critical")
            }
            logLevel = level
        }
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum ProcessEnvironment {
    static var current: [String: String] { ProcessInfo.processInfo.environment }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(1)
    }
}
