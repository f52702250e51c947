import Foundation
import RestartixCrypto
import RestartixKit
import RestartixTelemetry
import RestartixTelemetryIngest
import RestartixTestSupport
import Synchronization
import Testing

/// Where aggregates go in these tests: records every delivery and answers as told (the real
/// Core API's endpoint is exercised by the end-to-end test).
final class RecordingSink: AggregatesSink {
    private let state = Mutex<(deliveries: [(UUID, SessionAggregates)], answers: [AggregatesDelivery])>(([], []))

    /// The answers of the next deliveries, in order; after them, `delivered`.
    func answer(_ answers: [AggregatesDelivery]) { state.withLock { $0.answers = answers } }

    var deliveries: [(session: UUID, aggregates: SessionAggregates)] { state.withLock { $0.deliveries.map { ($0.0, $0.1) } } }

    func deliver(_ aggregates: SessionAggregates, session: UUID) async -> AggregatesDelivery {
        state.withLock { state in
            state.deliveries.append((session, aggregates))
            return state.answers.isEmpty ? .delivered(duplicate: state.deliveries.filter { $0.0 == session }.count > 1) : state.answers.removeFirst()
        }
    }
}

/// The Telemetry API's engine over local stores: ordering, idempotence, limits, finishing,
/// delivery and its retries, recovery from the spool.
@Suite("Telemetry ingest engine", .timeLimit(.minutes(3)))
struct TelemetryIngestTests {
    struct Fixture {
        let directory: TemporaryDirectory
        let spool: DirectorySpool
        let store: LocalObjectStore
        let sink = RecordingSink()
        let clock = Clock()

        init(_ label: String) throws {
            directory = try TemporaryDirectory(label)
            spool = try DirectorySpool(directory: URL(fileURLWithPath: directory.path("spool")))
            store = try LocalObjectStore(directory: URL(fileURLWithPath: directory.path("store")))
        }

        func engine(_ configure: (inout TelemetryIngest.Configuration) -> Void = { _ in }) -> TelemetryIngest {
            var configuration = TelemetryIngest.Configuration()
            configure(&configuration)
            let clock = clock
            return TelemetryIngest(spool: spool, store: store, sink: sink, configuration: configuration, now: { clock.now })
        }

        func advance(_ seconds: Double) { clock.advance(seconds) }
    }

    /// A clock the tests move by hand.
    final class Clock: Sendable {
        private let value = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
        var now: Date { value.withLock { $0 } }
        func advance(_ seconds: Double) { value.withLock { $0 = $0.addingTimeInterval(seconds) } }
    }

    static func claims(session: UUID = UUIDv7.generate(), organization: UUID = UUIDv7.generate(), patient: UUID = UUIDv7.generate()) -> SessionTokens.Session {
        SessionTokens.Session(sessionID: session, organizationID: organization, patientID: patient, expiresAt: Date().addingTimeInterval(3600))
    }

    /// A squat session cut into batches of a second.
    static func batches(repetitions: Int = 6) -> (frames: PoseFrames, batches: [TelemetryBatch]) {
        let frames = SyntheticSquats(repetitions: repetitions).frames(startingAt: 100)
        return (frames, SyntheticSquats.batches(of: frames, size: 30).map { TelemetryBatch(frames: $0) })
    }

    static func code(_ body: () async throws -> Void) async -> TelemetryIngestError.Code? {
        do { try await body(); return nil } catch { return (error as? TelemetryIngestError)?.code }
    }

