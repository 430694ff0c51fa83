"""Throughput of SEV-SNP report verification with a cached certificate chain, on one core.

Usage: ``python bench/bench_verify_snp.py [--seconds 2] [--min 1500]``

Verifies a real report (shared/vectors ``snp/routex-milan-v3``: v3 report + VCEK/ASK/ARK PEM)
over and over through :class:`cocopart_sev_snp.verify.SnpEvidenceVerifier`; the chain is
analysed once (RSA-4096 PSS checks) and cached, so each report costs a parse, one ECDSA
P-384 verification and cheap comparisons. Prints reports/s (best of three rounds) and, for
scale, the raw P-384 verifications/s of this machine. With ``--min`` it exits 1 below that.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from cocopart_sev_snp.verify import SnpEvidenceVerifier
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cocopart.attest.evidence import Evidence
from cocopart.attest.verifier import TrustStore

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))
NOW = datetime(2025, 12, 8, tzinfo=UTC)  # inside the vector chain's validity


def rate(fn: object, seconds: float) -> float:
    """Calls per second of ``fn`` (best of three rounds of about ``seconds`` / 3)."""
    assert callable(fn)
    best = 0.0
    for _ in range(3):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--min", type=float, default=0.0, help="fail below this many reports/s")
    args = ap.parse_args()
    snp = VECTORS / "snp"
    if not (snp / "routex-milan-v3.report.bin").is_file():
        print(f"vectors not found at {VECTORS} (set COCOPART_VECTORS)", file=sys.stderr)
        return 2
    evidence = Evidence(
        vendor="sev-snp",
        format="snp-report",
        raw=(snp / "routex-milan-v3.report.bin").read_bytes(),
        certificates=[(snp / "routex-milan-v3.vcek-chain.pem").read_bytes()],
    )
    verifier, trust = SnpEvidenceVerifier(), TrustStore()
    result = verifier.verify(evidence, trust, NOW)  # warms the chain cache
    failed = [c.name for c in result.checks if not c.ok]
    if failed:
        print(f"vector does not verify: {failed}", file=sys.stderr)
        return 2

    key = ec.generate_private_key(ec.SECP384R1())
    msg = evidence.raw[:0x2A0]
    sig = key.sign(msg, ec.ECDSA(hashes.SHA384()))
    pub = key.public_key()
    raw_rate = rate(lambda: pub.verify(sig, msg, ec.ECDSA(hashes.SHA384())), args.seconds)
    reports = rate(lambda: verifier.verify(evidence, trust, NOW), args.seconds)
    print(
        f"snp verify (cached chain): {reports:,.0f} reports/s on one core "
        f"({1e6 / reports:.0f} us each); raw ECDSA P-384 verify: {raw_rate:,.0f}/s "
        f"({1e6 / raw_rate:.0f} us)"
    )
    return 1 if reports < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
