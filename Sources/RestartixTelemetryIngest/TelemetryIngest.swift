import Crypto
public import Foundation
public import Logging
import Metrics
public import RestartixCrypto
public import RestartixKit
public import RestartixTelemetry
import Synchronization

/// The Telemetry API's engine: sessions a patient's browser streams pose frames and player
/// events into, finished through the kernels into aggregates for the Core API and a replay blob.
/// It never touches Postgres: everything it keeps is in two object stores.
///
/// **The spool** (``DirectorySpool``, a local directory) holds what is open: per session one
/// append-only file, its manifest then each acknowledged batch in the canonical binary form. A
/// batch is acknowledged only once the spool has it on disk, so a crash of the
/// process loses at most the batches not yet acknowledged, which their senders retry; memory
/// holds an index of each session (a few dozen bytes a batch), never its frames. That is the
/// per-session memory bound: every batch is spilled to the spool as it arrives, and frames are
/// read back only to finish, at most ``Configuration/maximumConcurrentFinishes`` sessions at a
/// time, each at most ``Configuration/maximumFramesPerSession`` frames.
///
/// **The object store** (the telemetry bucket) receives what is finished: the replay blob at
/// `{org}/{session}.bin.gz` (``ReplayBlob``) and, until the Core API has them, the aggregates at
/// `pending/{org}/{session}.json`; aggregates it refused for good move to
/// `failed/{org}/{session}.json` for an operator. Keys come from the verified session token's
/// claims: no request can name another clinic's key.
///
/// Batches carry a sequence number: a retry of the same batch is acknowledged again without
/// being stored twice (same SHA-256), the same number with other content is refused, batches
/// that arrive out of order are put back in order when the session finishes, and numbers never
/// received are reported as gaps. Per process, at most ``Configuration/maximumOpenSessions``
/// sessions are open and ``Configuration/maximumConcurrentBatches`` batches being stored: past
/// either, requests are refused with a transient error (503 with `Retry-After` at the edge),
/// never queued without bound.
///
/// Finishing (asked for, or after ``Configuration/idleTimeout`` without a batch) reads the
/// batches in order, runs ``PoseAnalyzer`` and ``mediaSessionMetrics(_:endedAt:)``, writes the
/// blob and the pending aggregates, clears the spool, then delivers to the ``AggregatesSink``;
/// a delivery that fails stays pending and ``run()`` retries it with exponential backoff until
/// it is delivered (the Core API records a session once, so a repeated delivery is harmless).
/// A crash at any step leaves either the spool (the session finishes again after the restart,
/// same result) or the pending record (delivered after the restart).
public final class TelemetryIngest: Sendable {
    /// Limits and timings.
    public struct Configuration: Sendable {
        /// Open sessions per process (default 1,000).
        public var maximumOpenSessions = 1_000
        /// Open sessions of one patient per process (default 3): one patient's tokens cannot
        /// take the process's every slot (``maximumOpenSessions``) from the other clinics.
        public var maximumOpenSessionsPerPatient = 3
        /// Frames per session (default 108,000: an hour at 30 frames a second, about 58 MB
        /// when finishing).
        public var maximumFramesPerSession = 108_000
        /// Batches per session; sequence numbers run from 0 to one less (default 20,000).
        public var maximumBatchesPerSession = 20_000
        /// Player events per session (default 50,000: hours of a player's reports).
        public var maximumEventsPerSession = 50_000
        /// Batches being decoded and stored at once, process-wide (default 64).
        public var maximumConcurrentBatches = 64
        /// Batches of one session being stored at once (default 4): one session's client cannot
        /// hold the process's every slot (``maximumConcurrentBatches``) from the others.
        public var maximumConcurrentBatchesPerSession = 4
        /// Batches of open sessions indexed in memory, process-wide (default 2,000,000: about
        /// 130 MB of index). Past it, batches are refused (`ingest.busy`, 503 with `Retry-After`)
        /// until sessions finish; a finished session keeps its counts, not its index.
        public var maximumIndexedBatches = 2_000_000
        /// Sessions finishing at once (default 2): each holds its frames in memory.
        public var maximumConcurrentFinishes = 2
        /// A session with no batch for this long is finished (default 10 minutes).
        public var idleTimeout: Duration = .seconds(600)
        /// How long a finished session's status stays in memory (default 15 minutes; after
        /// that it is read from the object store).
        public var finishedRetention: Duration = .seconds(900)
        /// First retry of a failed delivery, doubling up to ``maximumDeliveryBackoff``.
        public var deliveryBackoff: Duration = .seconds(1)
        public var maximumDeliveryBackoff: Duration = .seconds(60)
        /// How often ``run()`` looks for idle sessions and pending deliveries (default 1 s).
        public var tick: Duration = .seconds(1)
        /// Server-side encryption of blobs and records in the object store (S3).
        public var serverSideEncryption: ServerSideEncryption?
        /// The largest replay blob payload written (default ``ReplayBlob/defaultMaximumSize``,
        /// 256 MiB, which every reader of the codec accepts). A session past it is finished
        /// without a blob: its aggregates are delivered, the replay is not kept.
        public var maximumBlobSize = ReplayBlob.defaultMaximumSize

        public init() {}
    }

    let spool: DirectorySpool
    let store: any ObjectStore
    let sink: any AggregatesSink
    let configuration: Configuration
    let logger: Logger
    let now: @Sendable () -> Date
    let state = Mutex(State())
    let finishes: AsyncLimiter
    let meters = Meters()

    /// What the engine counts (swift-metrics; `/metrics` renders them): batches by result,
    /// frames stored, sessions finished by outcome, deliveries by result, and the open
    /// sessions, batches in flight and pending deliveries as gauges.
    final class Meters: Sendable {
        let stored = Counter(label: "restartix_telemetry_batches_total", dimensions: [("result", "stored")])
        let duplicate = Counter(label: "restartix_telemetry_batches_total", dimensions: [("result", "duplicate")])
        let refused = Counter(label: "restartix_telemetry_batches_total", dimensions: [("result", "refused")])
        let frames = Counter(label: "restartix_telemetry_frames_total")
        let finished = Counter(label: "restartix_telemetry_sessions_finished_total", dimensions: [("result", "finished")])
        let abandoned = Counter(label: "restartix_telemetry_sessions_finished_total", dimensions: [("result", "abandoned")])
        let delivered = Counter(label: "restartix_telemetry_deliveries_total", dimensions: [("result", "delivered")])
        let retried = Counter(label: "restartix_telemetry_deliveries_total", dimensions: [("result", "retry")])
        let rejected = Counter(label: "restartix_telemetry_deliveries_total", dimensions: [("result", "rejected")])
        let open = Gauge(label: "restartix_telemetry_open_sessions")
        let inFlight = Gauge(label: "restartix_telemetry_batches_in_flight")
        let pending = Gauge(label: "restartix_telemetry_pending_deliveries")
        let finishSeconds = Timer(label: "restartix_telemetry_finish_duration_seconds", preferredDisplayUnit: .seconds)
    }