    @Test("a session too large for its replay blob is finished without one: the aggregates are delivered once, nothing is left open or spooled, and finishing again answers the same")
    func blobTooLarge() async throws {
        let fixture = try Fixture("ingest-no-blob")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine { $0.maximumBlobSize = 64 * 1024 }  // about 120 frames
        let claims = Self.claims()
        let (_, batches) = Self.batches()
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        for (sequence, batch) in batches.enumerated() { _ = try await ingest.ingest(batch, sequence: sequence, for: claims) }
        let finished = try await ingest.finish(claims)
        #expect(finished.state == .delivered && finished.reps == 6)
        #expect(fixture.sink.deliveries.count == 1 && fixture.sink.deliveries.first?.aggregates.pose?.repCount == 6)
        #expect(try await fixture.store.head(TelemetryIngest.blobKey(organization: claims.organizationID, session: claims.sessionID)) == nil)
        #expect(try await fixture.spool.read(organization: claims.organizationID, session: claims.sessionID) == nil)
        #expect(try await ingest.finish(claims).state == .delivered)
        #expect(fixture.sink.deliveries.count == 1)
        // Past the in-memory retention, and in a new process: still finished (the missing-replay
        // record says so where a blob would), never opened again by a start with the same token.
        #expect(try await fixture.store.head(TelemetryIngest.noReplayKey(organization: claims.organizationID, session: claims.sessionID)) != nil)
        fixture.advance(3600)
        await ingest.tick()
        let restarted = fixture.engine { $0.maximumBlobSize = 64 * 1024 }
        for engine in [ingest, restarted] {
            #expect(try await engine.status(claims).state == .delivered)
            let again = try await engine.start(claims, exercise: "knee_flexion")
            #expect(again.resumed && again.status.state == .delivered)
            #expect(await Self.code { _ = try await engine.ingest(batches[0], sequence: 0, for: claims) } == .finished)
        }
        #expect(fixture.sink.deliveries.count == 1)
    }

    @Test("racing requests with overlapping frames under different numbers: exactly one is stored, the rest are refused (retried until the answer is final), and finishing drops nothing")
    func racingOverlaps() async throws {
        let fixture = try Fixture("ingest-race")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine()
        let claims = Self.claims()
        let (_, batches) = Self.batches()
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        // The same second of frames under sixteen numbers at once: each pair overlaps, so at
        // most one may be stored, whatever the order in which the spool's writes finish.
        let outcomes = await withTaskGroup(of: String.self) { group in
            for sequence in 0..<16 {
                group.addTask {
                    while true {
                        switch await Self.code({ _ = try await ingest.ingest(batches[0], sequence: sequence, for: claims) }) {
                        case nil: return "stored"
                        case .neighbourInProgress?, .sessionBusy?: try? await Task.sleep(for: .milliseconds(1))
                        case let code?: return code.description
                        }
                    }
                }
            }
            return await group.reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
        }
        #expect(outcomes == ["stored": 1, "overlapsNeighbour": 15], "\(outcomes)")
        let status = try await ingest.status(claims)
        #expect(status.batches == 1 && status.frames == batches[0].frames.count)
        let finished = try await ingest.finish(claims)
        #expect(finished.droppedFrames == 0, "nothing overlapping reached the spool")
    }

    @Test("two instances over one object store: a session open on one is refused on the other (openElsewhere, nothing opened there), racing starts leave one owner, the owner's restart keeps it, and once finished either answers its status")
    func ownership() async throws {
        let fixture = try Fixture("ingest-owners")
        defer { fixture.directory.remove() }
        let a = fixture.engine()
        let otherSpool = try DirectorySpool(directory: URL(fileURLWithPath: fixture.directory.path("spool-b")))
        let b = TelemetryIngest(spool: otherSpool, store: fixture.store, sink: fixture.sink, now: { fixture.clock.now })
        #expect(otherSpool.ownerID != fixture.spool.ownerID)
        let claims = Self.claims()
        let (_, batches) = Self.batches()
        _ = try await a.start(claims, exercise: "knee_flexion")
        _ = try await a.ingest(batches[0], sequence: 0, for: claims)
        #expect(await Self.code { _ = try await b.start(claims, exercise: "knee_flexion") } == .openElsewhere)
        #expect(await Self.code { _ = try await b.ingest(batches[1], sequence: 1, for: claims) } == .openElsewhere)
        #expect(await Self.code { _ = try await b.status(claims) } == .openElsewhere)
        #expect(await Self.code { _ = try await b.finish(claims) } == .openElsewhere)
        #expect(try otherSpool.sessions().isEmpty, "nothing opened on the other instance")
        #expect(TelemetryIngestError(.openElsewhere, "").httpStatus == 503 && TelemetryIngestError(.openElsewhere, "").isTransient)

        // The owner restarted over its spool (the same volume): still the owner.
        let restarted = TelemetryIngest(spool: try DirectorySpool(directory: fixture.spool.directory), store: fixture.store, sink: fixture.sink, now: { fixture.clock.now })
        try await restarted.recover()
        _ = try await restarted.ingest(batches[1], sequence: 1, for: claims)
        let finished = try await restarted.finish(claims)
        #expect(finished.state == .delivered && finished.batches == 2)
        #expect(try await fixture.store.head(TelemetryIngest.ownerKey(organization: claims.organizationID, session: claims.sessionID)) == nil, "the owner record goes with the session")
        #expect(try await b.status(claims).state == .delivered)
        #expect(try await b.start(claims, exercise: "knee_flexion").status.state == .delivered)
        // One finished without a batch (abandoned) leaves no owner record either.
        let empty = Self.claims()
        _ = try await a.start(empty, exercise: "knee_flexion")
        #expect(try await a.finish(empty).state == .abandoned)
        #expect(await Self.code { _ = try await b.status(empty) } == .notStarted)

        // A start whose spool cannot be written (a file where its clinic's folder goes): nothing
        // opened, the owner record withdrawn, so another instance can start it.
        let blocked = Self.claims()
        #expect(FileManager.default.createFile(atPath: fixture.spool.directory.appendingPathComponent(blocked.organizationID.lowercasedString).path, contents: Data()))
        #expect(await Self.code { _ = try await a.start(blocked, exercise: "knee_flexion") } == .storage)
        #expect(try await fixture.store.head(TelemetryIngest.ownerKey(organization: blocked.organizationID, session: blocked.sessionID)) == nil)
        #expect(try await b.start(blocked, exercise: "knee_flexion").status.state == .open)

        // Two instances starting one new session at once: exactly one holds it.
        for _ in 0..<5 {
            let racing = Self.claims()
            async let first = Self.code { _ = try await a.start(racing, exercise: "knee_flexion") }
            async let second = Self.code { _ = try await b.start(racing, exercise: "knee_flexion") }
            let outcomes = await [first, second]
            #expect(outcomes.filter { $0 == nil }.count == 1 && outcomes.contains(.openElsewhere), "\(outcomes)")
        }
    }

