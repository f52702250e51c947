#!/usr/bin/env python3
"""Vectorized numpy reference of the pose pipeline (Documentation/telemetry-metrics.md).

The same definitions as RestartixTelemetry's PoseAnalyzer with the knee-flexion profile
(hip-knee-ankle, both sides together, adaptive thresholds 0.6/0.4 of the observed range with a
20-degree minimum, EMA alpha 0.4 with a 0.5 s gap reset, rest tolerance 2 degrees): planar joint
angles, exponential smoothing, hysteresis repetition counting seen from rest, per-rep metrics.
Every per-frame step is a whole-array numpy operation; the exponential smoothing is a recursive
filter numpy cannot vectorize, so it is scipy.signal.lfilter (C) per tracking segment; per-rep
metrics are ufunc.reduceat over the repetition windows.

Usage: pose_pipeline.py BLOB [RUNS]  (BLOB is a replay blob written by telemetry-benchmark)
Prints one JSON line: frames, best seconds over RUNS, reps, and the metrics to cross-check.
"""
import gzip
import json
import sys
import time

import numpy as np
from scipy.signal import lfilter

LANDMARKS = 33
HIPS, KNEES, ANKLES = (23, 24), (25, 26), (27, 28)
ALPHA, GAP_RESET, ENTER, EXIT, MIN_RANGE, TOLERANCE, MIN_VIS = 0.4, 0.5, 0.6, 0.4, 20.0, 2.0, 0.5
TARGET_RANGE, MIN_DURATION = 60.0, 1.0


def read_blob(path):
    payload = gzip.decompress(open(path, "rb").read())
    assert payload[:4] == b"RXRB", "not a replay blob"
    n = int.from_bytes(payload[8:12], "little")
    t = np.frombuffer(payload, dtype="<f8", count=n, offset=16)
    cols = np.frombuffer(payload, dtype="<f4", count=n * 4 * LANDMARKS, offset=16 + 8 * n).reshape(4 * LANDMARKS, n)
    return t, cols


def side_angle(cols, a, b, c):
    x, y, v = cols[0:LANDMARKS], cols[LANDMARKS:2 * LANDMARKS], cols[3 * LANDMARKS:4 * LANDMARKS]
    ux, uy, vx, vy = x[a] - x[b], y[a] - y[b], x[c] - x[b], y[c] - y[b]
    ang = np.abs(np.arctan2(vy, vx) - np.arctan2(uy, ux))
    ang = np.where(ang > np.float32(np.pi), np.float32(2 * np.pi) - ang, ang) * np.float32(180 / np.pi)
    ok = (v[a] >= MIN_VIS) & (v[b] >= MIN_VIS) & (v[c] >= MIN_VIS) & ((ux != 0) | (uy != 0)) & ((vx != 0) | (vy != 0))
    vis = (v[a] + v[b] + v[c]) / np.float32(3)
    return np.where(ok, ang, np.float32(np.nan)), vis


def range_reduce(ufunc, values, starts, ends):
    """ufunc over values[starts[k]:ends[k]+1] for each k; windows k and k+2 never overlap."""
    out = np.empty(len(starts), dtype=values.dtype)
    padded = np.append(values, values[-1:])
    for parity in (0, 1):
        s, e = starts[parity::2], ends[parity::2]
        if len(s):
            out[parity::2] = ufunc.reduceat(padded, np.stack([s, e + 1], axis=1).ravel())[::2]
    return out


def first_at_least(values, starts, ends, targets, last=False):
    """The first (or last) index in each window whose value is <= target (windows k, k+2 disjoint)."""
    out = np.empty(len(starts), dtype=np.int64)
    idx = np.arange(len(values))
    for parity in (0, 1):
        s, e, g = starts[parity::2], ends[parity::2], targets[parity::2]
        if not len(s):
            continue
        window = np.searchsorted(s, idx, side="right") - 1
        inside = (window >= 0) & (idx <= e[np.maximum(window, 0)])
        hit = inside & (values <= g[np.maximum(window, 0)])
        fill = np.where(hit, idx, -1 if last else len(values))
        red = (np.maximum if last else np.minimum).reduceat(np.append(fill, fill[-1:]), np.stack([s, e + 1], axis=1).ravel())[::2]
        out[parity::2] = red
    return out


