import Foundation
import Hummingbird
import Logging
import RestartixKit

/// Builds the Core API: the database service, migrations on the embedded default, and routes.
func buildApplication(configuration: CoreAPIConfiguration) async throws -> some ApplicationProtocol {
    let logger = {
        var logger = Logger(label: "restartix.core-api")
        logger.logLevel = configuration.logLevel
        return logger
    }()

    if let path = configuration.database.sqliteFilePath {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }
    let database = Database(configuration: configuration.database, logger: logger)

    let router = Router()
    router.add(middleware: LogRequestsMiddleware(.debug))
    addHealthRoutes(to: router, database: database)

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "restartix-core-api"),
        services: [database],
        logger: logger
    )
    if configuration.isEmbeddedDefault {
        app.beforeServerStarts {
            try await Migrator(database: database, logger: logger).migrate()
            logger.notice(
                "Running on the embedded default: SQLite file, migrations applied; set DATABASE_URL for Postgres",
                metadata: ["db.path": "\(configuration.database.sqliteFilePath ?? ":memory:")"]
            )
        }
    }
    return app
}

/// `GET /health`: the process is up. `GET /ready`: the database answers.
func addHealthRoutes(to router: Router<BasicRequestContext>, database: Database) {
    router.get("health") { _, _ -> Response in
        jsonResponse(.ok, #"{"status":"ok"}"#)
    }
    router.get("ready") { _, context -> Response in
        do {
            try await database.read { conn in _ = try await conn.query("SELECT 1") }
            return jsonResponse(.ok, #"{"status":"ready"}"#)
        } catch {
            context.logger.warning("Readiness check failed", metadata: ["error": "\(error)"])
            return jsonResponse(.serviceUnavailable, #"{"status":"unavailable"}"#)
        }
    }
}

func jsonResponse(_ status: HTTPResponse.Status, _ json: String) -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json"],
        body: ResponseBody(byteBuffer: ByteBuffer(string: json))
    )
}
