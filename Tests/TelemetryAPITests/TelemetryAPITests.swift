import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Prometheus
import RestartixCrypto
import RestartixKit
import RestartixTelemetry
import RestartixTelemetryIngest
import RestartixTestSupport
import ServiceSupport
@testable import TelemetryAPI
import Testing

/// The Telemetry API's routes in process (HummingbirdTesting): the shared edge, the session
/// token on every session route, batches in both forms, and every refusal before any work.
@Suite("Telemetry API", .timeLimit(.minutes(3)))
struct TelemetryAPITests {
    static let secret = "telemetry-api-test-session-secret-0123456789"
    static let retired = "telemetry-api-retired-session-secret-0123456"

    struct Fixture {
        let directory: TemporaryDirectory
        let sink = RecordingSink()
        let configuration: TelemetryAPIConfiguration
        let tokens: SessionTokens

        init(_ label: String, secrets: [String] = [TelemetryAPITests.secret]) throws {
            directory = try TemporaryDirectory(label)
            var configuration = TelemetryAPIConfiguration(
                sessionTokens: try SessionTokens(secrets: secrets),
                serviceAccounts: try ServiceAccountTokens(secrets: ["telemetry-api-test-service-secret-0123456789"])
            )
            configuration.port = 0
            configuration.directory = directory.path("telemetry")
            configuration.spoolDirectory = directory.path("spool")
            configuration.logLevel = .critical
            self.configuration = configuration
            tokens = try SessionTokens(secrets: secrets)
        }

        func app() async throws -> some ApplicationProtocol {
            try await buildApplication(configuration: configuration, sink: sink)
        }

        /// The batches in the spool, of every session.
        func spooled() async throws -> Int {
            try await TelemetryAPITests.spooledBatches(in: directory.path("spool"))
        }
    }

    /// The batches a spool directory holds, every session's.
    static func spooledBatches(in path: String) async throws -> Int {
        let spool = try DirectorySpool(directory: URL(fileURLWithPath: path))
        var count = 0
        for (organization, session) in try spool.sessions() {
            count += try await spool.read(organization: organization, session: session)?.batches.count ?? 0
        }
        return count
    }

