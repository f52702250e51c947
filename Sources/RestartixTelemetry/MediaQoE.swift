import RestartixCore
import Foundation

/// One video-player event as the browser reports it. `time` is seconds on a monotonic clock
/// (the page's `performance.now()` / 1000); `playhead` is the position in the video, seconds,
/// where the player gave it.
public struct MediaEvent: Sendable, Hashable {
    /// The HTML media events the kernel reads (raw values are the DOM event names).
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// The viewer (or autoplay) asked the player to play.
        case play
        /// Frames are being presented: playback started or resumed after a stall.
        case playing
        /// Paused by the viewer.
        case pause
        /// A seek began.
        case seeking
        /// A seek finished.
        case seeked
        /// Playback stopped for lack of data (a stall).
        case waiting
        /// The playhead moved (the player reports this a few times a second).
        case timeUpdate = "timeupdate"
        /// The player switched to another rendition (adaptive bitrate).
        case renditionChange = "renditionchange"
        /// An error; ``MediaEvent/fatal`` says whether playback can go on.
        case error
        /// The video reached its end.
        case ended

        /// The kind for a DOM or player event name; "buffering" is accepted for `waiting`.
        public init?(eventName: String) {
            if eventName == "buffering" { self = .waiting } else { self.init(rawValue: eventName) }
        }
    }

    /// What happened.
    public var kind: Kind
    /// When, seconds on a monotonic clock.
    public var time: Double
    /// The playhead, seconds into the video, if the player reported it.
    public var playhead: Double?
    /// For ``Kind/error``: playback cannot continue.
    public var fatal: Bool

    /// An event.
    public init(_ kind: Kind, at time: Double, playhead: Double? = nil, fatal: Bool = false) {
        self.kind = kind
        self.time = time
        self.playhead = playhead
        self.fatal = fatal
    }
}

/// A stall after the video started: a row of `media_buffering_events`.
public struct BufferingEvent: Sendable, Hashable {
    /// What ended a stall.
    public enum End: String, Sendable, Hashable, CaseIterable {
        /// Frames moved again (`playing`, or the playhead advancing).
        case framesMoving
        /// The viewer paused.
        case pause
        /// The viewer seeked elsewhere.
        case seeking
        /// A seek made while paused finished loading (`seeked`); the player stays paused.
        case seeked
        /// A fatal error.
        case fatalError
        /// The video reached its end.
        case ended
        /// The view ended with the player still stalled.
        case viewEnd
    }

    /// Seconds after the view began (the first play instruction).
    public var start: Double
    /// How long it lasted, seconds.
    public var duration: Double
    /// Caused by a seek: recorded, but not a rebuffer.
    public var seekInduced: Bool
    /// What ended it.
    public var endedBy: End

    /// A stall.
    public init(start: Double, duration: Double, seekInduced: Bool, endedBy: End = .framesMoving) {
        self.start = start
        self.duration = duration
        self.seekInduced = seekInduced
        self.endedBy = endedBy
    }
}

/// Where a view's time went, seconds per player state (Documentation/telemetry-metrics.md).
/// Watch time is the sum of the first six; the last two are not watch time.
public struct MediaStateTimes: Sendable, Hashable {
    /// Asked to play, no frame yet (startup, its buffering included).
    public var startup: Double = 0
    /// Frames playing.
    public var playing: Double = 0
    /// Stalled while playing: rebuffering.
    public var rebuffering: Double = 0
    /// Asked to play again after a pause, no frame yet (its buffering included: not a rebuffer).
    public var resuming: Double = 0
    /// From `seeking` to `seeked` while the viewer wants playback.
    public var seeking: Double = 0
    /// After `seeked`, until frames move again (stalls included): the rest of the seek latency.
    public var seekLoading: Double = 0
    /// Seeking (and its loading) while paused: the viewer is not trying to watch.
    public var pausedSeeking: Double = 0
    /// Paused, before or after the first frame.
    public var paused: Double = 0

