// RestartixTelemetry: pose and media metric kernels and the replay-blob codec (see
// Documentation/RestartixTelemetry.md). Pure compute; it depends on nothing of ours. Built so
// far: the frame buffer, joint angles and smoothing.
