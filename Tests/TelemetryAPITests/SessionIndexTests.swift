import Foundation
import RestartixCrypto
import RestartixKit
@testable import RestartixTelemetryIngest
import RestartixTestSupport
import Testing

/// The engine's per-session index (gaps, the next number, the neighbours with frames), kept as
/// batches arrive instead of recomputed from every batch under the engine's lock: held against
/// a recomputation from scratch after every batch, over random arrival orders.
@Suite("Telemetry session index")
struct SessionIndexTests {
    @Test("gaps, next sequence and neighbours match a recomputation after every batch, in any order", arguments: [1, 2, 3, 4, 5, 6, 7, 8])
    func matchesRecomputation(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        let claims = SessionTokens.Session(sessionID: UUID(), organizationID: UUID(), patientID: UUID(), expiresAt: Date())
        var session = TelemetryIngest.Session(claims: claims, exercise: "knee_flexion", startedAt: Date(), lastActivity: Date())
        let numbers = Array(0..<120).shuffled(using: &random).prefix(Int.random(in: 1...120, using: &random))
        var framed: [Int: Bool] = [:]
        for sequence in numbers {
            let hasFrames = Bool.random(using: &random)
            framed[sequence] = hasFrames
            let time = Double(sequence)
            session.record(sequence, .init(digest: [], frames: hasFrames ? 3 : 0, events: 1, first: hasFrames ? time : nil, last: hasFrames ? time + 0.5 : nil))
            session.record(sequence, .init(digest: [], frames: 99, events: 99, first: nil, last: nil))  // a repeat changes nothing

            let received = Set(framed.keys)
            let next = (received.max() ?? -1) + 1
            var gaps: [ClosedRange<Int>] = []
            var start: Int?
            for n in 0..<next {
                if !received.contains(n) {
                    if start == nil { start = n }
                } else if let open = start {
                    gaps.append(open...(n - 1))
                    start = nil
                }
            }
            let status = session.status(claims.sessionID)
            #expect(status.nextSequence == next && status.gaps == gaps && status.batches == received.count)
            #expect(status.frames == framed.values.filter { $0 }.count * 3)
            for probe in [0, sequence, Int.random(in: 0..<130, using: &random)] {
                let (before, after) = session.neighbours(of: probe)
                #expect(before?.0 == framed.filter { $0.value && $0.key < probe }.keys.max(), "before \(probe)")
                #expect(after?.0 == framed.filter { $0.value && $0.key > probe }.keys.min(), "after \(probe)")
            }
        }
        // Finished: the index goes, the counts and gaps stay.
        let before = session.status(claims.sessionID)
        session.compact()
        #expect(session.status(claims.sessionID) == before && session.batches.isEmpty)
    }

    @Test("an index entry is 40 bytes inline, keeps what it was given, and tells content apart by its digest")
    func entry() {
        #expect(MemoryLayout<TelemetryIngest.BatchEntry>.size == 40)
        let a = TelemetryIngest.BatchEntry(digest: Array(0..<32 as Range<UInt8>), frames: 30, events: 2, first: -1e9, last: 1e9)
        #expect(a.frames == 30 && a.events == 2 && a.first == -1e9 && a.last == 1e9)
        let eventsOnly = TelemetryIngest.BatchEntry(digest: Array(0..<32 as Range<UInt8>), frames: 0, events: 1, first: nil, last: nil)
        #expect(eventsOnly.first == nil && eventsOnly.last == nil)
        #expect(a.sameContent(as: eventsOnly))
        // Every one of the 16 bytes counts.
        for index in 0..<16 {
            var bytes = [UInt8](repeating: 0, count: 32)
            bytes[index] = 1
            #expect(!TelemetryIngest.BatchEntry(digest: bytes, frames: 1, events: 0, first: 0, last: 0).sameContent(as: .init(digest: [UInt8](repeating: 0, count: 32), frames: 1, events: 0, first: 0, last: 0)), "byte \(index)")
        }
    }
}
