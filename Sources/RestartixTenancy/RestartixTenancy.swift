// RestartixTenancy: tenant context, principals, tenant-scoped transactions and row-level
// security (see Documentation/RestartixTenancy.md). Built by the tenancy issue; this module has
// no API yet.
