import Foundation
import HTTPTypes
import Hummingbird
import Logging
import RestartixCore
import RestartixCrypto
import RestartixKit
import RestartixTelemetry
import RestartixTelemetryIngest
import ServiceSupport

/// A session as the routes answer it (``TelemetrySessionStatus``).
struct SessionStatusBody: ResponseCodable, Equatable {
    let session_id: String
    /// `open`, `finishing`, `pending` (finished; the aggregates wait for the Core API),
    /// `delivered`, `failed` (refused by the Core API) or `abandoned` (finished without a batch).
    let state: String
    let exercise: String
    let batches: Int
    let frames: Int
    /// One past the highest sequence number received: where a resuming client carries on.
    let next_sequence: Int
    /// Sequence numbers below `next_sequence` never received, as `[first, last]` pairs.
    let gaps: [[Int]]
    let reps: Int?
    let dropped_frames: Int?

    init(_ status: TelemetrySessionStatus) {
        session_id = status.sessionID.lowercasedString
        state = status.state.rawValue
        exercise = status.exercise
        batches = status.batches
        frames = status.frames
        next_sequence = status.nextSequence
        gaps = status.gaps.map { [$0.lowerBound, $0.upperBound] }
        reps = status.reps
        dropped_frames = status.droppedFrames
    }
}

/// What `PUT /v1/sessions/{id}/batches/{sequence}` answers.
struct BatchReceiptBody: ResponseCodable, Equatable {
    let sequence: Int
    /// The batch had been received before: nothing was stored again.
    let duplicate: Bool
    let session: SessionStatusBody
}

/// `POST /v1/sessions/{id}/start`'s body.
struct StartSessionBody: Decodable {
    /// The exercise (``ExerciseProfile/exerciseName``: `knee_flexion`...).
    let exercise: String
}

/// A body whose media type the route does not take: 415, naming the ones it does.
struct UnsupportedMediaType: RestartixError {
    static let domain = "request"
    let accepted: [String]
    var codeName: String { "unsupportedMediaType" }
    var safeDetail: String { "send Content-Type \(accepted.joined(separator: " or "))" }
    var httpStatus: Int { 415 }
    var description: String { restartixDescription }
}

/// A refusal for lack of room (too many sessions or batches at once, or draining): 503 with
/// `Retry-After`.
struct RetryLater: RestartixError, ProblemHeaders {
    static let domain = TelemetryIngestError.domain
    let error: TelemetryIngestError
    let after: Duration
    var codeName: String { error.codeName }
    var safeDetail: String { error.safeDetail }
    var httpStatus: Int { 503 }
    var isTransient: Bool { true }
    var description: String { restartixDescription }
    var problemHeaders: HTTPFields { [.retryAfter: "\(max(1, after.components.seconds))"] }
}

/// The session routes, for a patient's browser with the session token the Core API issued
/// (`Authorization: Bearer`, checked by ``SessionTokenMiddleware`` before anything else):
///
/// - `POST /v1/sessions/{id}/start` `{"exercise": "knee_flexion"}`: starts the session, 201;
///   or resumes it, 200, with its status (which batches arrived, where to carry on); 429 when
///   the patient has as many open sessions as it may.
/// - `PUT /v1/sessions/{id}/batches/{sequence}`: one batch (``TelemetryBatch``), binary
///   (`application/vnd.restartix.telemetry-batch`) or JSON; 201 stored, 200 a retry of a batch
///   stored before (nothing stored twice); 409 the same number with other content, or (retry)
///   this number, or a neighbour whose frames this batch's would overlap, still being stored; 413 over
///   the size limits; 400/422 a body that breaks a rule, naming it and the batch's number,
///   nothing of that batch stored; 429 (retry) with more of this session's batches being
///   stored at once than it may have; 503 with `Retry-After` when this instance is full.
/// - `POST /v1/sessions/{id}/finish`: runs the kernels, stores the replay blob and delivers the
///   aggregates to the Core API; answers the final status (`delivered`, or `pending` when the
///   Core API could not be reached: they are delivered when it can be).
/// - `GET /v1/sessions/{id}`: the status.
enum SessionRoutes {
    /// The largest JSON batch body: 2 MiB (``TelemetryBatch/maximumFrames`` frames of about 3 KB).
    static let maximumJSONBatch = 2 << 20