    /// The states that are watch time: everything but pausing and seeking while paused.
    public var watch: Double { startup + playing + rebuffering + resuming + seeking + seekLoading }

    public init() {}
}

/// A view's quality of experience: the row of `media_session_metrics` (less the identifiers the
/// caller owns), with Mux Data's definitions. Documentation/telemetry-metrics.md has them all.
public struct MediaSessionMetrics: Sendable, Hashable {
    /// From the play instruction to the first frame with the playhead moving, seconds; nil if
    /// the video never started.
    public var startupTime: Double?
    /// The viewer asked to play and left before the video started, without a fatal error.
    public var exitBeforeStart: Bool
    /// Time spent watching or trying to watch: startup, playing, rebuffering, resuming and
    /// seeking, not paused time and not seeking while paused; seconds.
    public var watchTime: Double
    /// Time with frames playing: not startup, rebuffering, resuming, seeking (nor the loading
    /// after a seek) or paused; seconds.
    public var playingTime: Double
    /// Stalls after the video started, not caused by a seek.
    public var rebufferCount: Int
    /// Their total duration, seconds.
    public var rebufferDuration: Double
    /// `rebufferDuration / watchTime`, a fraction (0.05 is 5%) as Mux's API reports it; nil
    /// with no watch time.
    public var rebufferPercentage: Double?
    /// Rebuffers per minute of watch time; nil with no watch time.
    public var rebufferFrequency: Double?
    /// Mux's startup score, `8 / (8 + startup seconds) · 100`; nil if the video never started.
    public var startupScore: Double?
    /// Mux's smoothness score, the mean of `100 / √(1 + (count / 2)²)` and
    /// `100 · e^(−10 · rebufferPercentage)`; nil if the video never started.
    public var smoothnessScore: Double?
    /// Fatal errors (0 or 1: playback ends at the first).
    public var failureCount: Int
    /// Errors playback went on after.
    public var nonFatalErrorCount: Int
    /// Rendition switches.
    public var renditionChanges: Int
    /// Every stall after the start, rebuffers and seek-induced ones, in order.
    public var buffering: [BufferingEvent]
    /// The time in each player state, from which other readings can be derived.
    public var stateTimes: MediaStateTimes

    /// The video started playing.
    public var started: Bool { startupTime != nil }
    /// Playback ended in a fatal error.
    public var failed: Bool { failureCount > 0 }
}

/// Computes a view's quality-of-experience metrics from its player events, in time order.
/// The view ends at `endedAt` (when the page reported it closed) or at the last event.
///
/// Throws ``TelemetryError`` and computes nothing on bad input: a time or playhead that is not
/// finite (`nonFiniteValue`), a time earlier than the one before it (`timestampNotIncreasing`;
/// equal times are fine, events share milliseconds), a negative playhead or an `endedAt` before
/// the last event (`invalidArgument`).
public func mediaSessionMetrics(_ events: [MediaEvent], endedAt: Double? = nil) throws(TelemetryError) -> MediaSessionMetrics {
    var previous = -Double.infinity
    for event in events {
        guard event.time.isFinite else { throw TelemetryError(.nonFiniteValue, "a media event's time is not a finite number") }
        guard event.time >= previous else {
            throw TelemetryError(.timestampNotIncreasing, "media events must be in time order (an event is earlier than the one before it)")
        }
        if let playhead = event.playhead {
            guard playhead.isFinite else { throw TelemetryError(.nonFiniteValue, "a media event's playhead is not a finite number") }
            guard playhead >= 0 else { throw TelemetryError(.invalidArgument, "a media event's playhead is negative") }
        }
        previous = event.time
    }
    if let endedAt {
        guard endedAt.isFinite else { throw TelemetryError(.nonFiniteValue, "the view's end is not a finite number") }
        guard endedAt >= previous else { throw TelemetryError(.invalidArgument, "the view cannot end before its last event") }
    }
    var machine = PlaybackMachine()
    for event in events { machine.handle(event) }
    return machine.finish(at: endedAt ?? events.last?.time ?? 0)
}

