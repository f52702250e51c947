// RestartixTelemetry: pose and media metric kernels and the replay-blob codec (see
// Documentation/RestartixTelemetry.md and Documentation/telemetry-metrics.md). Pure compute;
// of ours it depends only on RestartixCore (the error shape), which it re-exports so that
// `import RestartixTelemetry` is enough to read a TelemetryError's code and detail.
@_exported public import RestartixCore