def analyze(t, cols):
    n = len(t)
    (la, lv), (ra, rv) = side_angle(cols, HIPS[0], KNEES[0], ANKLES[0]), side_angle(cols, HIPS[1], KNEES[1], ANKLES[1])
    angle = np.where(np.isnan(la), ra, np.where(np.isnan(ra), la, (la + ra) / np.float32(2)))
    vis = (lv + rv) / np.float32(2)
    tracked = ~np.isnan(angle)
    valid = np.flatnonzero(tracked)
    x, tv = angle[valid], t[valid]
    # Segments: a gap longer than GAP_RESET between tracked frames resets smoother and counter.
    seg_start = np.flatnonzero(np.concatenate(([True], np.diff(tv) > GAP_RESET)))
    seg_end = np.append(seg_start[1:], len(x))
    s = np.empty_like(x)
    b_coef, a_coef = np.array([ALPHA], dtype=np.float32), np.array([1, -(1 - ALPHA)], dtype=np.float32)
    for a, b in zip(seg_start, seg_end):
        s[a] = x[a]  # s0 = x0 exactly, then s_t = alpha x_t + (1 - alpha) s_{t-1}, in float32 as the kit
        if b > a + 1:
            s[a + 1:b], _ = lfilter(b_coef, a_coef, x[a + 1:b], zi=np.array([(1 - ALPHA) * x[a]], dtype=np.float32))
    d = -s  # the knee angle closes into the working zone
    lo, hi = np.minimum.accumulate(d), np.maximum.accumulate(d)
    rng = hi - lo
    enter, exit_ = lo + np.float32(ENTER) * rng, lo + np.float32(EXIT) * rng
    seg_id = np.repeat(np.arange(len(seg_start)), seg_end - seg_start)
    seg_low = d.copy()
    for a, b in zip(seg_start, seg_end):
        seg_low[a:b] = np.minimum.accumulate(d[a:b])
    active = rng >= MIN_RANGE
    label = np.zeros(len(d), dtype=np.int8)
    label[active & (d > enter) & (seg_low < exit_)] = 1
    label[active & (d < exit_)] = -1
    reset = label.copy()
    reset[seg_start] = np.where(reset[seg_start] == 0, -2, reset[seg_start])
    last = np.maximum.accumulate(np.where(reset != 0, np.arange(len(d)), -1))
    state = np.where(last >= 0, reset[np.maximum(last, 0)], -2)
    working = state == 1
    prev_working = np.concatenate(([False], working[:-1]))
    first_of_seg = np.zeros(len(d), dtype=bool)
    first_of_seg[seg_start] = True
    exits = np.flatnonzero((label == -1) & prev_working & ~first_of_seg)
    enters = np.flatnonzero(working & ~prev_working)
    if len(exits) == 0:
        return summary(n, t, tracked, vis, np.empty(0), np.empty(0), np.empty(0), np.empty(0), np.empty(0))
    rep_enter = enters[np.searchsorted(enters, exits) - 1]
    # The rest interval before each repetition: from the last exit (or segment start) to its enter.
    all_exit_before = np.searchsorted(exits, rep_enter) - 1
    prev_exit = np.where(all_exit_before >= 0, exits[np.maximum(all_exit_before, 0)], -1)
    before_lo = np.maximum(prev_exit, seg_start[seg_id[rep_enter]])
    before_hi = rep_enter - 1
    # The interval after: from the exit to the next enter in its segment, or the segment's end.
    nxt = np.searchsorted(enters, exits, side="right")
    next_enter = np.where(nxt < len(enters), enters[np.minimum(nxt, len(enters) - 1)], len(d))
    seg_last = seg_end[seg_id[exits]] - 1
    after_hi = np.where(seg_id[np.minimum(next_enter, len(d) - 1)] == seg_id[exits], np.minimum(next_enter - 1, seg_last), seg_last)
    after_lo = exits

    rest_before = range_reduce(np.minimum, d, before_lo, before_hi)
    rest_after = range_reduce(np.minimum, d, after_lo, after_hi)
    arg_before = first_at_least(d, before_lo, before_hi, rest_before)
    arg_after = first_at_least(d, after_lo, after_hi, rest_after)
    start = first_at_least(d, before_lo, before_hi, rest_before + np.float32(TOLERANCE), last=True)
    end = first_at_least(d, after_lo, after_hi, rest_after + np.float32(TOLERANCE))
    lo_w, hi_w = np.minimum(arg_before, start), np.maximum(arg_after, end)
    min_angle = range_reduce(np.minimum, s, lo_w, hi_w)
    max_angle = range_reduce(np.maximum, s, lo_w, hi_w)
    peak_d = range_reduce(np.maximum, d, start, end)
    peak = first_at_least(-d, start, end, -peak_d)
    vel = np.concatenate(([np.float32(0)], np.abs(np.diff(s)) / np.diff(tv).astype(np.float32)))
    vel_lo = np.minimum(lo_w + 1, hi_w)
    peak_vel = np.where(hi_w > lo_w, range_reduce(np.maximum, vel, vel_lo, hi_w), np.float32(0))
    fs, fe = valid[start], valid[end]
    cum = np.concatenate(([0.0], np.cumsum(vis, dtype=np.float64)))
    mean_vis = (cum[fe + 1] - cum[fs]) / (fe - fs + 1)
    duration = tv[end] - tv[start]
    eccentric, concentric = tv[peak] - tv[start], tv[end] - tv[peak]
    return summary(n, t, tracked, vis, max_angle - min_angle, duration, eccentric, concentric, peak_vel, mean_vis)


def summary(n, t, tracked, vis, rom, duration, eccentric, concentric, peak_vel, mean_vis=np.empty(0)):
    reps = len(rom)
    out = {"reps": reps, "tracked_ratio": float(tracked.mean()) if n else None, "mean_visibility": float(vis.mean()) if n else None}
    if reps:
        out.update({
            "mean_rom": float(rom.mean()), "mean_duration": float(duration.mean()),
            "tempo_cv": float(duration.std() / duration.mean()) if reps >= 2 else None,
            "active_time": float(duration.sum()), "mean_eccentric": float(eccentric.mean()), "mean_concentric": float(concentric.mean()),
            "max_peak_velocity": float(peak_vel.max()), "partial": int((rom < TARGET_RANGE).sum()), "too_fast": int((duration < MIN_DURATION).sum()),
        })
    return out


def main():
    t, cols = read_blob(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    best, result = float("inf"), None
    for _ in range(runs):
        began = time.perf_counter()
        result = analyze(t, cols)
        best = min(best, time.perf_counter() - began)
    print(json.dumps({"frames": len(t), "seconds": best, **result}))


if __name__ == "__main__":
    main()
