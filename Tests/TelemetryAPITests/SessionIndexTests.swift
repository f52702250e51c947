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
    }
}
