// RestartixTelemetry: pose and media metric kernels and the replay-blob codec
// (see Documentation/RestartixTelemetry.md). Built by the telemetry issue; this module has no API yet.