    /// An engine over `spool` and `store`, delivering to `sink`.
    public init(
        spool: DirectorySpool, store: any ObjectStore, sink: any AggregatesSink, configuration: Configuration = Configuration(),
        logger: Logger = Logger(label: "restartix.telemetry.ingest"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.spool = spool
        self.store = store
        self.sink = sink
        self.configuration = configuration
        self.logger = logger
        self.now = now
        finishes = AsyncLimiter(configuration.maximumConcurrentFinishes)
    }

    // MARK: - State

    /// What the index keeps of a batch: 40 bytes, stored inline (no allocation of its own), so
    /// a session's index costs about 64 bytes a batch in its dictionary.
    struct BatchEntry: Sendable {
        /// The first 16 bytes of the SHA-256 of the batch's canonical form: a retry is told from
        /// other content by it (and only a session's own batches could be made to collide).
        let digest: (UInt64, UInt64)
        private let counts: (frames: UInt32, events: UInt32)
        /// The first and last frame times; NaN without frames.
        private let times: (first: Double, last: Double)

        init(digest: some Sequence<UInt8>, frames: Int, events: Int, first: Double?, last: Double?) {
            var words: (UInt64, UInt64) = (0, 0)
            for (index, byte) in digest.prefix(16).enumerated() {
                if index < 8 { words.0 |= UInt64(byte) << (8 * index) } else { words.1 |= UInt64(byte) << (8 * (index - 8)) }
            }
            self.digest = words
            // Within the session's caps (frames and events per session), far below 2^32.
            counts = (UInt32(clamping: frames), UInt32(clamping: events))
            times = (first ?? .nan, last ?? .nan)
        }

        var frames: Int { Int(counts.frames) }
        var events: Int { Int(counts.events) }
        var first: Double? { times.first.isNaN ? nil : times.first }
        var last: Double? { times.last.isNaN ? nil : times.last }
        func sameContent(as other: BatchEntry) -> Bool { digest == other.digest }
    }

    enum Phase: Sendable {
        /// Being started: its owner record and spool are being written. Batches and finishes
        /// wait for it (``ErrorCode/startInProgress``), so a finish cannot run before the
        /// spool exists and leave one behind.
        case starting
        case open
        case finishing
        case finished(TelemetrySessionStatus.State, reps: Int?, dropped: Int?, at: Date)
    }

    struct Session: Sendable {
        let claims: SessionTokens.Session
        let exercise: String
        let startedAt: Date
        /// The batches received, by sequence number (add them with ``record(_:_:)``, which keeps
        /// the indexes below in step).
        private(set) var batches: [Int: BatchEntry] = [:]
        /// The sequence numbers of the batches with frames, ascending: a new batch's neighbours
        /// are found by binary search, not by a walk over every batch under the engine's lock.
        private(set) var framed: [Int] = []
        /// Sequence numbers below ``next`` never received, ascending and disjoint: kept as
        /// batches arrive, so a status costs the gaps, not the batches.
        private(set) var gaps: [ClosedRange<Int>] = []
        /// One past the highest sequence number received.
        private(set) var next = 0
        /// The batches being written (reserved, not yet in the spool), by sequence number: a new
        /// batch is checked against these too, so two racing requests cannot both store
        /// overlapping frames.
        var writing: [Int: BatchEntry] = [:]
        var frames = 0
        var events = 0
        /// Frames and events of the batches being written: counted against the caps at once.
        var writingFrames: Int { writing.values.reduce(0) { $0 + $1.frames } }
        var writingEvents: Int { writing.values.reduce(0) { $0 + $1.events } }
        var lastActivity: Date
        var phase = Phase.open

        init(claims: SessionTokens.Session, exercise: String, startedAt: Date, lastActivity: Date) {
            self.claims = claims
            self.exercise = exercise
            self.startedAt = startedAt
            self.lastActivity = lastActivity
        }

        /// Batches dropped from the index by ``compact()``.
        private(set) var compacted = 0

        /// Forgets the index, keeping the counts and gaps: what a finished session needs.
        mutating func compact() {
            compacted += batches.count
            batches = [:]
            framed = []
        }

        /// Adds a batch not received before, with its frames and events (one recorded already
        /// is left as it is); whether it was added.
        @discardableResult
        mutating func record(_ sequence: Int, _ entry: BatchEntry) -> Bool {
            guard batches[sequence] == nil else { return false }
            batches[sequence] = entry
            frames += entry.frames
            events += entry.events
            if entry.first != nil { framed.insert(sequence, at: Self.lowerBound(sequence, in: framed) { $0 }) }
            if sequence >= next {
                if sequence > next { gaps.append(next...(sequence - 1)) }
                next = sequence + 1
            } else {
                // Inside a gap (a batch below `next` not received before): split it.
                let index = Self.lowerBound(sequence, in: gaps) { $0.upperBound }
                let gap = gaps[index]
                var pieces: [ClosedRange<Int>] = []
                if gap.lowerBound < sequence { pieces.append(gap.lowerBound...(sequence - 1)) }
                if sequence < gap.upperBound { pieces.append((sequence + 1)...gap.upperBound) }
                gaps.replaceSubrange(index...index, with: pieces)
            }
            return true
        }

        /// The nearest batches with frames before and after `sequence` (not itself), by number.
        func neighbours(of sequence: Int) -> (before: (Int, BatchEntry)?, after: (Int, BatchEntry)?) {
            let index = Self.lowerBound(sequence, in: framed) { $0 }
            let before = index > 0 ? framed[index - 1] : nil
            var afterIndex = index
            if afterIndex < framed.count, framed[afterIndex] == sequence { afterIndex += 1 }
            let after = afterIndex < framed.count ? framed[afterIndex] : nil
            return (before.flatMap { key in batches[key].map { (key, $0) } }, after.flatMap { key in batches[key].map { (key, $0) } })
        }

        /// The nearest batches with frames before and after `sequence`, among those received and
        /// those being written (``writing``; a handful, walked), with whether each is being written.
        func neighboursIncludingWriting(of sequence: Int) -> (before: (Int, BatchEntry, writing: Bool)?, after: (Int, BatchEntry, writing: Bool)?) {
            let received = neighbours(of: sequence)
            var before = received.before.map { ($0.0, $0.1, writing: false) }
            var after = received.after.map { ($0.0, $0.1, writing: false) }
            for (key, entry) in writing where entry.first != nil && key != sequence {
                if key < sequence, key > before?.0 ?? Int.min { before = (key, entry, writing: true) }
                if key > sequence, key < after?.0 ?? Int.max { after = (key, entry, writing: true) }
            }
            return (before, after)
        }

        /// The first index of `sorted` (ascending by `key`) whose key is not below `value`.
        static func lowerBound<Element>(_ value: Int, in sorted: [Element], by key: (Element) -> Int) -> Int {
            var low = 0, high = sorted.count
            while low < high {
                let middle = (low + high) / 2
                if key(sorted[middle]) < value { low = middle + 1 } else { high = middle }
            }
            return low
        }

        func status(_ id: UUID) -> TelemetrySessionStatus {
            let state: TelemetrySessionStatus.State, reps: Int?, dropped: Int?
            switch phase {
            case .starting, .open: (state, reps, dropped) = (.open, nil, nil)
            case .finishing: (state, reps, dropped) = (.finishing, nil, nil)
            case .finished(let finished, let count, let skipped, _): (state, reps, dropped) = (finished, count, skipped)
            }
            return TelemetrySessionStatus(
                sessionID: id, state: state, exercise: exercise, batches: batches.count + compacted, frames: frames, nextSequence: next, gaps: gaps,
                reps: reps, droppedFrames: dropped
            )
        }
    }

    struct Pending: Sendable {
        var attempts = 0
        var nextAttempt: Date
        var delivering = false
    }

    struct State: Sendable {
        var sessions: [UUID: Session] = [:]
        /// Sessions starting, open or finishing; in all and by patient.
        private(set) var openCount = 0
        private(set) var openByPatient: [UUID: Int] = [:]
        var batchesInFlight = 0
        /// Entries in the open sessions' indexes (``Configuration/maximumIndexedBatches``).
        var indexedBatches = 0
        var draining = false
        /// Pending deliveries known to this process, by session.
        var pending: [UUID: Pending] = [:]

        /// A session of `patient` opens (starts, or is loaded from the spool).
        mutating func opened(_ patient: UUID) {
            openCount += 1
            openByPatient[patient, default: 0] += 1
        }

        /// A session of `patient` stops being open (finished, or its start undone).
        mutating func closed(_ patient: UUID) {
            openCount -= 1
            let left = (openByPatient[patient] ?? 1) - 1
            openByPatient[patient] = left > 0 ? left : nil
        }
    }

    // MARK: - Keys

    /// `{org}/{session}.bin.gz` in the object store: the replay blob.
    public static func blobKey(organization: UUID, session: UUID) -> ObjectKey {
        // Two lower-case UUIDs and a suffix: always a valid key.
        try! ObjectKey(ReplayBlob.objectKey(organization: organization, session: session))
    }

    /// `pending/{org}/{session}.json`: aggregates not yet delivered.
    public static func pendingKey(organization: UUID, session: UUID) -> ObjectKey {
        try! ObjectKey("pending/\(organization.lowercasedString)/\(session.lowercasedString).json")
    }

    /// `failed/{org}/{session}.json`: aggregates the Core API refused for good.
    public static func failedKey(organization: UUID, session: UUID) -> ObjectKey {
        try! ObjectKey("failed/\(organization.lowercasedString)/\(session.lowercasedString).json")
    }

    /// `noreplay/{org}/{session}.json`: a session finished without a replay blob (it could not
    /// be encoded): what says it finished once its pending record is delivered, where a blob
    /// would, and tells an operator which replays are missing.
    public static func noReplayKey(organization: UUID, session: UUID) -> ObjectKey {
        try! ObjectKey("noreplay/\(organization.lowercasedString)/\(session.lowercasedString).json")
    }

    /// `open/{org}/{session}.json`: which instance (its spool's ``DirectorySpool/ownerID``)
    /// holds the open session. Written create-only at the start, removed once it finished.
    public static func ownerKey(organization: UUID, session: UUID) -> ObjectKey {
        try! ObjectKey("open/\(organization.lowercasedString)/\(session.lowercasedString).json")
    }

    /// What ``ownerKey(organization:session:)`` holds.
    struct OwnerRecord: Codable {
        var owner: String
        var session_id: String
        var started_at: Date
    }

    /// What the spool keeps of a session besides its batches.
    struct Manifest: Codable {
        var session_id: String
        var organization_id: String
        var patient_id: String
        var exercise: String
        var started_at: Date
        var token_expires_at: Date
    }

    /// What the object store keeps of aggregates waiting for delivery.
    struct PendingRecord: Codable {
        var session_id: String
        var aggregates: SessionAggregates
        var reps: Int
        var dropped_frames: Int
        var finished_at: Date
        var last_error: String?
    }

    // MARK: - Sessions

    /// Starts the session `claims` names for `exercise`, or resumes it: a session already open
    /// (here, or in the spool after a restart) answers its status, so a browser that lost its
    /// connection learns which batches to send again. A finished session answers its final status.
    public func start(_ claims: SessionTokens.Session, exercise: String) async throws(TelemetryIngestError) -> (status: TelemetrySessionStatus, resumed: Bool) {
        guard let profile = ExerciseProfile.builtIn(named: exercise) else {
            throw TelemetryIngestError(
                .unknownExercise, "the exercise has no profile (one of \(ExerciseProfile.builtIns.map(\.exerciseName).joined(separator: ", ")))"
            )
        }
        if let existing = try await existingStatus(claims) {
            // A finished session's status may no longer know its exercise (read back from the
            // object store): only an open one is checked.
            guard existing.exercise == profile.exerciseName || ![.open, .finishing].contains(existing.state) else {
                throw TelemetryIngestError(.exerciseChanged, "the session was started for another exercise")
            }
            return (existing, true)
        }
        let started = now()
        let manifest = Manifest(
            session_id: claims.sessionID.lowercasedString, organization_id: claims.organizationID.lowercasedString,
            patient_id: claims.patientID.lowercasedString, exercise: profile.exerciseName, started_at: started, token_expires_at: claims.expiresAt
        )
        // Claim a slot first, so two starts cannot both pass the limit; only the start that made
        // the session writes its manifest (and undoes it on failure).
        let made = try state.withLock { state throws(TelemetryIngestError) -> Bool in
            guard !state.draining else { throw TelemetryIngestError(.draining, "the service is shutting down") }
            guard state.sessions[claims.sessionID] == nil else { return false }
            guard state.openCount < configuration.maximumOpenSessions else {
                throw TelemetryIngestError(.tooManySessions, "this instance holds \(configuration.maximumOpenSessions) open sessions")
            }
            guard state.openByPatient[claims.patientID, default: 0] < configuration.maximumOpenSessionsPerPatient else {
                throw TelemetryIngestError(
                    .patientSessionLimit, "the patient has \(configuration.maximumOpenSessionsPerPatient) open sessions here: finish one first"
                )
            }
            state.opened(claims.patientID)
            var session = Session(claims: claims, exercise: profile.exerciseName, startedAt: started, lastActivity: started)
            session.phase = .starting
            state.sessions[claims.sessionID] = session
            return true
        }
        guard made else {
            // Another request started it meanwhile: this one resumes it.
            guard let existing = try known(claims) else { throw TelemetryIngestError(.notStarted, "the session could not be started; retry") }
            return (existing.status(claims.sessionID), true)
        }
        var claimed = false
        do {
            try await claim(claims, startedAt: started)
            claimed = true
            try await spool.create(manifest: Self.json(manifest), organization: claims.organizationID, session: claims.sessionID)
        } catch {
            state.withLock { state in
                // Still starting: nothing else may finish or feed a session in this phase.
                if let removed = state.sessions.removeValue(forKey: claims.sessionID) {
                    state.closed(claims.patientID)
                    state.indexedBatches -= removed.batches.count
                }
            }
            // Not opened here after all: the owner record would turn every other instance away.
            if claimed { try? await store.delete(Self.ownerKey(organization: claims.organizationID, session: claims.sessionID)) }
            throw error
        }
        let status = state.withLock { state -> TelemetrySessionStatus? in
            state.sessions[claims.sessionID]?.phase = .open
            return state.sessions[claims.sessionID]?.status(claims.sessionID)
        }
        logger.info("Telemetry session started", metadata: Self.ids(claims))
        return (status ?? TelemetrySessionStatus(sessionID: claims.sessionID, state: .open, exercise: profile.exerciseName, batches: 0, frames: 0, nextSequence: 0, gaps: []), false)
    }

    /// The session's status; `notStarted` when neither this process, the spool nor the object
    /// store knows it.
    public func status(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus {
        guard let status = try await existingStatus(claims) else {
            throw TelemetryIngestError(.notStarted, "no such session: start it first")
        }
        return status
    }

    /// The session as this process, its spool or its object store knows it, loading an open
    /// session from the spool (after a restart) into memory; nil when it is unknown.
    func existingStatus(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus? {
        if let known = try known(claims) { return known.status(claims.sessionID) }
        if let loaded = try await load(claims) { return loaded }
        return try await finishedStatusUnlessOpenElsewhere(claims)
    }

    // MARK: - Ownership

    /// A session neither in memory nor in this spool: its finished status from the object
    /// store, nil when it has none, or `ingest.openElsewhere` (transient: 503 with
    /// `Retry-After`) when another instance holds it open. With more than one instance this is
    /// refused rather than answered from here, where a start would open a second, partial copy
    /// whose blob and aggregates would race the first's.
    ///
    /// The owner record is read first: its owner removes it only after the blob and pending
    /// aggregates are stored, so when it is gone, the finished records that follow are final
    /// (read the other way round, a session finishing in between would look unknown).
    func finishedStatusUnlessOpenElsewhere(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus? {
        let owner = try await owner(claims)
        let finished = try await finishedStatus(claims)
        // A finished session's record may be left behind (its removal is best effort).
        if finished == nil, let owner, owner != spool.ownerID { throw Self.openElsewhere }
        return finished
    }

    static let openElsewhere = TelemetryIngestError(
        .openElsewhere, "the session is open on another instance of the Telemetry API; retry (route a session's requests to one instance)"
    )

    /// The instance holding the session open, from the object store; nil when none does.
    func owner(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> UUID? {
        let bytes: [UInt8]?
        do { bytes = try await store.get(Self.ownerKey(organization: claims.organizationID, session: claims.sessionID)) } catch {
            throw TelemetryIngestError(.storage, "the object store could not be read (\(error.codeName))")
        }
        guard let bytes else { return nil }
        guard let record = try? Self.decoder.decode(OwnerRecord.self, from: Data(bytes)), let owner = UUID(uuidString: record.owner) else {
            throw TelemetryIngestError(.storage, "the session's owner record does not decode")
        }
        return owner
    }

    /// Claims a new session for this instance: the owner record, create-only, so that of two
    /// instances starting the same session at once exactly one holds it.
    func claim(_ claims: SessionTokens.Session, startedAt: Date) async throws(TelemetryIngestError) {
        let record = OwnerRecord(owner: spool.ownerID.lowercasedString, session_id: claims.sessionID.lowercasedString, started_at: startedAt)
        let options = ObjectPutOptions(contentType: "application/json", serverSideEncryption: configuration.serverSideEncryption, ifAbsent: true)
        do {
            try await store.put(Self.json(record), at: Self.ownerKey(organization: claims.organizationID, session: claims.sessionID), options: options)
        } catch where error.code == .alreadyExists {
            // Ours when a start here failed after claiming it; anyone else's is theirs.
            if try await owner(claims) != spool.ownerID { throw Self.openElsewhere }
        } catch {
            throw TelemetryIngestError(.storage, "the session's owner record could not be stored (\(error.codeName))")
        }
    }

    /// The session in memory, checked against the token: a session id with another clinic or
    /// patient than the token's is refused.
    func known(_ claims: SessionTokens.Session) throws(TelemetryIngestError) -> Session? {
        guard let session = state.withLock({ $0.sessions[claims.sessionID] }) else { return nil }
        guard session.claims.organizationID == claims.organizationID, session.claims.patientID == claims.patientID else {
            throw TelemetryIngestError(.wrongSession, "the token is for another clinic or patient than this session's")
        }
        return session
    }

    /// Loads an open session from the spool into memory; nil when the spool has none.
    func load(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus? {
        guard let spooled = try await spool.read(organization: claims.organizationID, session: claims.sessionID),
              let manifest = try? Self.decoder.decode(Manifest.self, from: Data(spooled.manifest))
        else { return nil }
        guard manifest.organization_id == claims.organizationID.lowercasedString, manifest.patient_id == claims.patientID.lowercasedString else {
            throw TelemetryIngestError(.wrongSession, "the token is for another clinic or patient than this session's")
        }
        var session = Session(claims: claims, exercise: manifest.exercise, startedAt: manifest.started_at, lastActivity: now())
        for (sequence, bytes) in Self.latest(spooled.batches) {
            guard let batch = try? TelemetryBatch.decodeBinary(bytes) else {
                logger.warning("A spooled batch could not be read; it is left out", metadata: Self.ids(claims))
                continue
            }
            session.record(sequence, BatchEntry(
                digest: SHA256.hash(data: bytes), frames: batch.frames.count, events: batch.events.count, first: batch.timeSpan?.lowerBound, last: batch.timeSpan?.upperBound
            ))
        }
        return state.withLock { state in
            if let raced = state.sessions[claims.sessionID] { return raced.status(claims.sessionID) }
            state.sessions[claims.sessionID] = session
            state.opened(claims.patientID)
            // Recovered whatever the budget: these batches were acknowledged.
            state.indexedBatches += session.batches.count
            return session.status(claims.sessionID)
        }
    }

    /// A finished session's status from the object store (after a restart, or once its
    /// in-memory record has expired): pending, failed, or delivered (the blob without a
    /// pending record); nil when there is nothing.
    func finishedStatus(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus? {
        let org = claims.organizationID, id = claims.sessionID
        do {
            for (key, state) in [(Self.pendingKey(organization: org, session: id), TelemetrySessionStatus.State.pending), (Self.failedKey(organization: org, session: id), .failed)] {
                if let bytes = try await store.get(key), let record = try? Self.decoder.decode(PendingRecord.self, from: Data(bytes)) {
                    guard record.aggregates.patientID == claims.patientID.lowercasedString else {
                        throw TelemetryIngestError(.wrongSession, "the token is for another patient than this session's")
                    }
                    return TelemetrySessionStatus(
                        sessionID: id, state: state, exercise: record.aggregates.exercise, batches: 0, frames: 0, nextSequence: 0, gaps: [],
                        reps: record.reps, droppedFrames: record.dropped_frames
                    )
                }
            }
            let blob = try await store.head(Self.blobKey(organization: org, session: id))
            let noReplay = blob == nil ? try await store.head(Self.noReplayKey(organization: org, session: id)) : nil
            if blob != nil || noReplay != nil {
                return TelemetrySessionStatus(sessionID: id, state: .delivered, exercise: "", batches: 0, frames: 0, nextSequence: 0, gaps: [])
            }
        } catch let error as TelemetryIngestError {
            throw error
        } catch let error as ObjectStoreError {
            throw TelemetryIngestError(.storage, "the object store could not be read (\(error.codeName))")
        } catch {
            throw TelemetryIngestError(.storage, "the object store could not be read")
        }
        return nil
    }

    // MARK: - Batches

    /// Stores batch `sequence` of the session, already decoded (``TelemetryBatch/decodeBinary(_:)``
    /// or ``TelemetryBatch/decodeJSON(_:)``). Acknowledged (returned) only once the spool has it.
    public func ingest(_ batch: TelemetryBatch, sequence: Int, for claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetryBatchReceipt {
        do {
            return try await store(batch, sequence: sequence, for: claims)
        } catch {
            meters.refused.increment()
            throw error
        }
    }

    func store(_ batch: TelemetryBatch, sequence: Int, for claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetryBatchReceipt {
        guard batch.frames.count > 0 || !batch.events.isEmpty else {
            throw TelemetryIngestError(.emptyBatch, "batch \(sequence) holds no frame and no event")
        }
        guard (0..<configuration.maximumBatchesPerSession).contains(sequence) else {
            throw TelemetryIngestError(.sequenceOutOfRange, "batch \(sequence): sequence numbers run from 0 to \(configuration.maximumBatchesPerSession - 1)")
        }
        if try known(claims) == nil, try await load(claims) == nil {
            if try await finishedStatusUnlessOpenElsewhere(claims) != nil { throw TelemetryIngestError(.finished, "batch \(sequence): the session has finished") }
            throw TelemetryIngestError(.notStarted, "batch \(sequence): the session was not started")
        }
        let bytes = batch.encodeBinary()
        let digest = SHA256.hash(data: bytes)
        let span = batch.timeSpan
        let entry = BatchEntry(digest: digest, frames: batch.frames.count, events: batch.events.count, first: span?.lowerBound, last: span?.upperBound)
        // Check and reserve in one step.
        let duplicate = try state.withLock { state throws(TelemetryIngestError) -> TelemetrySessionStatus? in
            guard !state.draining else { throw TelemetryIngestError(.draining, "the service is shutting down") }
            guard var session = state.sessions[claims.sessionID] else { throw TelemetryIngestError(.notStarted, "batch \(sequence): the session was not started") }
            if case .starting = session.phase { throw TelemetryIngestError(.startInProgress, "batch \(sequence): the session is being started; retry") }
            guard case .open = session.phase else { throw TelemetryIngestError(.finished, "batch \(sequence): the session is finishing or finished") }
            if let existing = session.batches[sequence] {
                guard existing.sameContent(as: entry) else {
                    throw TelemetryIngestError(.sequenceConflict, "batch \(sequence) was received before with other content")
                }
                return session.status(claims.sessionID)
            }
            guard session.writing[sequence] == nil else {
                throw TelemetryIngestError(.sequenceInProgress, "batch \(sequence) is being stored by another request; retry")
            }
            guard session.writing.count < configuration.maximumConcurrentBatchesPerSession else {
                throw TelemetryIngestError(
                    .sessionBusy, "batch \(sequence): \(configuration.maximumConcurrentBatchesPerSession) batches of this session are being stored; retry"
                )
            }
            guard session.frames + session.writingFrames + batch.frames.count <= configuration.maximumFramesPerSession else {
                throw TelemetryIngestError(.sessionFull, "batch \(sequence): a session holds at most \(configuration.maximumFramesPerSession) frames")
            }
            guard session.events + session.writingEvents + batch.events.count <= configuration.maximumEventsPerSession else {
                throw TelemetryIngestError(.sessionFull, "batch \(sequence): a session holds at most \(configuration.maximumEventsPerSession) player events")
            }
            if let span {
                // The nearest batches before and after, by sequence number, that have frames,
                // stored or being stored. Against one being stored the answer is not final yet
                // (its write may fail): retry, and the answer is then overlapsNeighbour or stored.
                let (before, after) = session.neighboursIncludingWriting(of: sequence)
                if let (key, neighbour, writing) = before, let last = neighbour.last, span.lowerBound <= last {
                    throw writing
                        ? TelemetryIngestError(.neighbourInProgress, "batch \(sequence): its first frame is not after the last frame of batch \(key), which is being stored; retry")
                        : TelemetryIngestError(.overlapsNeighbour, "batch \(sequence): its first frame is not after the last frame of batch \(key)")
                }
                if let (key, neighbour, writing) = after, let first = neighbour.first, span.upperBound >= first {
                    throw writing
                        ? TelemetryIngestError(.neighbourInProgress, "batch \(sequence): its last frame is not before the first frame of batch \(key), which is being stored; retry")
                        : TelemetryIngestError(.overlapsNeighbour, "batch \(sequence): its last frame is not before the first frame of batch \(key)")
                }
            }
            guard state.batchesInFlight < configuration.maximumConcurrentBatches else {
                throw TelemetryIngestError(.busy, "this instance is storing \(configuration.maximumConcurrentBatches) batches already")
            }
            guard state.indexedBatches + state.batchesInFlight < configuration.maximumIndexedBatches else {
                throw TelemetryIngestError(.busy, "this instance holds \(configuration.maximumIndexedBatches) batches of open sessions already")
            }
            state.batchesInFlight += 1
            session.writing[sequence] = entry
            session.lastActivity = now()
            state.sessions[claims.sessionID] = session
            return nil
        }
        if let duplicate {
            meters.duplicate.increment()
            return TelemetryBatchReceipt(sequence: sequence, duplicate: true, status: duplicate)
        }
        @Sendable func release(_ state: inout State) {
            state.batchesInFlight -= 1
            state.sessions[claims.sessionID]?.writing.removeValue(forKey: sequence)
        }
        do {
            try await spool.append(bytes, sequence: sequence, organization: claims.organizationID, session: claims.sessionID)
        } catch {
            state.withLock { release(&$0) }
            throw error
        }
        // Acknowledged from here on: the spool has it.
        meters.stored.increment()
        meters.frames.increment(by: entry.frames)
        let status = state.withLock { state -> TelemetrySessionStatus in
            release(&state)
            if state.sessions[claims.sessionID]?.record(sequence, entry) == true { state.indexedBatches += 1 }
            return state.sessions[claims.sessionID]?.status(claims.sessionID)
                ?? TelemetrySessionStatus(sessionID: claims.sessionID, state: .open, exercise: "", batches: 0, frames: 0, nextSequence: 0, gaps: [])
        }
        return TelemetryBatchReceipt(sequence: sequence, duplicate: false, status: status)
    }

    // MARK: - Finishing

    /// Finishes the session: kernels, blob, pending aggregates, delivery (one attempt now; the
    /// rest from ``run()``). Finishing a finished session answers its status again; one that is
    /// finishing, `finishing`.
    public func finish(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) -> TelemetrySessionStatus {
        if try known(claims) == nil, try await load(claims) == nil {
            if let finished = try await finishedStatusUnlessOpenElsewhere(claims) { return finished }
            throw TelemetryIngestError(.notStarted, "no such session: start it first")
        }
        return try await finish(claims.sessionID, reason: "asked")
    }

    /// Finishes session `id` (known in memory).
    func finish(_ id: UUID, reason: String) async throws(TelemetryIngestError) -> TelemetrySessionStatus {
        let claimed = try state.withLock { state throws(TelemetryIngestError) -> (Session?, TelemetrySessionStatus?) in
            guard var session = state.sessions[id] else { return (nil, nil) }
            if case .starting = session.phase { throw TelemetryIngestError(.startInProgress, "the session is being started; retry") }
            guard case .open = session.phase else { return (nil, session.status(id)) }
            session.phase = .finishing
            state.sessions[id] = session
            return (session, nil)
        }
        if let answered = claimed.1 { return answered }
        guard let session = claimed.0 else { throw TelemetryIngestError(.notStarted, "no such session: start it first") }
        // The engine's own task, not the request's: a request that gives up (its timeout, a
        // client gone) must not cancel a finish half-way through its writes, which would throw
        // its work away and open the session again.
        let work = Task { () async -> Result<TelemetrySessionStatus, TelemetryIngestError> in
            // Batches being written when finishing began are part of the session: wait for them.
            while self.state.withLock({ !($0.sessions[id]?.writing.isEmpty ?? true) }) {
                try? await Task.sleep(for: .milliseconds(5))
            }
            let began = ContinuousClock.now
            defer {
                let elapsed = (ContinuousClock.now - began).components
                self.meters.finishSeconds.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
            }
            do throws(TelemetryIngestError) {
                return .success(try await self.finishes.run { () async throws(TelemetryIngestError) -> TelemetrySessionStatus in
                    try await self.complete(session.claims, exercise: session.exercise, startedAt: session.startedAt, reason: reason)
                })
            } catch {
                return .failure(error)
            }
        }
        let result = await work.value
        switch result {
        case .success(let status):
            return status
        case .failure(let error):
            // Nothing was lost: the batches are still in the spool. Open again, so that a later
            // finish (asked for, or the idle sweep) tries again.
            // The idle sweep tries again after another idle timeout, not at its next tick.
            let at = now()
            state.withLock { state in
                state.sessions[id]?.phase = .open
                state.sessions[id]?.lastActivity = at
            }
            throw error
        }
    }

    /// The work of finishing, once the session is marked finishing.
    func complete(_ claims: SessionTokens.Session, exercise: String, startedAt: Date, reason: String) async throws(TelemetryIngestError) -> TelemetrySessionStatus {
        let id = claims.sessionID, org = claims.organizationID
        let spooled = try await spool.read(organization: org, session: id)?.batches ?? []
        if spooled.isEmpty {
            try await clearSpool(claims)
            finishState(id, .abandoned, reps: nil, dropped: nil)
            meters.abandoned.increment()
            logger.info("Telemetry session abandoned: no batches", metadata: Self.ids(claims, ["reason": "\(reason)"]))
            return state.withLock { $0.sessions[id]?.status(id) }
                ?? TelemetrySessionStatus(sessionID: id, state: .abandoned, exercise: exercise, batches: 0, frames: 0, nextSequence: 0, gaps: [])
        }
        // In sequence order, overlaps dropped.
        var frames = PoseFrames()
        var events: [VideoEvent] = []
        var dropped = 0
        for (_, bytes) in Self.latest(spooled).sorted(by: { $0.0 < $1.0 }) {
            guard let batch = try? TelemetryBatch.decodeBinary(bytes) else {
                logger.warning("A spooled batch could not be read; it is left out", metadata: Self.ids(claims))
                continue
            }
            dropped += frames.append(contentsOf: batch.frames)
            events += batch.events
        }
        let profile = ExerciseProfile.builtIn(named: exercise) ?? .kneeFlexion
        let origin = min(frames.timestamps.first ?? .infinity, events.first.map { $0.event.time } ?? .infinity)
        let end = max(frames.timestamps.last ?? -.infinity, events.map(\.event.time).max() ?? -.infinity)
        var analyzer = PoseAnalyzer()
        let analysis = frames.count > 0 ? analyzer.analyze(frames, profile: profile) : nil
        var videos: [String] = []
        var byVideo: [String: [MediaEvent]] = [:]
        for item in events {
            if byVideo[item.videoID] == nil { videos.append(item.videoID) }
            byVideo[item.videoID, default: []].append(item.event)
        }
        var media: [(videoID: String, metrics: MediaSessionMetrics)] = []
        for video in videos {
            // Batches in order, events in order within each; a client whose clock stepped back
            // between batches still gets metrics (a stable sort keeps same-time events in order).
            let list = (byVideo[video] ?? []).enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
            if let metrics = try? mediaSessionMetrics(list) { media.append((video, metrics)) }
        }
        // At most a day: the clock of a browser that sent absurd times cannot make an absurd end.
        let span = origin.isFinite && end.isFinite && end - origin < 86_400 ? max(0, end - origin) : (end - origin >= 86_400 ? 86_400 : 0)
        let aggregates = SessionAggregates(
            organizationID: org.lowercasedString, patientID: claims.patientID.lowercasedString, exercise: exercise,
            startedAt: Self.rfc3339(startedAt), endedAt: Self.rfc3339(startedAt.addingTimeInterval(span)),
            pose: analysis, media: media, origin: origin.isFinite ? origin : 0
        )
        let reps = aggregates.pose?.repCount ?? 0
        // A session the codec cannot hold (past its size limit, more videos than it names) can
        // never be encoded: finishing it again would fail the same way for ever. Its aggregates,
        // the clinical record, still go; the replay is lost, and said so.
        let blob: [UInt8]?
        do { blob = try ReplayBlob.encode(ReplaySession(frames: frames, events: events), maximumSize: configuration.maximumBlobSize) } catch {
            logger.error("The session's replay blob cannot be encoded; it is finished without one", metadata: Self.ids(claims, ["error": "\(error.codeName)"]))
            blob = nil
        }
        if let blob {
            let options = ObjectPutOptions(contentType: "application/gzip", serverSideEncryption: configuration.serverSideEncryption)
            try await write(blob, at: Self.blobKey(organization: org, session: id), to: store, "the replay blob", options: options)
        } else {
            // Without it, nothing would say the session finished once its aggregates are
            // delivered: a start with the same token would open it again.
            try await write(
                Self.json(["session_id": id.lowercasedString, "reason": "the replay could not be encoded"]),
                at: Self.noReplayKey(organization: org, session: id), to: store, "the missing-replay record",
                options: ObjectPutOptions(contentType: "application/json", serverSideEncryption: configuration.serverSideEncryption)
            )
        }
        let record = PendingRecord(session_id: id.lowercasedString, aggregates: aggregates, reps: reps, dropped_frames: dropped, finished_at: now(), last_error: nil)
        try await write(
            Self.json(record), at: Self.pendingKey(organization: org, session: id), to: store, "the pending aggregates",
            options: ObjectPutOptions(contentType: "application/json", serverSideEncryption: configuration.serverSideEncryption)
        )
        // The blob and the aggregates are safe: the spool and the owner record are no longer needed.
        try? await clearSpool(claims)
        finishState(id, .pending, reps: reps, dropped: dropped)
        meters.finished.increment()
        logger.info("Telemetry session finished", metadata: Self.ids(claims, [
            "reason": "\(reason)", "telemetry.frames": "\(frames.count)", "telemetry.reps": "\(reps)", "telemetry.dropped_frames": "\(dropped)",
        ]))
        state.withLock { $0.pending[id] = Pending(nextAttempt: now()) }
        await deliver(id, organization: org)
        return state.withLock { $0.sessions[id]?.status(id) }
            ?? TelemetrySessionStatus(sessionID: id, state: .pending, exercise: exercise, batches: 0, frames: 0, nextSequence: 0, gaps: [], reps: reps, droppedFrames: dropped)
    }

    /// Marks a session finished; its open slot is free again.
    func finishState(_ id: UUID, _ finished: TelemetrySessionStatus.State, reps: Int?, dropped: Int?) {
        let at = now()
        state.withLock { state in
            guard var session = state.sessions[id] else { return }
            if case .finished = session.phase {} else { state.closed(session.claims.patientID) }
            session.phase = .finished(finished, reps: reps, dropped: dropped, at: at)
            state.indexedBatches -= session.batches.count
            session.compact()
            state.sessions[id] = session
        }
    }

    /// Removes a finished session's spool, then its owner record (best effort: one left behind
    /// only names this instance, and a finished session's status is looked up before it).
    func clearSpool(_ claims: SessionTokens.Session) async throws(TelemetryIngestError) {
        try await spool.remove(organization: claims.organizationID, session: claims.sessionID)
        try? await store.delete(Self.ownerKey(organization: claims.organizationID, session: claims.sessionID))
    }

    // MARK: - Delivery

    /// One delivery attempt of session `id`'s pending aggregates.
    func deliver(_ id: UUID, organization: UUID) async {
        let go = state.withLock { state -> Bool in
            guard var pending = state.pending[id], !pending.delivering else { return false }
            pending.delivering = true
            state.pending[id] = pending
            return true
        }
        guard go else { return }
        let key = Self.pendingKey(organization: organization, session: id)
        var outcome: AggregatesDelivery = .retryLater("the pending record could not be read")
        var record: PendingRecord?
        do throws(ObjectStoreError) {
            if let bytes = try await store.get(key) {
                if let decoded = try? Self.decoder.decode(PendingRecord.self, from: Data(bytes)) {
                    record = decoded
                    outcome = await sink.deliver(decoded.aggregates, session: id)
                } else {
                    outcome = .rejected("the pending record does not decode")
                }
            } else {
                // Gone, and the store answered: delivered by another instance (or an earlier
                // run) meanwhile.
                outcome = .delivered(duplicate: true)
            }
        } catch {
            // The store did not answer: nothing is known, so nothing is concluded.
            outcome = .retryLater("the object store could not be read (\(error.codeName))")
        }
        let metadata: Logger.Metadata = ["telemetry.session_id": "\(id.lowercasedString)", "organization_id": "\(organization.lowercasedString)"]
        switch outcome {
        case .delivered(let duplicate):
            try? await store.delete(key)
            state.withLock { state in
                state.pending[id] = nil
                if let session = state.sessions[id], case .finished(_, let reps, let dropped, let at) = session.phase {
                    state.sessions[id]?.phase = .finished(.delivered, reps: reps, dropped: dropped, at: at)
                }
            }
            meters.delivered.increment()
            logger.info("Telemetry aggregates delivered", metadata: metadata.merging(["duplicate": "\(duplicate)"]) { $1 })
        case .retryLater(let reason):
            let attempts = state.withLock { state -> Int in
                guard var pending = state.pending[id] else { return 0 }
                pending.attempts += 1
                pending.delivering = false
                let backoff = min(configuration.deliveryBackoff * (1 << min(pending.attempts - 1, 20)), configuration.maximumDeliveryBackoff)
                // Jitter of up to a quarter, so instances that lost the Core API together do
                // not come back in step.
                let seconds = Double(backoff.components.seconds) + Double(backoff.components.attoseconds) / 1e18
                pending.nextAttempt = now().addingTimeInterval(seconds * Double.random(in: 0.75...1.0))
                state.pending[id] = pending
                return pending.attempts
            }
            meters.retried.increment()
            logger.warning("Telemetry aggregates not delivered yet; will retry", metadata: metadata.merging(["reason": "\(reason)", "attempts": "\(attempts)"]) { $1 })
        case .rejected(let reason):
            if var record {
                record.last_error = reason
                if (try? await write(Self.json(record), at: Self.failedKey(organization: organization, session: id), to: store, "the failed aggregates")) != nil {
                    try? await store.delete(key)
                }
            }
            state.withLock { state in
                state.pending[id] = nil
                if let session = state.sessions[id], case .finished(_, let reps, let dropped, let at) = session.phase {
                    state.sessions[id]?.phase = .finished(.failed, reps: reps, dropped: dropped, at: at)
                }
            }
            meters.rejected.increment()
            logger.error("Telemetry aggregates refused by the Core API; kept under failed/ for an operator", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
        }
    }

    /// Pending records in the object store this process does not know yet (left by an earlier
    /// run or another instance): adds them to the delivery queue.
    func discoverPending() async {
        guard let listed = try? await store.list(prefix: "pending/") else { return }
        let at = now()
        state.withLock { state in
            for info in listed {
                let parts = info.key.value.split(separator: "/")
                guard parts.count == 3, let id = UUID(uuidString: String(parts[2].dropLast(".json".count))) else { continue }
                if state.pending[id] == nil { state.pending[id] = Pending(nextAttempt: at) }
            }
        }
    }

    /// Sessions in the spool this process does not hold (a restart): loads them, so that they
    /// can be resumed, and are finished after the idle timeout if they are not.
    public func recover() async throws(TelemetryIngestError) {
        let loaded = Mutex(0)
        // A few at a time: each read decodes a session's every batch.
        await Self.forEach(try spool.sessions(), concurrently: Self.backgroundConcurrency) { org, id in
            if self.state.withLock({ $0.sessions[id] != nil }) { return }
            guard let spooled = try? await self.spool.read(organization: org, session: id),
                  let manifest = try? Self.decoder.decode(Manifest.self, from: Data(spooled.manifest)),
                  let patient = UUID(uuidString: manifest.patient_id)
            else { return }
            let claims = SessionTokens.Session(sessionID: id, organizationID: org, patientID: patient, expiresAt: manifest.token_expires_at)
            // A session whose aggregates were written finished: only its spool was left.
            if (try? await self.store.head(Self.pendingKey(organization: org, session: id))) != nil {
                try? await self.clearSpool(claims)
                return
            }
            if (try? await self.load(claims)) != nil { loaded.withLock { $0 += 1 } }
        }
        await discoverPending()
        let recovered = loaded.withLock { $0 }
        if recovered > 0 { logger.notice("Recovered open telemetry sessions from the spool", metadata: ["count": "\(recovered)"]) }
    }

    // MARK: - Background work

    /// One round of background work: finishes sessions idle past the timeout, forgets finished
    /// ones past their retention, and retries the deliveries that are due.
    public func tick() async {
        let at = now()
        let (open, inFlight, pending) = counts
        meters.open.record(open)
        meters.inFlight.record(inFlight)
        meters.pending.record(pending)
        let idle = configuration.idleTimeout, retention = configuration.finishedRetention
        let (due, deliveries) = state.withLock { state -> ([UUID], [(UUID, UUID)]) in
            var due: [UUID] = []
            for (id, session) in state.sessions {
                switch session.phase {
                case .open where at.timeIntervalSince(session.lastActivity) >= Self.seconds(idle) && session.writing.isEmpty:
                    due.append(id)
                case .finished(_, _, _, let finishedAt) where at.timeIntervalSince(finishedAt) >= Self.seconds(retention) && state.pending[id] == nil:
                    state.sessions[id] = nil
                default:
                    break
                }
            }
            let deliveries = state.pending.filter { !$0.value.delivering && $0.value.nextAttempt <= at }.map { id, _ in
                (id, state.sessions[id]?.claims.organizationID)
            }
            return (due, deliveries.compactMap { id, org in org.map { (id, $0) } })
        }
        // At once: finishing is bounded by its own limiter (maximumConcurrentFinishes), and one
        // slow session must not hold up the rest.
        await Self.forEach(due, concurrently: max(1, due.count)) { id in _ = try? await self.finish(id, reason: "idle") }
        // Pending records found in the store carry their clinic in their key.
        let unknown = state.withLock { state in state.pending.filter { state.sessions[$0.key] == nil && !$0.value.delivering && $0.value.nextAttempt <= at }.map(\.key) }
        var targets = deliveries
        if !unknown.isEmpty, let listed = try? await store.list(prefix: "pending/") {
            for info in listed {
                let parts = info.key.value.split(separator: "/")
                guard parts.count == 3, let org = UUID(uuidString: String(parts[1])), let id = UUID(uuidString: String(parts[2].dropLast(".json".count))),
                      unknown.contains(id) else { continue }
                targets.append((id, org))
            }
        }
        // A few at a time: one Core API call that hangs until its timeout holds up no more than
        // its own slot.
        await Self.forEach(targets, concurrently: Self.backgroundConcurrency) { id, org in await self.deliver(id, organization: org) }
    }

    /// How many spool reads or deliveries the background work runs at once.
    static let backgroundConcurrency = 4

    /// Runs `body` on every item, at most `limit` at a time, and returns when all are done.
    static func forEach<Item: Sendable>(_ items: [Item], concurrently limit: Int, _ body: @escaping @Sendable (Item) async -> Void) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for item in items {
                if running >= limit {
                    await group.next()
                    running -= 1
                }
                group.addTask { await body(item) }
                running += 1
            }
        }
    }

    /// Runs the background work every ``Configuration/tick`` until the task is canceled: first
    /// ``recover()``, then ``tick()`` in a loop.
    public func run() async {
        do { try await recover() } catch { logger.error("Telemetry spool recovery failed", metadata: ["error": "\(error)"]) }
        while !Task.isCancelled {
            await tick()
            try? await Task.sleep(for: configuration.tick)
        }
    }

    /// Stops taking sessions and batches (they are refused as `draining`) and waits, up to
    /// `timeout`, for the batches being stored. Open sessions stay in the spool: the next
    /// process resumes them (``recover()``), so a browser carries on after the restart.
    public func drain(timeout: Duration = .seconds(10)) async {
        state.withLock { $0.draining = true }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while state.withLock({ $0.batchesInFlight > 0 }), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Whether the engine takes work (not draining).
    public var isAccepting: Bool { state.withLock { !$0.draining } }

    /// Counts for the metrics endpoint: open sessions, batches being stored, pending deliveries.
    public var counts: (open: Int, batchesInFlight: Int, pending: Int) {
        state.withLock { ($0.openCount, $0.batchesInFlight, $0.pending.count) }
    }

    // MARK: - Helpers

    /// The last record of each sequence number (a batch appended again after a crash that
    /// came before its acknowledgement).
    static func latest(_ batches: [(sequence: Int, bytes: [UInt8])]) -> [(Int, [UInt8])] {
        var last: [Int: [UInt8]] = [:]
        for (sequence, bytes) in batches { last[sequence] = bytes }
        return last.map { ($0.key, $0.value) }
    }

    func write(_ bytes: [UInt8], at key: ObjectKey, to target: any ObjectStore, _ what: String, options: ObjectPutOptions = ObjectPutOptions()) async throws(TelemetryIngestError) {
        do { try await target.put(bytes, at: key, options: options) } catch {
            throw TelemetryIngestError(.storage, "\(what) could not be stored (\(error.codeName))")
        }
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    static func json(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return Array((try? encoder.encode(value)) ?? Data())
    }

    static func rfc3339(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func ids(_ claims: SessionTokens.Session, _ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        [
            "telemetry.session_id": "\(claims.sessionID.lowercasedString)", "organization_id": "\(claims.organizationID.lowercasedString)",
            "patient_id": "\(claims.patientID.lowercasedString)",
        ].merging(extra) { $1 }
    }
}

/// At most `limit` bodies at once; the others wait their turn (first come, first served).
final class AsyncLimiter: Sendable {
    private struct State {
        var available: Int
        var waiting: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    init(_ limit: Int) { state = Mutex(State(available: max(1, limit))) }

    func run<T: Sendable, E: Error>(_ body: @Sendable () async throws(E) -> T) async throws(E) -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let go = state.withLock { state -> Bool in
                if state.available > 0 {
                    state.available -= 1
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if go { continuation.resume() }
        }
        defer {
            let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if state.waiting.isEmpty {
                    state.available += 1
                    return nil
                }
                return state.waiting.removeFirst()
            }
            next?.resume()
        }
        return try await body()
    }
}