    static func add(to router: Router<TelemetryRequestContext>, ingest: TelemetryIngest, tokens: SessionTokens, retryAfter: Duration) {
        let group = router.group("v1/sessions/{id}").add(middleware: SessionTokenMiddleware(tokens: tokens))
        group.post("start") { request, context -> EditedResponse<SessionStatusBody> in
            let claims = try context.requireSession()
            let body = try await request.decode(as: StartSessionBody.self, context: context)
            let (status, resumed) = try await mapped(retryAfter) { () async throws(TelemetryIngestError) in
                try await ingest.start(claims, exercise: body.exercise)
            }
            return EditedResponse(status: resumed ? .ok : .created, response: SessionStatusBody(status))
        }
        group.put("batches/{sequence}") { request, context -> EditedResponse<BatchReceiptBody> in
            let claims = try context.requireSession()
            guard let text = context.parameters.get("sequence"), let sequence = Int(text), String(sequence) == text, sequence >= 0 else {
                throw RequestError(.invalidField, "sequence must be a whole number from 0")
            }
            let batch = try await decodeBatch(request, sequence: sequence)
            let receipt = try await mapped(retryAfter) { () async throws(TelemetryIngestError) in
                try await ingest.ingest(batch, sequence: sequence, for: claims)
            }
            return EditedResponse(
                status: receipt.duplicate ? .ok : .created,
                response: BatchReceiptBody(sequence: receipt.sequence, duplicate: receipt.duplicate, session: SessionStatusBody(receipt.status))
            )
        }
        group.post("finish") { _, context -> SessionStatusBody in
            let claims = try context.requireSession()
            return SessionStatusBody(try await mapped(retryAfter) { () async throws(TelemetryIngestError) in try await ingest.finish(claims) })
        }
        group.get { _, context -> SessionStatusBody in
            let claims = try context.requireSession()
            return SessionStatusBody(try await mapped(retryAfter) { () async throws(TelemetryIngestError) in try await ingest.status(claims) })
        }
    }

    /// The body as a batch: by its media type, within its form's size limit (413 past it,
    /// checked on `Content-Length` first), refused whole at its first broken rule with the
    /// batch's number in the detail.
    static func decodeBatch(_ request: Request, sequence: Int) async throws -> TelemetryBatch {
        // The media type before any parameter. Not `split(separator:)[0]`: that drops empty
        // pieces, so a header of "" or ";" has no first piece and the index traps.
        let type = request.headers[.contentType].map { $0.prefix { $0 != ";" }.trimmingCharacters(in: .whitespaces).lowercased() }
        let binary: Bool
        switch type {
        case TelemetryBatch.binaryMediaType: binary = true
        case "application/json": binary = false
        default: throw UnsupportedMediaType(accepted: [TelemetryBatch.binaryMediaType, "application/json"])
        }
        let limit = binary ? TelemetryBatch.maximumBinarySize : maximumJSONBatch
        let tooLarge = TelemetryError(.tooLarge, "batch \(sequence): a \(binary ? "binary" : "JSON") batch is at most \(limit) bytes")
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { throw tooLarge }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: limit) } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge
        }
        let bytes = Array(body.readableBytesView)
        do {
            return binary ? try TelemetryBatch.decodeBinary(bytes) : try TelemetryBatch.decodeJSON(bytes)
        } catch {
            throw TelemetryError(error.code, "batch \(sequence): \(error.detail)")
        }
    }

    /// Runs `body`; a refusal for lack of room becomes 503 with `Retry-After`.
    static func mapped<T>(_ retryAfter: Duration, _ body: () async throws(TelemetryIngestError) -> T) async throws -> T {
        do {
            return try await body()
        } catch where [.busy, .tooManySessions, .draining, .openElsewhere].contains(error.code) {
            throw RetryLater(error: error, after: retryAfter)
        }
    }
}

/// Verifies `Authorization: Bearer <session token>` (``SessionTokens``: signature under the
/// current or the previous secret, issuer, audience, times) and that the token is for the
/// session the path names, before the route reads a byte of the body: 401 for a token that
/// cannot be used (expired, another secret, malformed), 403 `ingest.wrongSession` for another
/// session's. Records the session, clinic and patient ids for the access log line.
struct SessionTokenMiddleware: RouterMiddleware {
    typealias Context = TelemetryRequestContext
    let tokens: SessionTokens

    func handle(_ request: Request, context: Context, next: @concurrent (Request, Context) async throws -> Response) async throws -> Response {
        let claims = try tokens.verify(try bearerToken(request))
        guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), id == claims.sessionID else {
            throw TelemetryIngestError(.wrongSession, "the token is for another session than the one addressed")
        }
        var context = context
        context.session = claims
        context.principal.record([
            "telemetry.session_id": .string(claims.sessionID.lowercasedString), "organization_id": .string(claims.organizationID.lowercasedString),
            "patient_id": .string(claims.patientID.lowercasedString),
        ])
        return try await next(request, context)
    }
}

extension TelemetryRequestContext {
    /// The session the token grants (set by ``SessionTokenMiddleware``).
    func requireSession() throws -> SessionTokens.Session {
        guard let session else { throw RequestError(.missingToken, "send Authorization: Bearer <session token>") }
        return session
    }
}
