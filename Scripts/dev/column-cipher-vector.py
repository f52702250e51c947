#!/usr/bin/env python3
"""An independent implementation of column format v1 and the blind index (Python's
`cryptography`, i.e. OpenSSL), printing the known-answer vectors pinned in
Tests/RestartixCryptoTests/ColumnCipherTests.swift. The Swift tests check the kit against
these bytes; rerun this when changing the format only as a new format version."""
import hashlib
import hmac
import struct
import uuid

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY = bytes(range(32))
BLIND = bytes(range(32, 64))
KEY_ID = 7
NONCE = bytes(range(12))
TABLE, COLUMN = "patients", "email"
ORG = uuid.UUID("0190a4c2-7b3d-7e1f-8a2b-c3d4e5f60718").bytes
ROW = uuid.UUID("0190a4c2-7b3d-7e1f-8a2b-c3d4e5f60719").bytes
PLAINTEXT = b"ana@example.com"


def field(data):
    return struct.pack(">I", len(data)) + data


info = struct.pack(">I", KEY_ID) + TABLE.encode() + b"\0" + COLUMN.encode()
subkey = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"restartix/column/v1", info=info).derive(KEY)
header = bytes([1, 1]) + struct.pack(">I", KEY_ID)
aad = header + field(TABLE.encode()) + field(COLUMN.encode()) + field(ORG) + field(ROW)
print("sealed:", (header + NONCE + AESGCM(subkey).encrypt(NONCE, PLAINTEXT, aad)).hex())
message = b"restartix/blind-index/v1" + field(ORG) + field(TABLE.encode()) + field(COLUMN.encode()) + field(PLAINTEXT)
print("blind index:", hmac.new(BLIND, message, hashlib.sha256).hexdigest())
