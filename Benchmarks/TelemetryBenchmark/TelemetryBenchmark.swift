import BenchmarkSupport
import Foundation
import MallocCounter
import RestartixTelemetry

/// The full pose pipeline (joint angles on both knees, smoothing, hysteresis counting, per-rep
/// and per-session metrics; `PoseAnalyzer` with the knee-flexion profile) in frames per second
/// on one core, on a 10-minute 30 fps session and on 1,000,000 frames, beside two limits
/// measured in the same run on the same frames:
///   (a) a plain sequential read of the columns the pipeline reads (the memory limit), and
///   (b) Benchmarks/reference/pose_pipeline.py, a vectorized numpy implementation of the same
///       definitions, run by python3 on the same session (handed over as a replay blob).
/// The two implementations must agree on the repetition count and the mean range of motion, or
/// the benchmark fails. Targets: kit >= 3x numpy, and no allocation per frame (counted by
/// interposing malloc: a warmed analyzer's run may allocate per call and per repetition only).
@main
struct TelemetryBenchmark {
    static func main() throws {
        Bench.name = "telemetry-benchmark"
        let runs = Int(ProcessInfo.processInfo.environment["BENCH_RUNS"] ?? "5") ?? 5
        let reference = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("reference/pose_pipeline.py").path
        Bench.say("telemetry-benchmark: one core, best of \(runs) runs (x5 for the session); limits = sequential read of the same columns, numpy reference (\(reference)), same run")
        Bench.say("  workload          frames  reps   kit_fps      read_fps     kit/read  numpy_fps    kit/numpy  allocs/frame  allocs/run  bulk_load_fps  bulk/kit")
        for (name, frameCount) in [("10 min @ 30 fps", 18_000), ("1M frames", 1_000_000)] {
            // A 10-minute session takes about a millisecond: time it more often, so one timer
            // interrupt or migration between cores does not decide the best time (both sides).
            let runs = frameCount < 100_000 ? runs * 5 : runs
            let frames = session(frames: frameCount, seed: 7)
            var analyzer = PoseAnalyzer()
            var result = analyzer.analyze(frames, profile: .kneeFlexion)  // warm: buffers grow once
            let before = malloc_counter_allocations()
            result = analyzer.analyze(frames, profile: .kneeFlexion)
            let allocations = malloc_counter_allocations() - before
            let kit = best(runs) { result = analyzer.analyze(frames, profile: .kneeFlexion) }
            let read = best(runs) { _ = sequentialRead(frames) }
            // The bulk load: the same frames as 132 columns, checked in one pass per column.
            let columns = (0..<4).flatMap { component in
                (0..<PoseFrames.landmarkCount).map { landmark in
                    [frames.x, frames.y, frames.z, frames.visibility][component](landmark)
                }
            }
            var loaded = 0
            let bulk = best(runs) { loaded &+= ((try? PoseFrames(timestamps: frames.timestamps, columns: columns))?.count ?? -1) }
            guard loaded == frameCount * runs else { Bench.fail("the bulk load refused the benchmark's frames") }

            let blob = FileManager.default.temporaryDirectory.appendingPathComponent("telemetry-benchmark-\(getpid()).bin.gz")
            try Data(ReplayBlob.encode(ReplaySession(frames: frames), maximumSize: .max)).write(to: blob)
            defer { try? FileManager.default.removeItem(at: blob) }
            let output = try Bench.run("python3", [reference, blob.path, "\(runs)"])
            guard let line = output.split(separator: "\n").last,
                  let json = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let numpySeconds = json["seconds"] as? Double, let numpyReps = json["reps"] as? Int
            else { Bench.fail("could not read the numpy reference's output:\n\(output)") }
            let numpyRange = json["mean_rom"] as? Double ?? 0
            let kitRange = Double(result.session.meanRangeOfMotion ?? 0)
            guard numpyReps == result.reps.count, abs(numpyRange - kitRange) < 0.01 else {
                Bench.fail("the kit and the numpy reference disagree: \(result.reps.count) vs \(numpyReps) reps, mean range \(kitRange) vs \(numpyRange)")
            }
            let n = Double(frameCount)
            Bench.say(String(
                format: "  %@ %8d %5d %11.3e %13.3e %9.3f %12.3e %9.2f %12.5f %11d %14.3e %9.2f",
                name.padding(toLength: 16, withPad: " ", startingAt: 0), frameCount, result.reps.count, n / kit, n / read, read / kit, n / numpySeconds, numpySeconds / kit,
                Double(allocations) / n, allocations, n / bulk, kit / bulk
            ))
        }
    }

