// RestartixTelemetry: pose and media metric kernels and the replay-blob codec (see
// Documentation/RestartixTelemetry.md and Documentation/telemetry-metrics.md). Pure compute;
// it depends on nothing of ours.