/// The player's state through a view; see Documentation/telemetry-metrics.md for the diagram.
struct PlaybackMachine {
    enum State {
        /// No play instruction yet.
        case idle
        /// Asked to play, no frame yet (startup; stalls here are startup, not rebuffers).
        case starting
        /// Paused before the first frame (the startup attempt is abandoned; the next play starts it again).
        case pausedBeforeStart
        case playing
        /// Asked to play after a pause; waiting for frames (a stall here is not a rebuffer).
        case resuming
        case paused
        case seeking
        /// After `seeked` with playback wanted, until frames move again.
        case seekLoading
        /// Stalled after the start; `seekInduced` when it began while seeking or recovering from one.
        case stalled(since: Double, seekInduced: Bool)
        case ended
        case failed
    }

    var state = State.idle
    /// When the state last changed (time in it has been counted up to here).
    var cursor = 0.0
    var viewStart: Double?
    var attemptStart = 0.0
    var startup: Double?
    var times = MediaStateTimes()
    var rebuffers = 0, failures = 0, nonFatal = 0, renditions = 0
    var buffering: [BufferingEvent] = []
    /// Whether the viewer wants playback to go on after the current seek or stall: a seek made
    /// while paused is not watch time until the viewer asks to play.
    var resumeAfterSeek = true
    var lastPlayhead: Double?
    /// What a stall ending now ends by: the event being handled, or the view's end.
    var ending = BufferingEvent.End.viewEnd

    /// Counts the time since `cursor` in the current state, up to `time`.
    mutating func account(to time: Double) {
        let span = time - cursor
        switch state {
        case .starting: times.startup += span
        case .playing: times.playing += span
        case .resuming: times.resuming += span
        case .seeking:
            if resumeAfterSeek { times.seeking += span } else { times.pausedSeeking += span }
        case .seekLoading: times.seekLoading += span
        case .stalled(_, let seekInduced):
            if !seekInduced {
                times.rebuffering += span
            } else if resumeAfterSeek {
                times.seekLoading += span
            } else {
                times.pausedSeeking += span
            }
        case .pausedBeforeStart, .paused: times.paused += span
        case .idle, .ended, .failed: break
        }
        cursor = time
    }

    /// The viewer changes their mind during a seek: the time so far counts as it was.
    mutating func setResumeAfterSeek(_ resume: Bool, at time: Double) {
        account(to: time)
        resumeAfterSeek = resume
    }

    mutating func move(to next: State, at time: Double) {
        account(to: time)
        if case .stalled(let since, let seekInduced) = state {
            if !seekInduced { rebuffers += 1 }
            buffering.append(BufferingEvent(start: since - (viewStart ?? since), duration: time - since, seekInduced: seekInduced, endedBy: ending))
        }
        state = next
    }

