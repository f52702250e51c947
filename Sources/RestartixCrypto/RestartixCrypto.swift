// RestartixCrypto: keyring, column cipher, signed tokens, webhook signatures
// (see Documentation/RestartixCrypto.md). Built by the crypto issue; this module has no API yet.