    /// The fastest of `runs` timings of `body`, seconds.
    static func best(_ runs: Int, _ body: () -> Void) -> Double {
        var fastest = Double.infinity
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return fastest
    }

    /// Reads every value of the columns the pipeline reads (x, y and visibility of both hips,
    /// knees and ankles) and the timestamps, once, front to back.
    @inline(never)
    static func sequentialRead(_ frames: PoseFrames) -> Float {
        var sum: Float = 0
        for landmark in [PoseLandmark.leftHip, .leftKnee, .leftAnkle, .rightHip, .rightKnee, .rightAnkle] {
            for column in [frames.x(landmark.rawValue), frames.y(landmark.rawValue), frames.visibility(landmark.rawValue)] {
                column.withUnsafeBufferPointer { for value in $0 { sum += value } }
            }
        }
        frames.timestamps.withUnsafeBufferPointer { for value in $0 { sum += Float(value) } }
        return sum
    }

    /// Squats at 30 fps: repetitions of 2-3.5 s to a depth of 80-100 degrees with 0.5 s rests,
    /// coordinate noise (σ 0.003 of the frame), and a short and a long visibility dip each minute.
    static func session(frames count: Int, seed: UInt64) -> PoseFrames {
        var random = SplitMix64(seed: seed)
        var frames = PoseFrames(capacity: count)
        var landmarks = [Landmark](repeating: Landmark(x: 0.5, y: 0.5, visibility: 0.9), count: PoseFrames.landmarkCount)
        var repStart = 1.0, period = 2.5, bottom = 90.0
        for k in 0..<count {
            let t = Double(k) / 30
            if t >= repStart + period + 0.5 {
                repStart += period + 0.5
                period = .random(in: 2...3.5, using: &random)
                bottom = .random(in: 80...100, using: &random)
            }
            let phase = (t - repStart) / period
            let knee = phase >= 0 && phase < 1 ? 175 - (175 - bottom) * (1 - cos(2 * .pi * phase)) / 2 : 175
            let minute = t.truncatingRemainder(dividingBy: 60)
            let visibility: Float = (minute > 20 && minute < 20.3) || (minute > 40 && minute < 41) ? 0.2 : 0.9
            let r = knee * .pi / 180
            for (hip, kneeJoint, ankle, offset) in [(PoseLandmark.leftHip, PoseLandmark.leftKnee, PoseLandmark.leftAnkle, 0.45), (.rightHip, .rightKnee, .rightAnkle, 0.55)] {
                func noisy(_ value: Double) -> Float {
                    // A cheap approximately normal sample: the sum of four uniforms, scaled.
                    var u = 0.0
                    for _ in 0..<4 { u += Double(random.next() >> 11) / Double(1 << 53) }
                    return Float(value + (u - 2) * 0.003 * 1.732)
                }
                landmarks[hip.rawValue] = Landmark(x: noisy(offset), y: noisy(0.3), visibility: visibility)
                landmarks[kneeJoint.rawValue] = Landmark(x: noisy(offset), y: noisy(0.5), visibility: visibility)
                landmarks[ankle.rawValue] = Landmark(x: noisy(offset + 0.2 * sin(r)), y: noisy(0.5 - 0.2 * cos(r)), visibility: visibility)
            }
            do { try frames.append(timestamp: t, landmarks: landmarks) } catch { Bench.fail("generated a bad frame: \(error)") }
        }
        return frames
    }
}
