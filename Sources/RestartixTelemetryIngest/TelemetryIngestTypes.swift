public import Foundation
public import RestartixCore
public import RestartixTelemetry

/// A Telemetry API refusal or failure (``TelemetryIngest``). Details name sequences, counts
/// and rules, never a coordinate, a token or a key.
public typealias TelemetryIngestError = DomainError<TelemetryIngestErrorDomain>

/// The `ingest` error domain.
public enum TelemetryIngestErrorDomain: ErrorDomain {
    public static let name = "ingest"

    public static func httpStatus(for code: ErrorCode<TelemetryIngestErrorDomain>) -> Int {
        switch code {
        case .notStarted: 404
        case .wrongSession: 403
        case .finished, .sequenceConflict, .sequenceInProgress, .neighbourInProgress, .startInProgress: 409
        case .sessionFull: 413
        case .patientSessionLimit, .sessionBusy: 429
        case .sequenceOutOfRange, .overlapsNeighbour, .unknownExercise, .exerciseChanged, .emptyBatch: 422
        case .busy, .tooManySessions, .draining, .storage, .openElsewhere: 503
        default: 500
        }
    }

    public static func isTransient(_ code: ErrorCode<TelemetryIngestErrorDomain>) -> Bool {
        [.busy, .tooManySessions, .draining, .storage, .sequenceInProgress, .neighbourInProgress, .startInProgress, .openElsewhere, .patientSessionLimit, .sessionBusy]
            .contains(code)
    }
}

extension ErrorCode where Domain == TelemetryIngestErrorDomain {
    /// The session was never started here (or it finished long ago): start it first.
    public static var notStarted: Self { Self("notStarted") }
    /// The token is for another session, clinic or patient than the one addressed.
    public static var wrongSession: Self { Self("wrongSession") }
    /// The session is finishing or finished: it takes no more batches.
    public static var finished: Self { Self("finished") }
    /// A batch of this sequence number was received before with other content.
    public static var sequenceConflict: Self { Self("sequenceConflict") }
    /// A batch of this sequence number is being stored by another request: retry.
    public static var sequenceInProgress: Self { Self("sequenceInProgress") }
    /// The batch's frames would overlap those of a neighbouring batch still being stored by
    /// another request: retry (then the answer is final: stored, or ``overlapsNeighbour``).
    public static var neighbourInProgress: Self { Self("neighbourInProgress") }
    /// As many of the session's batches are being stored as one session may have at once
    /// (``TelemetryIngest/Configuration/maximumConcurrentBatchesPerSession``): retry.
    public static var sessionBusy: Self { Self("sessionBusy") }
    /// The session is being started by another request (its spool is being made): retry.
    public static var startInProgress: Self { Self("startInProgress") }
    /// The patient holds as many open sessions on this instance as it may
    /// (``TelemetryIngest/Configuration/maximumOpenSessionsPerPatient``): finish one (or let it
    /// go idle) first.
    public static var patientSessionLimit: Self { Self("patientSessionLimit") }
    /// The session holds as many frames or batches as it may.
    public static var sessionFull: Self { Self("sessionFull") }
    /// A sequence number past the session's batch limit.
    public static var sequenceOutOfRange: Self { Self("sequenceOutOfRange") }
    /// A batch with no frame and no event.
    public static var emptyBatch: Self { Self("emptyBatch") }
    /// The batch's frames do not fall between its neighbours' (by sequence number).
    public static var overlapsNeighbour: Self { Self("overlapsNeighbour") }
    /// The exercise has no profile.
    public static var unknownExercise: Self { Self("unknownExercise") }
    /// A resume names another exercise than the session's.
    public static var exerciseChanged: Self { Self("exerciseChanged") }
    /// Too many batches are being stored at once: retry after `Retry-After`.
    public static var busy: Self { Self("busy") }
    /// The process holds as many open sessions as it may: retry after `Retry-After`.
    public static var tooManySessions: Self { Self("tooManySessions") }
    /// Another instance holds the session open (its spool has the batches): retry after
    /// `Retry-After`; a deployment of several instances routes a session's requests to one.
    public static var openElsewhere: Self { Self("openElsewhere") }
    /// The service is shutting down: retry (another instance, or this one after its restart).
    public static var draining: Self { Self("draining") }
    /// The spool or the object store could not be written or read: retry.
    public static var storage: Self { Self("storage") }
}

/// Where a session stands, as `GET /v1/sessions/{id}` reports it.
public struct TelemetrySessionStatus: Sendable, Hashable {
    /// The session's state.
    public enum State: String, Sendable, Hashable, Codable {
        /// Taking batches.
        case open
        /// Finishing: the kernels are running, the blob and aggregates being written.
        case finishing
        /// Finished; the aggregates are stored here and not yet delivered to the Core API (it
        /// could not be reached): they will be, when it can.
        case pending
        /// Finished and the aggregates delivered.
        case delivered
        /// Finished, and the Core API refused the aggregates for good (kept for an operator).
        case failed
        /// Abandoned: finished without a single batch (nothing to measure or deliver).
        case abandoned
    }

    public let sessionID: UUID
    public let state: State
    /// The exercise (``ExerciseProfile/exerciseName``).
    public let exercise: String
    /// Batches and frames received (and acknowledged: stored in the spool).
    public let batches: Int
    public let frames: Int
    /// One past the highest sequence number received (0 before any).
    public let nextSequence: Int
    /// Sequence numbers below ``nextSequence`` never received, as closed ranges.
    public let gaps: [ClosedRange<Int>]
    /// After finishing: repetitions counted, and frames left out for overlapping the batch
    /// before them.
    public let reps: Int?
    public let droppedFrames: Int?

    public init(
        sessionID: UUID, state: State, exercise: String, batches: Int, frames: Int, nextSequence: Int, gaps: [ClosedRange<Int>],
        reps: Int? = nil, droppedFrames: Int? = nil
    ) {
        self.sessionID = sessionID
        self.state = state
        self.exercise = exercise
        self.batches = batches
        self.frames = frames
        self.nextSequence = nextSequence
        self.gaps = gaps
        self.reps = reps
        self.droppedFrames = droppedFrames
    }
}

/// What storing a batch did.
public struct TelemetryBatchReceipt: Sendable, Hashable {
    public let sequence: Int
    /// The batch had been received before with the same content: nothing was stored again.
    public let duplicate: Bool
    /// The session after it.
    public let status: TelemetrySessionStatus
}

/// Where a finished session's aggregates go: the Core API's internal endpoint
/// (``CoreAPIAggregatesClient``), or a test's stand-in.
public protocol AggregatesSink: Sendable {
    /// Delivers `aggregates` of `session`. Idempotent by session on the receiving side: a
    /// second delivery of the same session writes nothing and answers `delivered(duplicate: true)`.
    func deliver(_ aggregates: SessionAggregates, session: UUID) async -> AggregatesDelivery
}

/// How a delivery went.
public enum AggregatesDelivery: Sendable, Hashable {
    /// Recorded (now, or by an earlier delivery: `duplicate`).
    case delivered(duplicate: Bool)
    /// Not now (unreachable, timed out, 5xx, 429): try again later.
    case retryLater(String)
    /// Refused for good (4xx): trying again will not help.
    case rejected(String)
}
