import Foundation
import RestartixTelemetry
import RestartixTestSupport
import Testing

@Suite("Media quality of experience (Mux Data definitions)")
struct MediaQoETests {
    /// Events from (name, time) pairs.
    static func events(_ list: [(MediaEvent.Kind, Double)]) -> [MediaEvent] { list.map { MediaEvent($0.0, at: $0.1) } }

    @Test("Mux's startup-score examples: 2 s scores 80, 8 s scores 50, 400 ms 95, 20 s 29 (rounded)")
    func startupScores() throws {
        for (seconds, score) in [(2.0, 80.0), (8, 50), (0.4, 95.238), (20, 28.571)] {
            let metrics = try mediaSessionMetrics(Self.events([(.play, 10), (.playing, 10 + seconds), (.ended, 100)]))
            #expect(abs(try #require(metrics.startupTime) - seconds) < 1e-9)
            #expect(abs(try #require(metrics.startupScore) - score) < 1e-3)
            #expect(!metrics.exitBeforeStart)
        }
    }

    @Test("play, playing, waiting, playing is one rebuffer; the stall's time is in watch time, not playing time")
    func oneRebuffer() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.waiting, 30), (.playing, 33), (.ended, 61)]))
        #expect(m.rebufferCount == 1)
        #expect(m.rebufferDuration == 3)
        #expect(m.buffering == [BufferingEvent(start: 30, duration: 3, seekInduced: false)])
        #expect(m.watchTime == 61 && m.playingTime == 57)
        #expect(abs(try #require(m.rebufferPercentage) - 3.0 / 61) < 1e-12)
        #expect(abs(try #require(m.rebufferFrequency) - 1 / (61.0 / 60)) < 1e-12)
        let count = 100 / (1 + 0.25).squareRoot(), percentage = 100 * exp(-10 * 3.0 / 61)
        #expect(abs(try #require(m.smoothnessScore) - (count + percentage) / 2) < 1e-9)
    }

    @Test("a stall caused by a seek is recorded but is not a rebuffer: play, playing, seeking, waiting, seeked, playing")
    func seekInduced() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.seeking, 10), (.waiting, 10.1), (.seeked, 11), (.playing, 12), (.ended, 20)]))
        #expect(m.rebufferCount == 0 && m.rebufferDuration == 0)
        #expect(m.buffering.count == 1 && m.buffering[0].seekInduced && abs(m.buffering[0].duration - 1.9) < 1e-9)
        #expect(m.watchTime == 20, "seeking is watch time")
        #expect(m.playingTime == 17, "but not playing time")
        #expect(m.smoothnessScore == 100)
        // A stall right after `seeked`, before frames move again, is the seek's too.
        let after = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.seeking, 10), (.seeked, 10.2), (.waiting, 10.3), (.playing, 11), (.waiting, 15), (.playing, 16)]))
        #expect(after.rebufferCount == 1 && after.buffering.map(\.seekInduced) == [true, false])
    }

    @Test("buffering before the first frame is startup, not a rebuffer: play, waiting, playing")
    func startupBuffering() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.waiting, 0.2), (.playing, 2.5), (.ended, 10)]))
        #expect(m.rebufferCount == 0 && m.buffering.isEmpty)
        #expect(m.startupTime == 2.5)
        #expect(m.watchTime == 10 && m.playingTime == 7.5)
    }

    @Test("a pause during a rebuffer ends it; paused time is not watch time; resuming after it is")
    func pauseEndsRebuffer() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.waiting, 10), (.pause, 12), (.play, 20), (.playing, 20.5), (.ended, 30)]))
        #expect(m.rebufferCount == 1 && m.rebufferDuration == 2)
        #expect(m.watchTime == 1 + 9 + 2 + 0.5 + 9.5)
        #expect(m.playingTime == 9 + 9.5)
    }

    @Test("the playhead moving ends startup and stalls too (players that send no `playing`)")
    func playheadProgress() throws {
        let m = try mediaSessionMetrics([
            MediaEvent(.play, at: 0, playhead: 0), MediaEvent(.timeUpdate, at: 0.5, playhead: 0), MediaEvent(.timeUpdate, at: 1.5, playhead: 0.25),
            MediaEvent(.waiting, at: 5, playhead: 3.7), MediaEvent(.timeUpdate, at: 6, playhead: 3.7), MediaEvent(.timeUpdate, at: 7, playhead: 3.9),
            MediaEvent(.ended, at: 9, playhead: 5.9),
        ])
        #expect(m.startupTime == 1.5, "a timeupdate with the playhead where it was is not the start")
        #expect(m.rebufferCount == 1 && m.rebufferDuration == 2)
    }

    @Test("exit before video start, start failure, playback failure, non-fatal errors, renditions, no play at all")
    func exitsAndFailures() throws {
        let exited = try mediaSessionMetrics(Self.events([(.play, 0), (.waiting, 0.1)]), endedAt: 6)
        #expect(exited.exitBeforeStart && exited.startupTime == nil && exited.startupScore == nil && exited.smoothnessScore == nil)
        #expect(exited.watchTime == 6)
        let startFailure = try mediaSessionMetrics([MediaEvent(.play, at: 0), MediaEvent(.error, at: 3, fatal: true)], endedAt: 10)
        #expect(!startFailure.exitBeforeStart && startFailure.failureCount == 1 && startFailure.failed && !startFailure.started)
        #expect(startFailure.watchTime == 3)
        let playback = try mediaSessionMetrics([
            MediaEvent(.play, at: 0), MediaEvent(.playing, at: 1), MediaEvent(.error, at: 2), MediaEvent(.renditionChange, at: 4),
            MediaEvent(.waiting, at: 5), MediaEvent(.error, at: 8, fatal: true), MediaEvent(.playing, at: 9), MediaEvent(.error, at: 9.5, fatal: true),
        ], endedAt: 20)
        #expect(playback.failureCount == 1 && playback.nonFatalErrorCount == 1 && playback.renditionChanges == 1)
        #expect(playback.rebufferCount == 1 && playback.rebufferDuration == 3, "a fatal error ends the stall")
        #expect(playback.watchTime == 8 && playback.playingTime == 4, "nothing after the failure counts")
        let none = try mediaSessionMetrics(Self.events([(.timeUpdate, 0), (.pause, 1)]))
        #expect(!none.exitBeforeStart && none.watchTime == 0 && none.rebufferPercentage == nil)
        let empty = try mediaSessionMetrics([])
        #expect(!empty.exitBeforeStart && empty.watchTime == 0)
    }

    @Test("Mux's smoothness example: 20 minutes with four 15-second rebuffers averages 44.7 and 60.7")
    func smoothnessExample() throws {
        var list: [(MediaEvent.Kind, Double)] = [(.play, 0), (.playing, 0)]
        for k in 0..<4 {
            let at = Double(k + 1) * 200
            list += [(.waiting, at), (.playing, at + 15)]
        }
        list.append((.ended, 1200))
        let m = try mediaSessionMetrics(Self.events(list))
        #expect(m.rebufferCount == 4 && m.rebufferDuration == 60 && m.watchTime == 1200)
        #expect(abs(try #require(m.rebufferPercentage) - 0.05) < 1e-12)
        #expect(abs(try #require(m.smoothnessScore) - (100 / 5.0.squareRoot() + 100 * exp(-0.5)) / 2) < 1e-9)
        #expect(abs(try #require(m.rebufferFrequency) - 0.2) < 1e-12, "4 per 20 minutes")
    }

    @Test("seeking while paused, stalls included, is no rebuffer and no watch time (Mux: the heartbeat does not run for a paused seek)")
    func pausedSeek() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.seeking, 8), (.waiting, 8.1), (.seeked, 9), (.play, 15), (.playing, 15.2), (.ended, 20)]))
        #expect(m.rebufferCount == 0 && m.buffering.map(\.seekInduced) == [true])
        #expect(abs(m.watchTime - (1 + 4 + 0.2 + 4.8)) < 1e-9)
        var times = MediaStateTimes()
        (times.startup, times.playing, times.paused, times.pausedSeeking, times.resuming) = (1, 4 + 4.8, 3 + 6, 1, 0.2)
        Self.expectClose(m.stateTimes, times)
    }

    @Test("the time from `seeked` to frames moving is seek latency, not playing time")
    func seekLoading() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.seeking, 5), (.seeked, 5.5), (.playing, 6), (.ended, 10)]))
        #expect(m.playingTime == 8 && m.watchTime == 10 && m.rebufferCount == 0 && m.buffering.isEmpty)
        var times = MediaStateTimes()
        (times.startup, times.playing, times.seeking, times.seekLoading) = (1, 8, 0.5, 0.5)
        Self.expectClose(m.stateTimes, times)
        // A player that reports only the playhead: the first move after the seek ends it.
        let playhead = try mediaSessionMetrics([
            MediaEvent(.play, at: 0), MediaEvent(.playing, at: 1, playhead: 0), MediaEvent(.seeking, at: 5, playhead: 4),
            MediaEvent(.seeked, at: 5.5, playhead: 30), MediaEvent(.timeUpdate, at: 5.8, playhead: 30), MediaEvent(.timeUpdate, at: 6, playhead: 30.2),
            MediaEvent(.ended, at: 10),
        ])
        #expect(abs(playhead.playingTime - 8) < 1e-9 && abs(playhead.stateTimes.seekLoading - 0.5) < 1e-9)
    }

    @Test("buffering after the viewer's pause and play is resuming time, not a rebuffer (Mux: no frames were playing)")
    func bufferingAfterResume() throws {
        let m = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.play, 8), (.waiting, 8.1), (.playing, 9), (.ended, 12)]))
        #expect(m.rebufferCount == 0 && m.rebufferDuration == 0 && m.buffering.isEmpty)
        #expect(m.watchTime == 1 + 4 + 1 + 3 && m.playingTime == 7)
        var times = MediaStateTimes()
        (times.startup, times.playing, times.paused, times.resuming) = (1, 7, 3, 1)
        Self.expectClose(m.stateTimes, times)
        // Once frames play again, a stall is a rebuffer as usual.
        let later = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.play, 8), (.playing, 8.2), (.waiting, 9), (.playing, 10)]))
        #expect(later.rebufferCount == 1 && later.rebufferDuration == 1)
    }

    static func expectClose(_ seen: MediaStateTimes, _ expected: MediaStateTimes, sourceLocation: SourceLocation = #_sourceLocation) {
        let pairs: [(String, Double, Double)] = [
            ("startup", seen.startup, expected.startup), ("playing", seen.playing, expected.playing),
            ("rebuffering", seen.rebuffering, expected.rebuffering), ("resuming", seen.resuming, expected.resuming),
            ("seeking", seen.seeking, expected.seeking), ("seekLoading", seen.seekLoading, expected.seekLoading),
            ("pausedSeeking", seen.pausedSeeking, expected.pausedSeeking), ("paused", seen.paused, expected.paused),
        ]
        for (name, a, b) in pairs {
            #expect(abs(a - b) < 1e-9, "\(name): \(a) instead of \(b)", sourceLocation: sourceLocation)
        }
    }

    @Test("paused seeks: a play while the seek loads resumes; a second seek stays paused; a stall after play is the seek's")
    func pausedSeekSequences() throws {
        let resumed = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.seeking, 6), (.waiting, 6.1), (.play, 7), (.seeked, 8), (.playing, 8.2)]), endedAt: 20)
        // Seeking and loading while paused (6 to 7) is not watch time; after the play it is.
        #expect(abs(resumed.playingTime - (4 + 11.8)) < 1e-9 && abs(resumed.watchTime - (1 + 4 + 1.2 + 11.8)) < 1e-9)
        #expect(resumed.rebufferCount == 0)
        let scrubbing = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.seeking, 6), (.waiting, 6.1), (.seeking, 6.5), (.seeked, 7)]), endedAt: 20)
        #expect(scrubbing.playingTime == 4, "still paused after the second seek")
        // After a paused seek, the viewer's play: its buffering is resuming time, no row.
        let later = try mediaSessionMetrics(Self.events([(.play, 0), (.playing, 1), (.pause, 5), (.seeking, 6), (.seeked, 6.2), (.play, 10), (.waiting, 10.05), (.playing, 11), (.ended, 20)]))
        #expect(later.rebufferCount == 0 && later.buffering.isEmpty && abs(later.stateTimes.resuming - 1) < 1e-9)
        // A seek's playhead jump is not playback: startup still ends at the first frame.
        let jump = try mediaSessionMetrics([
            MediaEvent(.play, at: 0, playhead: 0), MediaEvent(.seeking, at: 0.1), MediaEvent(.timeUpdate, at: 0.3, playhead: 60),
            MediaEvent(.seeked, at: 0.3), MediaEvent(.playing, at: 2.5), MediaEvent(.ended, at: 10),
        ])
        #expect(jump.startupTime == 2.5)
    }

    @Test("bad input is refused with its code: times out of order, not finite, a negative playhead, an end before the last event")
    func badInput() {
        func code(_ body: () throws -> Void) -> TelemetryError.Code? {
            do { try body(); return nil } catch { return (error as? TelemetryError)?.code }
        }
        #expect(code { _ = try mediaSessionMetrics(Self.events([(.play, 2), (.playing, 1)])) } == .timestampNotIncreasing)
        #expect(code { _ = try mediaSessionMetrics(Self.events([(.play, .nan)])) } == .nonFiniteValue)
        #expect(code { _ = try mediaSessionMetrics([MediaEvent(.play, at: 0, playhead: .infinity)]) } == .nonFiniteValue)
        #expect(code { _ = try mediaSessionMetrics([MediaEvent(.play, at: 0, playhead: -1)]) } == .invalidArgument)
        #expect(code { _ = try mediaSessionMetrics(Self.events([(.play, 5)]), endedAt: 4) } == .invalidArgument)
        #expect(code { _ = try mediaSessionMetrics(Self.events([(.play, 1), (.playing, 1)])) } == nil, "equal times are fine")
        #expect(MediaEvent.Kind(eventName: "buffering") == .waiting && MediaEvent.Kind(eventName: "timeupdate") == .timeUpdate)
        #expect(MediaEvent.Kind(eventName: "stalled") == nil)
    }

    @Test("property, on random event streams: watch time covers playing and rebuffer time; counts match the rows; at most one failure")
    func accountingProperty() throws {
        var random = SeededRandom(seed: 42)
        let kinds: [MediaEvent.Kind] = [.play, .playing, .pause, .seeking, .seeked, .waiting, .timeUpdate, .renditionChange, .error, .ended]
        for _ in 0..<300 {
            var t = 0.0
            let events = (0..<Int.random(in: 0...25, using: &random)).map { _ in
                t += Double.random(in: 0...5, using: &random)
                return MediaEvent(kinds.randomElement(using: &random)!, at: t, fatal: Double.random(in: 0..<1, using: &random) < 0.05)
            }
            let m = try mediaSessionMetrics(events)
            #expect(m.watchTime + 1e-9 >= m.playingTime + m.rebufferDuration)
            #expect(m.rebufferCount == m.buffering.filter { !$0.seekInduced }.count)
            #expect(abs(m.rebufferDuration - m.buffering.filter { !$0.seekInduced }.reduce(0) { $0 + $1.duration }) < 1e-9)
            #expect(m.failureCount <= 1)
            // The states partition the view from its first play to its end: nothing counted twice
            // or lost, and watch time is exactly the watch states.
            let times = m.stateTimes
            let all = times.watch + times.paused + times.pausedSeeking
            let first = events.first { $0.kind == .play || $0.kind == .playing }?.time
            let failedAt = events.first { $0.kind == .error && $0.fatal }?.time
            let endedAt = events.last?.time ?? 0
            if let first {
                // Ended and failed states count nothing; a view that ended by `ended` and played
                // again has gaps, so only the bound holds in general.
                #expect(all <= (failedAt.map { max($0, first) } ?? endedAt) - first + 1e-9)
            } else {
                #expect(all == 0)
            }
            #expect(abs(m.watchTime - times.watch) < 1e-12 && m.playingTime == times.playing && m.rebufferDuration == times.rebuffering)
            if let score = m.smoothnessScore { #expect(score > 0 && score <= 100) }
        }
    }
}