    @Test("the process-wide index budget: past it batches are refused as busy (nothing stored), and a finished session's index no longer counts")
    func indexBudget() async throws {
        let fixture = try Fixture("ingest-index")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine { $0.maximumIndexedBatches = 4 }
        let (first, second) = (Self.claims(), Self.claims())
        let (_, batches) = Self.batches()
        _ = try await ingest.start(first, exercise: "knee_flexion")
        _ = try await ingest.start(second, exercise: "knee_flexion")
        for sequence in 0..<4 { _ = try await ingest.ingest(batches[sequence], sequence: sequence, for: first) }
        #expect(await Self.code { _ = try await ingest.ingest(batches[4], sequence: 4, for: first) } == .busy)
        #expect(await Self.code { _ = try await ingest.ingest(batches[0], sequence: 0, for: second) } == .busy)
        // A retry of a stored batch is still answered: it adds nothing to the index.
        #expect(try await ingest.ingest(batches[3], sequence: 3, for: first).duplicate)
        #expect(try await ingest.status(second).batches == 0)
        let finished = try await ingest.finish(first)
        #expect(finished.batches == 4, "the counts outlive the index")
        _ = try await ingest.ingest(batches[0], sequence: 0, for: second)
        #expect(try await ingest.status(second).batches == 1)
    }

