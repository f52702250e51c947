// RestartixCore (the error protocol every module's errors share) comes with RestartixKit, so
// `import RestartixKit` is enough to name ``RestartixError``.
@_exported public import RestartixCore
