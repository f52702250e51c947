import Foundation
import Hummingbird
import Logging
import RestartixKit
import RestartixTenancy

/// Builds the Core API: the database services, migrations on the embedded default, the tenancy
/// boot check, and routes.
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
    let tenants = TenantDatabase(configuration: configuration.appDatabase, logger: logger)

    let router = Router()
    router.add(middleware: LogRequestsMiddleware(.debug))
    addHealthRoutes(to: router, database: database)

    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "restartix-core-api"),
        services: [database, tenants],
        logger: logger
    )
    app.beforeServerStarts {
        try await prepareDatabases(configuration: configuration, database: database, tenants: tenants, logger: logger)
    }
    return app
}

/// Before serving: migrations on the embedded default, then the tenancy boot check. Throws (and
/// the server does not start) when the database would not keep clinics apart.
func prepareDatabases(
    configuration: CoreAPIConfiguration,
    database: Database,
    tenants: TenantDatabase,
    logger: Logger
) async throws {
    if configuration.isEmbeddedDefault {
        try await Migrator(database: database, logger: logger).migrate()
    }
    do {
        try await tenants.verifyIsolation()
    } catch let error as TenancyError {
        logger.critical("Refusing to start: tenant isolation is not enforced", metadata: ["problems": "\(error.problems)"])
        throw error
    }
    if configuration.isEmbeddedDefault {
        logger.notice(
            "Running on the embedded default: SQLite file, migrations applied; set DATABASE_URL and DATABASE_APP_URL for Postgres",
            metadata: ["db.path": "\(configuration.database.sqliteFilePath ?? ":memory:")"]
        )
    }
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