    @Test("out of order, duplicated and gapped batches: gaps reported, a retry acknowledged without a second copy, other content under a used number refused; finish delivers once, in order, and the blob decodes to the same frames")
    func orderingAndFinish() async throws {
        let fixture = try Fixture("ingest-order")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine()
        let claims = Self.claims()
        let (frames, plain) = Self.batches()
        var batches = plain
        // Player events of two videos ride with batches 0 and 4: the blob keeps which is which.
        batches[0].events = [
            VideoEvent(videoID: "intro", event: MediaEvent(.play, at: 100.0)),
            VideoEvent(videoID: "intro", event: MediaEvent(.playing, at: 100.2, playhead: 0)),
        ]
        batches[4].events = [VideoEvent(videoID: "squat-demo", event: MediaEvent(.pause, at: 104.0, playhead: 3.5))]
        let (started, resumed) = try await ingest.start(claims, exercise: "knee_flexion")
        #expect(!resumed && started.state == .open && started.nextSequence == 0)
        // 0, 2, 1 (out of order), then 4 before 3: a gap while 3 is missing.
        for sequence in [0, 2, 1, 4] { _ = try await ingest.ingest(batches[sequence], sequence: sequence, for: claims) }
        let gapped = try await ingest.status(claims)
        #expect(gapped.gaps == [3...3] && gapped.nextSequence == 5 && gapped.batches == 4)
        let retry = try await ingest.ingest(batches[2], sequence: 2, for: claims)
        #expect(retry.duplicate && retry.status.batches == 4)
        #expect(await Self.code { _ = try await ingest.ingest(batches[5], sequence: 2, for: claims) } == .sequenceConflict)
        // A batch whose frames fall before its predecessor's is refused, naming both numbers.
        #expect(await Self.code { _ = try await ingest.ingest(batches[1], sequence: 6, for: claims) } == .overlapsNeighbour)
        for sequence in 3..<batches.count where ![0, 1, 2, 4].contains(sequence) {
            _ = try await ingest.ingest(batches[sequence], sequence: sequence, for: claims)
        }
        let finished = try await ingest.finish(claims)
        #expect(finished.state == .delivered && finished.reps == 6 && finished.droppedFrames == 0)
        #expect(fixture.sink.deliveries.count == 1)
        let delivered = try #require(fixture.sink.deliveries.first)
        #expect(delivered.session == claims.sessionID && delivered.aggregates.pose?.repCount == 6)
        #expect(delivered.aggregates.organizationID == claims.organizationID.lowercasedString && delivered.aggregates.patientID == claims.patientID.lowercasedString)
        try delivered.aggregates.validate()
        let blob = try #require(try await fixture.store.get(TelemetryIngest.blobKey(organization: claims.organizationID, session: claims.sessionID)))
        let replay = try ReplayBlob.decode(blob)
        #expect(replay.frames == frames)
        #expect(replay.events == batches[0].events + batches[4].events, "in batch order, each with its video")
        // Nothing left pending, nothing left in the spool; finishing again answers the same.
        #expect(try await fixture.store.list(prefix: "pending/").isEmpty)
        #expect(try fixture.spool.sessions().isEmpty)
        #expect(try await ingest.finish(claims).state == .delivered)
        #expect(fixture.sink.deliveries.count == 1)
        #expect(await Self.code { _ = try await ingest.ingest(batches[0], sequence: 99, for: claims) } == .finished)
    }

    @Test("the Core API down at finish: the aggregates wait in the object store, are retried with backoff, and delivered once when it is back; a restarted engine delivers what an earlier one left")
    func deliveryRetries() async throws {
        let fixture = try Fixture("ingest-retry")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine { $0.deliveryBackoff = .seconds(2) }
        let claims = Self.claims()
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        for (sequence, batch) in Self.batches(repetitions: 2).batches.enumerated() { _ = try await ingest.ingest(batch, sequence: sequence, for: claims) }
        fixture.sink.answer([.retryLater("down"), .retryLater("down")])
        let pending = try await ingest.finish(claims)
        #expect(pending.state == .pending && pending.reps == 2)
        let key = TelemetryIngest.pendingKey(organization: claims.organizationID, session: claims.sessionID)
        #expect(try await fixture.store.head(key) != nil)
        // Not due yet: nothing is tried.
        await ingest.tick()
        #expect(fixture.sink.deliveries.count == 1)
        fixture.advance(3)
        await ingest.tick()
        let stillPending = try await ingest.status(claims)
        #expect(fixture.sink.deliveries.count == 2 && stillPending.state == .pending)
        // The process ends here; the next one finds the record and delivers it.
        let restarted = fixture.engine()
        try await restarted.recover()
        await restarted.tick()
        #expect(fixture.sink.deliveries.count == 3)
        #expect(try await fixture.store.head(key) == nil)
        #expect(try await restarted.status(claims).state == .delivered)
        await restarted.tick()
        #expect(fixture.sink.deliveries.count == 3)
    }

    @Test("aggregates the Core API refuses for good move to failed/ for an operator and are not retried")
    func rejected() async throws {
        let fixture = try Fixture("ingest-rejected")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine()
        let claims = Self.claims()
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        _ = try await ingest.ingest(Self.batches(repetitions: 1).batches[0], sequence: 0, for: claims)
        fixture.sink.answer([.rejected("HTTP 404")])
        #expect(try await ingest.finish(claims).state == .failed)
        #expect(try await fixture.store.head(TelemetryIngest.failedKey(organization: claims.organizationID, session: claims.sessionID)) != nil)
        #expect(try await fixture.store.list(prefix: "pending/").isEmpty)
        fixture.advance(120)
        await ingest.tick()
        #expect(fixture.sink.deliveries.count == 1)
    }