    static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
        try? JSONDecoder().decode(T.self, from: Data(String(buffer: response.body).utf8))
    }

    struct Status: Decodable {
        let session_id: String
        let state: String
        let batches: Int
        let frames: Int
        let next_sequence: Int
        let gaps: [[Int]]
        let reps: Int?
    }

    struct Receipt: Decodable {
        let sequence: Int
        let duplicate: Bool
        let session: Status
    }

    @Test("the OpenAPI document is served, and it and the router name the same operations")
    func contract() async throws {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(TelemetryOpenAPIDocument.json.utf8)) as? [String: Any])
        #expect(object["openapi"] as? String == "3.1.0")
        let documented = try OpenAPIContract.documentedOperations(TelemetryOpenAPIDocument.json)
        let fixture = try Fixture("telemetry-contract")
        defer { fixture.directory.remove() }
        let spool = try DirectorySpool(directory: URL(fileURLWithPath: fixture.directory.path("spool")))
        let store = try LocalObjectStore(directory: URL(fileURLWithPath: fixture.directory.path("telemetry")))
        let ingest = TelemetryIngest(spool: spool, store: store, sink: fixture.sink, configuration: .init(), logger: Logger(label: "test"))
        let router = makeRouter(configuration: fixture.configuration, ingest: ingest, spool: spool, store: store, metrics: .init())
        let routed = OpenAPIContract.routedOperations(router)
        #expect(routed == documented, "routed but not documented: \(routed.subtracting(documented).sorted()); documented but not routed: \(documented.subtracting(routed).sorted())")
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                #expect(response.status == .ok && String(buffer: response.body) == TelemetryOpenAPIDocument.json)
            }
        }
    }

    @Test("health with a request id; 405 with Allow for another method; 404 as problem+json; ready")
    func edge() async throws {
        let fixture = try Fixture("telemetry-edge")
        defer { fixture.directory.remove() }
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/health", method: .get, headers: [.requestID: "probe-1"]) { response in
                #expect(response.status == .ok && String(buffer: response.body) == #"{"status":"ok"}"#)
                #expect(response.headers[.requestID] == "probe-1")
            }
            try await client.execute(uri: "/health", method: .put) { response in
                #expect(response.status == .methodNotAllowed && response.headers[.allow] == "GET, HEAD")
                #expect(response.headers[.contentType] == Problem.mediaType)
            }
            try await client.execute(uri: "/v1/sessions", method: .get) { response in
                #expect(response.status == .notFound)
                let problem = Self.decode(Problem.self, response)
                #expect(problem?.code == "http.notFound" && problem?.requestId == response.headers[.requestID])
            }
            try await client.execute(uri: "/ready", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test("ready is 503 ingest.storage when the spool cannot be listed, naming no path")
    func notReady() async throws {
        let fixture = try Fixture("telemetry-not-ready")
        defer { fixture.directory.remove() }
        let app = try await fixture.app()
        // The spool directory replaced by a file: it can no longer be listed.
        let spool = fixture.directory.path("spool")
        try FileManager.default.removeItem(atPath: spool)
        try Data("not a directory".utf8).write(to: URL(fileURLWithPath: spool))
        try await app.test(.router) { client in
            try await client.execute(uri: "/ready", method: .get) { response in
                let problem = Self.decode(Problem.self, response)
                #expect(response.status == .serviceUnavailable && problem?.code == "ingest.storage", "\(String(buffer: response.body))")
                #expect(problem?.detail.contains(fixture.directory.path("")) == false)
            }
        }
    }

    @Test("a session through HTTP: start (201, then 200 resumed), binary and JSON batches, a retry (200 duplicate), a gap reported, finish delivers the aggregates")
    func session() async throws {
        let fixture = try Fixture("telemetry-session")
        defer { fixture.directory.remove() }
        let session = UUIDv7.generate(), org = UUIDv7.generate(), patient = UUIDv7.generate()
        let token = try fixture.tokens.issue(session: session, organization: org, patient: patient)
        let batches = SyntheticSquats.batches(of: SyntheticSquats(repetitions: 3).frames(startingAt: 10), size: 45).map { TelemetryBatch(frames: $0) }
        try await fixture.app().test(.router) { client in
            let start = ByteBuffer(string: #"{"exercise":"knee_flexion"}"#)
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/start", method: .post, headers: Self.bearer(token), body: start) { response in
                #expect(response.status == .created && Self.decode(Status.self, response)?.state == "open")
            }
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/start", method: .post, headers: Self.bearer(token), body: start) { response in
                #expect(response.status == .ok)
            }
            for (sequence, batch) in batches.enumerated() where sequence != 1 {
                var headers = Self.bearer(token)
                headers[.contentType] = sequence.isMultiple(of: 2) ? TelemetryBatch.binaryMediaType : "application/json"
                let body = sequence.isMultiple(of: 2) ? batch.encodeBinary() : batch.encodeJSON()
                try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/batches/\(sequence)", method: .put, headers: headers, body: ByteBuffer(bytes: body)) { response in
                    #expect(response.status == .created)
                    #expect(Self.decode(Receipt.self, response)?.session.gaps == (sequence == 0 ? [] : [[1, 1]]))
                }
            }
            var headers = Self.bearer(token)
            headers[.contentType] = TelemetryBatch.binaryMediaType
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/batches/1", method: .put, headers: headers, body: ByteBuffer(bytes: batches[1].encodeBinary())) { response in
                #expect(response.status == .created && Self.decode(Receipt.self, response)?.session.gaps == [])
            }
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/batches/1", method: .put, headers: headers, body: ByteBuffer(bytes: batches[1].encodeBinary())) { response in
                #expect(response.status == .ok && Self.decode(Receipt.self, response)?.duplicate == true)
            }
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/finish", method: .post, headers: Self.bearer(token)) { response in
                let status = Self.decode(Status.self, response)
                #expect(response.status == .ok && status?.state == "delivered" && status?.reps == 3)
            }
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)", method: .get, headers: Self.bearer(token)) { response in
                #expect(Self.decode(Status.self, response)?.state == "delivered")
            }
        }
        #expect(fixture.sink.deliveries.map(\.session) == [session])
    }

    @Test("token abuse is refused before any work: none, malformed, expired, signed with a retired secret, for another session, another patient's for the same session; a previous secret during rotation is accepted")
    func tokenAbuse() async throws {
        let fixture = try Fixture("telemetry-tokens", secrets: [Self.secret, "telemetry-api-previous-session-secret-012345"])
        defer { fixture.directory.remove() }
        let session = UUIDv7.generate(), org = UUIDv7.generate(), patient = UUIDv7.generate()
        let good = try fixture.tokens.issue(session: session, organization: org, patient: patient)
        let previous = try SessionTokens(secrets: ["telemetry-api-previous-session-secret-012345"]).issue(session: session, organization: org, patient: patient)
        let expired = try SessionTokens(secrets: [Self.secret], clock: { Date().addingTimeInterval(-7200) }).issue(session: session, organization: org, patient: patient, lifetime: .seconds(60))
        let retired = try SessionTokens(secrets: [Self.retired]).issue(session: session, organization: org, patient: patient)
        let otherSession = try fixture.tokens.issue(session: UUIDv7.generate(), organization: org, patient: patient)
        let otherPatient = try fixture.tokens.issue(session: session, organization: org, patient: UUIDv7.generate())
        let otherClinic = try fixture.tokens.issue(session: session, organization: UUIDv7.generate(), patient: patient)
        let batch = SyntheticSquats.batches(of: SyntheticSquats(repetitions: 1).frames(), size: 30)[0]
        try await fixture.app().test(.router) { client in
            let path = "/v1/sessions/\(session.lowercasedString)"
            try await client.execute(uri: "\(path)/start", method: .post, headers: Self.bearer(good), body: ByteBuffer(string: #"{"exercise":"knee_flexion"}"#)) { #expect($0.status == .created) }
            let refusals: [(String, [HTTPField.Name: String], HTTPResponse.Status, String)] = [
                ("no token", [:], .unauthorized, "request.missingToken"),
                ("malformed", [.authorization: "Bearer not-a-token"], .unauthorized, "token.malformedToken"),
                ("expired", [.authorization: "Bearer \(expired)"], .unauthorized, "token.expired"),
                ("retired secret", [.authorization: "Bearer \(retired)"], .unauthorized, "token.invalidSignature"),
                ("another session", [.authorization: "Bearer \(otherSession)"], .forbidden, "ingest.wrongSession"),
                ("another patient", [.authorization: "Bearer \(otherPatient)"], .forbidden, "ingest.wrongSession"),
                ("another clinic", [.authorization: "Bearer \(otherClinic)"], .forbidden, "ingest.wrongSession"),
            ]
            for (name, extra, status, code) in refusals {
                var headers: HTTPFields = [.contentType: TelemetryBatch.binaryMediaType]
                for (field, value) in extra { headers[field] = value }
                try await client.execute(uri: "\(path)/batches/0", method: .put, headers: headers, body: ByteBuffer(bytes: TelemetryBatch(frames: batch).encodeBinary())) { response in
                    #expect(response.status == status, "\(name)")
                    let problem = Self.decode(Problem.self, response)
                    #expect(problem?.code.hasPrefix(code.split(separator: ".")[0] + ".") == true, "\(name): \(problem?.code ?? "-")")
                    #expect(!String(buffer: response.body).contains(good) && !String(buffer: response.body).contains("eyJ"))
                }
            }
            #expect(try await fixture.spooled() == 0)
            var headers = Self.bearer(previous)
            headers[.contentType] = TelemetryBatch.binaryMediaType
            try await client.execute(uri: "\(path)/batches/0", method: .put, headers: headers, body: ByteBuffer(bytes: TelemetryBatch(frames: batch).encodeBinary())) { response in
                #expect(response.status == .created)
            }
        }
        #expect(try await fixture.spooled() == 1)
    }

    @Test("bad batches: 415 for another type, 413 over the size limit, 400 for a body that is not its type, 422 for a broken rule; each names the batch's number and never a coordinate, and nothing of it is stored")
    func badBatches() async throws {
        let fixture = try Fixture("telemetry-bad")
        defer { fixture.directory.remove() }
        let session = UUIDv7.generate()
        let token = try fixture.tokens.issue(session: session, organization: UUIDv7.generate(), patient: UUIDv7.generate())
        let good = TelemetryBatch(frames: SyntheticSquats.batches(of: SyntheticSquats(repetitions: 1).frames(), size: 30)[0])
        var nan = good.encodeBinary()
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { nan.replaceSubrange(40..<44, with: $0) }
        let json = String(decoding: good.encodeJSON(), as: UTF8.self)
        // A frame one landmark short, a player event of no known type, 601 frames.
        var object = try #require(try JSONSerialization.jsonObject(with: Data(good.encodeJSON())) as? [String: Any])
        var frames = try #require(object["frames"] as? [[String: Any]])
        frames[3]["landmarks"] = Array(try #require(frames[3]["landmarks"] as? [Any]).dropLast())
        object["frames"] = frames
        let shortFrame = Array(try JSONSerialization.data(withJSONObject: object))
        let unknownEvent = Array(#"{"frames":[],"events":[{"video_id":"intro","type":"moonwalk","t":1.25}]}"#.utf8)
        let tooMany = Array(("{\"frames\":[" + Array(repeating: #"{"t":0,"landmarks":[]}"#, count: TelemetryBatch.maximumFrames + 1).joined(separator: ",") + "]}").utf8)
        let cases: [(String, String, [UInt8], HTTPResponse.Status, String)] = [
            ("application/json", "7", shortFrame, .unprocessableContent, "telemetry.wrongLandmarkCount"),
            ("application/json", "7", unknownEvent, .unprocessableContent, "telemetry.unknownEventType"),
            ("application/json", "7", tooMany, .contentTooLarge, "telemetry.tooLarge"),
            ("text/plain", "7", Array("hello".utf8), .unsupportedMediaType, "request.unsupportedMediaType"),
            // Media types with no type before the parameters (these once trapped the process).
            ("", "7", good.encodeBinary(), .unsupportedMediaType, "request.unsupportedMediaType"),
            (";", "7", good.encodeBinary(), .unsupportedMediaType, "request.unsupportedMediaType"),
            (";;charset=utf-8", "7", good.encodeBinary(), .unsupportedMediaType, "request.unsupportedMediaType"),
            (" ; x", "7", good.encodeBinary(), .unsupportedMediaType, "request.unsupportedMediaType"),
            ("Application/JSON ; charset=utf-8", "7", unknownEvent, .unprocessableContent, "telemetry.unknownEventType"),
            (TelemetryBatch.binaryMediaType, "7", Array(repeating: 0, count: TelemetryBatch.maximumBinarySize + 1), .contentTooLarge, "telemetry.tooLarge"),
            ("application/json", "7", Array(json.utf8) + Array(repeating: 0x20, count: 2 << 20), .contentTooLarge, "telemetry.tooLarge"),
            ("application/json", "7", good.encodeBinary(), .badRequest, "telemetry.malformedBatch"),
            (TelemetryBatch.binaryMediaType, "7", good.encodeJSON(), .badRequest, "telemetry.malformedBatch"),
            (TelemetryBatch.binaryMediaType, "7", nan, .unprocessableContent, "telemetry.nonFiniteValue"),
            ("application/json", "7", Array(json.replacingOccurrences(of: "\"t\":", with: "\"t\":-").utf8), .unprocessableContent, "telemetry.timestampNotIncreasing"),
            (TelemetryBatch.binaryMediaType, "-1", good.encodeBinary(), .badRequest, "request.invalidField"),
        ]
        try await fixture.app().test(.router) { client in
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/start", method: .post, headers: Self.bearer(token), body: ByteBuffer(string: #"{"exercise":"knee_flexion"}"#)) { #expect($0.status == .created) }
            for (type, sequence, body, status, code) in cases {
                var headers = Self.bearer(token)
                headers[.contentType] = type
                try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/batches/\(sequence)", method: .put, headers: headers, body: ByteBuffer(bytes: body)) { response in
                    let problem = Self.decode(Problem.self, response)
                    #expect(response.status == status && problem?.code == code, "\(type) \(status): \(problem?.code ?? "-") \(problem?.detail ?? "")")
                    if code.hasPrefix("telemetry.") { #expect(problem?.detail.hasPrefix("batch 7:") == true, "\(problem?.detail ?? "")") }
                    // Never a coordinate, a time or a name from the body: no decimal fraction, no event name.
                    let detail = problem?.detail ?? ""
                    #expect(detail.firstMatch(of: /[0-9]\.[0-9]/) == nil && !detail.contains("moonwalk") && !detail.contains("intro"), "\(detail)")
                }
            }
            try await client.execute(uri: "/v1/sessions/\(session.lowercasedString)/start", method: .post, headers: Self.bearer(token), body: ByteBuffer(string: #"{"exercise":"moonwalk"}"#)) { response in
                #expect(response.status == .unprocessableContent && Self.decode(Problem.self, response)?.code == "ingest.unknownExercise")
            }
        }
        #expect(try await fixture.spooled() == 0)
    }

    @Test("the configuration: outside development and test both secrets are required, named and never echoed; CORE_API_URL must be http(s); limits read; on the embedded default the Core API's local secrets are used")
    func configuration() throws {
        let directory = try TemporaryDirectory("telemetry-configuration")
        defer { directory.remove() }
        let sqlite = ["RESTARTIX_SQLITE_PATH": directory.path("data/restartix.sqlite")]
        let local = try TelemetryAPIConfiguration(environment: sqlite)
        #expect(FileManager.default.fileExists(atPath: directory.path("data/\(LocalSecrets.telemetrySessionSecret)")))
        let secret = try LocalSecrets.secret(named: LocalSecrets.telemetrySessionSecret, what: "", in: URL(fileURLWithPath: directory.path("data")))
        let token = try SessionTokens(secrets: [secret]).issue(session: UUID(), organization: UUID(), patient: UUID())
        #expect(throws: Never.self) { try local.sessionTokens.verify(token) }
        for (variables, mentions) in [
            (["APP_ENV": "production"], "TELEMETRY_SESSION_TOKEN_SECRET"),
            (["APP_ENV": "production", "TELEMETRY_SESSION_TOKEN_SECRET": Self.secret], "TELEMETRY_INTERNAL_SVC_ACCT_TOKEN"),
            (["TELEMETRY_SESSION_TOKEN_SECRET": "short-secret"], "TELEMETRY_SESSION_TOKEN_SECRET"),
            (["CORE_API_URL": "ftp://core"], "CORE_API_URL"),
            (["TELEMETRY_IDLE_TIMEOUT_SECONDS": "0"], "TELEMETRY_IDLE_TIMEOUT_SECONDS"),
            (["TELEMETRY_S3_SSE": "rot13"], "TELEMETRY_S3_SSE"),
        ] {
            let error = #expect(throws: ConfigurationError.self) { try TelemetryAPIConfiguration(environment: sqlite.merging(variables) { $1 }) }
            #expect(error?.detail.contains(mentions) == true, "\(error?.detail ?? "")")
            #expect(error?.detail.contains("short-secret") == false)
        }
        let tuned = try TelemetryAPIConfiguration(environment: sqlite.merging([
            "TELEMETRY_IDLE_TIMEOUT_SECONDS": "30", "TELEMETRY_MAX_OPEN_SESSIONS": "7", "CORE_API_URL": "http://core.internal:8080", "TELEMETRY_S3_SSE": "aws:kms",
        ]) { $1 })
        #expect(tuned.ingest.idleTimeout == .seconds(30) && tuned.ingest.maximumOpenSessions == 7 && tuned.coreAPIURL.host == "core.internal")
        #expect(tuned.ingest.serverSideEncryption == .kms(keyID: nil))
    }
}