    mutating func handle(_ event: MediaEvent) {
        let t = event.time
        var progressed = false
        if event.kind == .seeking || event.kind == .seeked {
            // A seek moves the playhead without playing: the next position is a new baseline.
            lastPlayhead = event.playhead
        } else if let playhead = event.playhead {
            if event.kind == .timeUpdate, let last = lastPlayhead, playhead > last { progressed = true }
            lastPlayhead = playhead
        }
        let framesMoving = event.kind == .playing || progressed
        ending = switch event.kind {
        case _ where framesMoving: .framesMoving
        case .pause: .pause
        case .seeking: .seeking
        case .seeked: .seeked
        case .error: .fatalError
        case .ended: .ended
        default: .viewEnd
        }
        switch event.kind {
        case .renditionChange:
            renditions += 1
            return
        case .error:
            guard event.fatal else {
                nonFatal += 1
                return
            }
            if case .failed = state { return }
            failures += 1
            move(to: .failed, at: t)
            return
        default: break
        }
        switch state {
        case .idle, .pausedBeforeStart:
            if event.kind == .play || event.kind == .playing {
                if viewStart == nil { viewStart = t }
                attemptStart = t
                move(to: .starting, at: t)
                if event.kind == .playing { begin(at: t) }  // autoplay that only reported `playing`
            }
        case .starting:
            switch event.kind {
            case _ where framesMoving: begin(at: t)
            case .pause: move(to: .pausedBeforeStart, at: t)
            case .ended: move(to: .ended, at: t)
            default: break  // waiting and seeking before the first frame are startup
            }
        case .playing:
            switch event.kind {
            case .waiting: move(to: .stalled(since: t, seekInduced: false), at: t)
            case .pause: move(to: .paused, at: t)
            case .seeking: startSeek(at: t, resume: true)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .resuming:
            // Buffering after the viewer's play is part of resuming, as startup's is part of
            // startup: no frames were playing, so it is not a rebuffer (Mux counts a rebuffer
            // only once playback has been going).
            switch event.kind {
            case _ where framesMoving: move(to: .playing, at: t)
            case .pause: move(to: .paused, at: t)
            case .seeking: startSeek(at: t, resume: true)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .paused, .ended:
            switch event.kind {
            case .play: move(to: .resuming, at: t)
            case .seeking: startSeek(at: t, resume: false)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .seeking:
            switch event.kind {
            // Until frames move again the seek is loading (Mux's seek latency runs "until the
            // video is ready to resume playback"): not playing time.
            case .seeked: move(to: resumeAfterSeek ? .seekLoading : .paused, at: t)
            case .waiting: move(to: .stalled(since: t, seekInduced: true), at: t)
            case .playing: move(to: .playing, at: t)
            case .pause: setResumeAfterSeek(false, at: t)
            case .play: setResumeAfterSeek(true, at: t)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .seekLoading:
            switch event.kind {
            case _ where framesMoving: move(to: .playing, at: t)
            case .waiting: move(to: .stalled(since: t, seekInduced: true), at: t)
            case .pause: move(to: .paused, at: t)
            case .seeking: startSeek(at: t, resume: true)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .stalled(_, let seekInduced):
            switch event.kind {
            case _ where framesMoving: move(to: .playing, at: t)
            case .pause: move(to: .paused, at: t)  // a pause ends a stall
            case .play where seekInduced: setResumeAfterSeek(true, at: t)  // play pressed while a paused seek loads
            case .seeking: startSeek(at: t, resume: seekInduced ? resumeAfterSeek : true)
            case .seeked where seekInduced && !resumeAfterSeek: move(to: .paused, at: t)
            case .ended: move(to: .ended, at: t)
            default: break
            }
        case .failed:
            break
        }
    }

    /// The first frame: startup ends.
    mutating func begin(at t: Double) {
        startup = t - attemptStart
        move(to: .playing, at: t)
    }

    mutating func startSeek(at t: Double, resume: Bool) {
        resumeAfterSeek = resume
        move(to: .seeking, at: t)
    }

    /// Closes the view at `end` and computes the metrics.
    mutating func finish(at end: Double) -> MediaSessionMetrics {
        ending = .viewEnd
        move(to: .ended, at: max(end, cursor))
        let watch = times.watch, rebuffer = times.rebuffering
        var metrics = MediaSessionMetrics(
            startupTime: startup,
            exitBeforeStart: viewStart != nil && startup == nil && failures == 0,
            watchTime: watch,
            playingTime: times.playing,
            rebufferCount: rebuffers,
            rebufferDuration: rebuffer,
            failureCount: failures,
            nonFatalErrorCount: nonFatal,
            renditionChanges: renditions,
            buffering: buffering,
            stateTimes: times
        )
        if watch > 0 {
            metrics.rebufferPercentage = rebuffer / watch
            metrics.rebufferFrequency = Double(rebuffers) / (watch / 60)
        }
        if let startup {
            metrics.startupScore = 8 / (8 + startup) * 100
            let countScore = 100 / (1 + (Double(rebuffers) / 2) * (Double(rebuffers) / 2)).squareRoot()
            let percentageScore = 100 * exp(-10 * (metrics.rebufferPercentage ?? 0))
            metrics.smoothnessScore = (countScore + percentageScore) / 2
        }
        return metrics
    }
}