    @Test("a crash loses nothing acknowledged: a new engine over the same spool resumes the session with its batches, and it finishes with every frame")
    func recovery() async throws {
        let fixture = try Fixture("ingest-recover")
        defer { fixture.directory.remove() }
        let claims = Self.claims()
        let (frames, batches) = Self.batches(repetitions: 3)
        do {
            let first = fixture.engine()
            _ = try await first.start(claims, exercise: "knee_flexion")
            for sequence in 0..<5 { _ = try await first.ingest(batches[sequence], sequence: sequence, for: claims) }
        }
        let second = fixture.engine()
        let (resumed, wasResumed) = try await second.start(claims, exercise: "knee_flexion")
        #expect(wasResumed && resumed.batches == 5 && resumed.nextSequence == 5 && resumed.frames == 150)
        #expect(await Self.code { _ = try await second.start(claims, exercise: "elbow_flexion") } == .exerciseChanged)
        for sequence in 5..<batches.count { _ = try await second.ingest(batches[sequence], sequence: sequence, for: claims) }
        #expect(try await second.finish(claims).reps == 3)
        let blob = try #require(try await fixture.store.get(TelemetryIngest.blobKey(organization: claims.organizationID, session: claims.sessionID)))
        #expect(try ReplayBlob.decode(blob).frames == frames)
    }

