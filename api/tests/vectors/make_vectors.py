#!/usr/bin/env python3
"""Writes python_vectors.json: Fernet tokens made by Python's `cryptography`, for
api/tests/fernet_interop.rs to prove that Keyward decrypts what other Fernet
implementations produce.

    pip install cryptography
    python3 api/tests/vectors/make_vectors.py > api/tests/vectors/python_vectors.json

Every run makes new keys and tokens (Fernet uses a random IV); any run's output is a valid
set of vectors. The keys are throwaway test keys, never used for anything else.

Each vector: `keys` in CONFIG_ENCRYPTION_KEY order (the first encrypts, all decrypt), the
`token`, which key made it (`key_index`), and the plaintext as hex (exact bytes) and, when
it is UTF-8, as text. `refused` lists tokens that must NOT decrypt with `keys`.
"""

import base64
import json
import sys

import cryptography
from cryptography.fernet import Fernet, MultiFernet

PLAINTEXTS = [
    b"hello",
    b"",
    "h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \U0001f511".encode(),
    b"sk-test-not-a-real-key-0123456789",
    b'{"quotes": "\\"", "newline": "\\n"}\n',
    b"x" * 1000,
    bytes(range(256)),  # not UTF-8: the token carries bytes, not text
]

# A timestamp far in the past: Keyward checks no TTL, so old tokens stay valid.
LONG_AGO = 978307200  # 2001-01-01T00:00:00Z


def vector(desc, keys, key_index, plaintext, token):
    v = {
        "desc": desc,
        "keys": keys,
        "key_index": key_index,
        "plaintext_hex": plaintext.hex(),
        "token": token.decode(),
    }
    try:
        v["plaintext"] = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        pass
    return v


def main():
    keys = [Fernet.generate_key().decode() for _ in range(3)]
    single = [Fernet(k) for k in keys]
    vectors = []

    for i, key in enumerate(keys):
        for p in PLAINTEXTS:
            token = single[i].encrypt(p)
            vectors.append(vector(f"Fernet(key {i}).encrypt", [key], 0, p, token))

    for p in PLAINTEXTS[:3]:
        token = single[0].encrypt_at_time(p, LONG_AGO)
        vectors.append(vector("encrypt_at_time(2001-01-01)", [keys[0]], 0, p, token))

    # MultiFernet: the first key encrypts, every key decrypts; rotate() re-encrypts
    # under the first. Keyward's keyring has the same order.
    ring = MultiFernet(single)
    for p in PLAINTEXTS:
        vectors.append(vector("MultiFernet(k0, k1, k2).encrypt", keys, 0, p, ring.encrypt(p)))
    for i in (1, 2):
        p = PLAINTEXTS[2]
        old = single[i].encrypt(p)
        vectors.append(vector(f"an older key's token (key {i}) in a 3-key ring", keys, i, p, old))
        vectors.append(vector(f"MultiFernet.rotate of key {i}'s token", keys, 0, p, ring.rotate(old)))

    refused = [
        {
            "desc": "a token made with a key that is not in the ring",
            "keys": [keys[1], keys[2]],
            "token": single[0].encrypt(b"not for you").decode(),
        },
        {
            "desc": "a token whose last byte was changed",
            "keys": [keys[0]],
            "token": flip_last(single[0].encrypt(b"tampered")).decode(),
        },
    ]

    out = {
        "generator": f"Python {sys.version.split()[0]}, cryptography {cryptography.__version__}",
        "script": "api/tests/vectors/make_vectors.py",
        "vectors": vectors,
        "refused": refused,
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def flip_last(token):
    """Flips one bit of the token's last byte (inside the HMAC) and re-encodes it."""
    raw = bytearray(base64.urlsafe_b64decode(token))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw))

if __name__ == "__main__":
    main()
