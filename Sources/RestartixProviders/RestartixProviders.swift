// RestartixProviders: Cat A provider registry and resolver (see Documentation/RestartixProviders.md).
// Built by the providers issue; this module has no API yet.