    @Test("the spool: a record cut short by a crash, or one whose checksum fails, is ignored with everything after it; a file without its manifest is no session")
    func spoolRecords() async throws {
        let directory = try TemporaryDirectory("ingest-spool")
        defer { directory.remove() }
        let spool = try DirectorySpool(directory: URL(fileURLWithPath: directory.path("spool")))
        let org = UUIDv7.generate(), session = UUIDv7.generate()
        try await spool.create(manifest: Array("{}".utf8), organization: org, session: session)
        for sequence in 0..<3 { try await spool.append(Array(repeating: UInt8(sequence), count: 100), sequence: sequence, organization: org, session: session) }
        let whole = try #require(try await spool.read(organization: org, session: session))
        #expect(whole.manifest == Array("{}".utf8) && whole.batches.map(\.sequence) == [0, 1, 2])
        let path = directory.path("spool/\(org.lowercasedString)/\(session.lowercasedString).spool")
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: path)))
        // Cut inside the last record: the first two stand.
        try Data(bytes.dropLast(40)).write(to: URL(fileURLWithPath: path))
        #expect(try await spool.read(organization: org, session: session)?.batches.map(\.sequence) == [0, 1])
        // A flipped byte in the second record's body: only the first stands.
        bytes[15 + 2 + 113 + 13 + 50] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect(try await spool.read(organization: org, session: session)?.batches.map(\.sequence) == [0])
        try Data(bytes.dropFirst(15 + 2)).write(to: URL(fileURLWithPath: path))
        #expect(try await spool.read(organization: org, session: session) == nil)
        #expect(try spool.sessions().map(\.session) == [session])
        try await spool.remove(organization: org, session: session)
        let gone = try await spool.read(organization: org, session: session)
        #expect(try spool.sessions().isEmpty && gone == nil)
    }

    @Test("an empty batch is refused; player events are capped per session; starts of one session at once make it once and keep its batches")
    func emptyEventsAndConcurrentStarts() async throws {
        let fixture = try Fixture("ingest-events")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine { $0.maximumEventsPerSession = 3 }
        let claims = Self.claims()
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        #expect(await Self.code { _ = try await ingest.ingest(TelemetryBatch(frames: PoseFrames()), sequence: 0, for: claims) } == .emptyBatch)
        let events = (0..<3).map { VideoEvent(videoID: "intro", event: MediaEvent(.timeUpdate, at: Double($0), playhead: Double($0))) }
        _ = try await ingest.ingest(TelemetryBatch(frames: PoseFrames(), events: events), sequence: 0, for: claims)
        let more = TelemetryBatch(frames: PoseFrames(), events: [VideoEvent(videoID: "intro", event: MediaEvent(.pause, at: 9))])
        #expect(await Self.code { _ = try await ingest.ingest(more, sequence: 1, for: claims) } == .sessionFull)
        let starts = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { try await ingest.start(claims, exercise: "knee_flexion").resumed } }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(starts.allSatisfy { $0 })
        #expect(try await ingest.status(claims).batches == 1)
        let spooled = try await fixture.spool.read(organization: claims.organizationID, session: claims.sessionID)
        #expect(spooled?.batches.count == 1)
        // Eight new sessions started at once: one each, none lost.
        let fresh = Self.claims()
        let made = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 { group.addTask { try await ingest.start(fresh, exercise: "knee_flexion").resumed } }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(made.filter { !$0 }.count == 1)
        #expect(ingest.counts.open == 2)
    }

    @Test("limits: open sessions per process (503, transient), frames per session (413), sequence range, an unknown exercise, a token for the same session id but another patient or clinic")
    func limits() async throws {
        let fixture = try Fixture("ingest-limits")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine {
            $0.maximumOpenSessions = 1
            $0.maximumFramesPerSession = 50
            $0.maximumBatchesPerSession = 10
        }
        let claims = Self.claims()
        let batches = Self.batches(repetitions: 1).batches
        _ = try await ingest.start(claims, exercise: "knee_flexion")
        let full = await Self.code { _ = try await ingest.start(Self.claims(), exercise: "knee_flexion") }
        #expect(full == .tooManySessions && TelemetryIngestError(.tooManySessions, "").httpStatus == 503 && TelemetryIngestError(.tooManySessions, "").isTransient)
        #expect(await Self.code { _ = try await ingest.start(Self.claims(), exercise: "juggling") } == .unknownExercise)
        _ = try await ingest.ingest(batches[0], sequence: 0, for: claims)
        #expect(await Self.code { _ = try await ingest.ingest(batches[1], sequence: 1, for: claims) } == .sessionFull)
        #expect(await Self.code { _ = try await ingest.ingest(batches[1], sequence: 10, for: claims) } == .sequenceOutOfRange)
        let otherPatient = SessionTokens.Session(sessionID: claims.sessionID, organizationID: claims.organizationID, patientID: UUIDv7.generate(), expiresAt: claims.expiresAt)
        #expect(await Self.code { _ = try await ingest.ingest(batches[1], sequence: 1, for: otherPatient) } == .wrongSession)
        #expect(await Self.code { _ = try await ingest.status(otherPatient) } == .wrongSession)
        let otherClinic = SessionTokens.Session(sessionID: claims.sessionID, organizationID: UUIDv7.generate(), patientID: claims.patientID, expiresAt: claims.expiresAt)
        #expect(await Self.code { _ = try await ingest.finish(otherClinic) } == .wrongSession)
        // A session never started is not found, and finishing it does nothing.
        #expect(await Self.code { _ = try await ingest.ingest(batches[0], sequence: 0, for: Self.claims()) } == .notStarted)
    }

    /// A gate tasks wait at until it opens.
    final class Gate: Sendable {
        private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>], arrived: Int)>((false, [], 0))
        var arrived: Int { state.withLock { $0.arrived } }

        func wait() async {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let go = state.withLock { state -> Bool in
                    state.arrived += 1
                    if state.open { return true }
                    state.waiting.append(continuation)
                    return false
                }
                if go { continuation.resume() }
            }
        }

        func open() {
            let waiting = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                state.open = true
                defer { state.waiting = [] }
                return state.waiting
            }
            for continuation in waiting { continuation.resume() }
        }
    }

    /// A local store whose writes of owner records (`open/...`) wait at a gate: a start held
    /// between claiming its session and making its spool.
    struct GatedStore: ObjectStore {
        let base: LocalObjectStore
        let gate: Gate

        func beginUpload(_ key: ObjectKey, options: ObjectPutOptions) async throws(ObjectStoreError) -> any ObjectUpload {
            if key.value.hasPrefix("open/") { await gate.wait() }
            return try await base.beginUpload(key, options: options)
        }
        func read(_ key: ObjectKey, range: Range<Int>?) async throws(ObjectStoreError) -> [UInt8]? { try await base.read(key, range: range) }
        func head(_ key: ObjectKey) async throws(ObjectStoreError) -> ObjectInfo? { try await base.head(key) }
        func delete(_ key: ObjectKey) async throws(ObjectStoreError) { try await base.delete(key) }
        func list(prefix: String) async throws(ObjectStoreError) -> [ObjectInfo] { try await base.list(prefix: prefix) }
        func presign(_ key: ObjectKey, for access: PresignedAccess, expires: Duration) throws(ObjectStoreError) -> PresignedRequest {
            try base.presign(key, for: access, expires: expires)
        }
    }

    @Test("a finish or a batch while the start is still claiming the session waits for it (409 startInProgress, transient); then the session runs its course and leaves no spool")
    func startRace() async throws {
        let fixture = try Fixture("ingest-start-race")
        defer { fixture.directory.remove() }
        let gate = Gate()
        let clock = fixture.clock
        let ingest = TelemetryIngest(spool: fixture.spool, store: GatedStore(base: fixture.store, gate: gate), sink: fixture.sink, now: { clock.now })
        let claims = Self.claims()
        let batch = Self.batches(repetitions: 1).batches[0]
        async let started = ingest.start(claims, exercise: "knee_flexion")
        while gate.arrived == 0 { try await Task.sleep(for: .milliseconds(5)) }
        // Before the fix, this finish found no spool, called the session abandoned and freed its
        // slot; the start then made a spool for a finished session, left behind for good.
        #expect(await Self.code { _ = try await ingest.finish(claims) } == .startInProgress)
        #expect(await Self.code { _ = try await ingest.ingest(batch, sequence: 0, for: claims) } == .startInProgress)
        #expect(try await ingest.status(claims).state == .open)
        let error = TelemetryIngestError(.startInProgress, "")
        #expect(error.httpStatus == 409 && error.isTransient)
        gate.open()
        #expect(try await started.status.state == .open)
        _ = try await ingest.ingest(batch, sequence: 0, for: claims)
        #expect(try await ingest.finish(claims).state == .delivered)
        #expect(ingest.counts.open == 0)
        #expect(try fixture.spool.sessions().isEmpty, "no spool left behind")
        #expect(try await fixture.store.list(prefix: "open/").isEmpty, "no owner record left behind")
    }

    @Test("one patient's open sessions are capped (429 patientSessionLimit, transient); another patient still starts, a resume is not a new session, and a finished one frees its place")
    func patientLimit() async throws {
        let fixture = try Fixture("ingest-patient-limit")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine { $0.maximumOpenSessionsPerPatient = 2 }
        let organization = UUIDv7.generate(), patient = UUIDv7.generate()
        let first = Self.claims(organization: organization, patient: patient)
        let second = Self.claims(organization: organization, patient: patient)
        let third = Self.claims(organization: organization, patient: patient)
        _ = try await ingest.start(first, exercise: "knee_flexion")
        _ = try await ingest.start(second, exercise: "knee_flexion")
        #expect(await Self.code { _ = try await ingest.start(third, exercise: "knee_flexion") } == .patientSessionLimit)
        let error = TelemetryIngestError(.patientSessionLimit, "")
        #expect(error.httpStatus == 429 && error.isTransient)
        #expect(try await ingest.start(second, exercise: "knee_flexion").resumed, "a resume at the limit")
        _ = try await ingest.start(Self.claims(organization: organization), exercise: "knee_flexion")
        #expect(try await ingest.finish(first).state == .abandoned)
        _ = try await ingest.start(third, exercise: "knee_flexion")
        #expect(ingest.counts.open == 3)
    }

    @Test("a session left idle past the timeout is finished by the sweep; one without a batch is abandoned and frees its slot")
    func idle() async throws {
        let fixture = try Fixture("ingest-idle")
        defer { fixture.directory.remove() }
        let ingest = fixture.engine {
            $0.idleTimeout = .seconds(60)
            $0.maximumOpenSessions = 2
        }
        let active = Self.claims(), empty = Self.claims()
        _ = try await ingest.start(active, exercise: "knee_flexion")
        _ = try await ingest.start(empty, exercise: "knee_flexion")
        _ = try await ingest.ingest(Self.batches(repetitions: 1).batches[0], sequence: 0, for: active)
        fixture.advance(30)
        await ingest.tick()
        #expect(try await ingest.status(active).state == .open)
        fixture.advance(31)
        await ingest.tick()
        #expect(try await ingest.status(active).state == .delivered)
        #expect(try await ingest.status(empty).state == .abandoned)
        #expect(ingest.counts.open == 0)
        #expect(fixture.sink.deliveries.count == 1)
        _ = try await ingest.start(Self.claims(), exercise: "knee_flexion")
    }
}
