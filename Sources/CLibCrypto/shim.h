// OpenSSL's libcrypto (Debian: libssl-dev): the EVP AES-256-GCM interface and the DRBG, for the
// column cipher's hot path. Key derivation, HMAC and everything else use swift-crypto.
#include <openssl/evp.h>
#include <openssl/rand.h>
