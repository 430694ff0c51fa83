"""Verification speed against its references, measured side by side in one run (issue 16 point 7).

Run: ``.venv/bin/python bench/bench_verify.py [--rounds 25] [--processes 9]``

Every pair is measured interleaved (A, B, A, B, ...) in CPU time (this process's, or the
children's for whole processes), and each side keeps its best round, so load from other
processes on the machine hits both alike; the ratios are what the goals are about. Inputs are real vectors from the shared folder ($COCOPART_VECTORS, else
../shared/vectors next to the repository).

1. Cold first TDX verification vs dcap-qvl's full verify: ``dcap_qvl.verify(quote,
   collateral, now)`` against ``TdxEvidenceVerifier.verify`` with every cache cleared
   (``cocopart_tdx.verify.clear_caches``) — chain, CRLs, collateral, TCB evaluation, QE
   report, quote. Both get their collateral object ready-made; a second line includes turning
   dcap-qvl's collateral JSON into it on both sides. Goal: ratio <= 1.
2. Cached TDX verification vs one bare ECDSA P-256 verify (the quote's own signature with a
   ready key object): the plug-in alone and the whole ``Verifier`` with the default policy.
   Goal: <= 1.3x. A third line verifies distinct simulated quotes of one simulated platform
   (different REPORTDATA each), showing nothing is cached per quote.
3. Cached SEV-SNP verification vs one bare ECDSA P-384 verify (the report's own signature):
   the plug-in and the whole ``Verifier``. Goal: >= 90% of the bare verify's rate.
4. A whole ``cocopart verify`` process on a real SNP report (VCEK given, AMD chain built in)
   vs a bare Typer app's ``--help``, and the verify command registered alone in a Typer app
   (what lazy command loading gives; issue 17). Goal: <= 1.5x.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VECTORS = Path(os.environ.get("COCOPART_VECTORS", REPO.parent / "shared" / "vectors"))
TDX_QUOTE = "tdx/quotes/teekit-gcp-v4.quote.bin"
TDX_COLLATERAL = "tdx/dcap-qvl-collateral/2025-09-00806f050000.json"
TDX_NOW = datetime(2025, 9, 30, tzinfo=UTC)
SNP_REPORT = "snp/routex-milan-v3.report.bin"
SNP_CHAIN = "snp/routex-milan-v3.vcek-chain.pem"
SNP_NOW = datetime(2025, 12, 8, tzinfo=UTC)

BARE_TYPER = '''
import typer
app = typer.Typer()
@app.command()
def main(evidence: str, certs: str = "", now: str = "") -> None:
    """A bare Typer app of the same shape."""
    print(evidence)
app()
'''
VERIFY_ONLY = '''
import typer
from cocopart_cli.commands import verify
app = typer.Typer()
verify.register(app)
@app.callback()
def root() -> None:
    """Only the verify command."""
app()
'''


def interleaved(fns: dict[str, Callable[[], None]], rounds: int, inner: int) -> dict[str, float]:
    """Best CPU seconds per call of each function, rounds interleaved. CPU time of this
    process (not wall time): other load on the machine then costs waiting, not the figure."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            for _ in range(inner):
                fn()
            best[name] = min(best[name], (time.process_time() - t0) / inner)
    return best


def child_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def tdx(rounds: int) -> None:
    import dcap_qvl
    from cocopart_tdx.collateral import collateral_from_dcap_qvl_json
    from cocopart_tdx.quote import QuoteLayout
    from cocopart_tdx.verify import TdxEvidenceVerifier, clear_caches
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from cocopart.attest.evidence import Evidence
    from cocopart.attest.verifier import TrustStore, Verifier

    quote = (VECTORS / TDX_QUOTE).read_bytes()
    text = (VECTORS / TDX_COLLATERAL).read_text()
    now_s = int(TDX_NOW.timestamp())
    theirs = dcap_qvl.QuoteCollateralV3.from_json(text)
    ours = collateral_from_dcap_qvl_json(text)
    plugin, trust = TdxEvidenceVerifier(), TrustStore()
    evidence = Evidence(vendor="tdx", format="tdx-quote", raw=quote, collateral=ours)
    first = plugin.verify(evidence, trust, TDX_NOW)
    assert all(c.ok for c in first.checks), [c for c in first.checks if not c.ok]
    assert dcap_qvl.verify(quote, theirs, now_s).status == first.claims.tcb_status  # type: ignore[union-attr]

    def cold() -> None:
        clear_caches()
        plugin.verify(evidence, trust, TDX_NOW)

    def cold_json() -> None:
        clear_caches()
        ev = Evidence(
            vendor="tdx",
            format="tdx-quote",
            raw=quote,
            collateral=collateral_from_dcap_qvl_json(text),
        )
        plugin.verify(ev, trust, TDX_NOW)

    t = interleaved(
        {"dcap-qvl verify": lambda: dcap_qvl.verify(quote, theirs, now_s), "cocopart cold": cold},
        rounds * 4,
        20,
    )
    j = interleaved(
        {
            "dcap-qvl": lambda: dcap_qvl.verify(
                quote, dcap_qvl.QuoteCollateralV3.from_json(text), now_s
            ),
            "cocopart": cold_json,
        },
        rounds * 2,
        10,
    )
    ratio, ratio_j = t["cocopart cold"] / t["dcap-qvl verify"], j["cocopart"] / j["dcap-qvl"]
    print("1. cold first TDX verification (teekit-gcp-v4, 2025-09 collateral)")
    print(
        f"   dcap-qvl verify {t['dcap-qvl verify'] * 1e6:7.0f} us | cocopart cold "
        f"{t['cocopart cold'] * 1e6:7.0f} us | ratio {ratio:.2f} (goal <= 1: {verdict(ratio <= 1)})"
    )
    print(
        f"   with collateral JSON parsing: dcap-qvl {j['dcap-qvl'] * 1e6:.0f} us, cocopart "
        f"{j['cocopart'] * 1e6:.0f} us, ratio {ratio_j:.2f}"
    )

    layout = QuoteLayout.parse(quote)
    sig = quote[layout.sig_start : layout.sig_start + 64]
    ak = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), b"\x04" + quote[layout.sig_start + 64 : layout.sig_start + 128]
    )
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    signed, algorithm = quote[: layout.signed_length], ec.ECDSA(hashes.SHA256())
    copies = [
        Evidence(vendor="tdx", format="tdx-quote", raw=bytes(bytearray(quote)), collateral=ours)
        for _ in range(64)
    ]
    verifier = Verifier(trust=trust)
    assert verifier.verify(copies[0], TDX_NOW).ok
    it = iter(range(1 << 62))
    t = interleaved(
        {
            "bare": lambda: ak.verify(der, signed, algorithm),
            "plug-in": lambda: plugin.verify(copies[next(it) % 64], trust, TDX_NOW),
            "Verifier": lambda: verifier.verify(copies[next(it) % 64], TDX_NOW),
        },
        rounds * 2,
        150,
    )
    print("2. cached TDX verification (same platform and collateral, a fresh copy of the quote)")
    for name in ("plug-in", "Verifier"):
        r = t[name] / t["bare"]
        print(
            f"   bare P-256 verify {t['bare'] * 1e6:6.1f} us | {name:8s} {t[name] * 1e6:6.1f} us "
            f"| ratio {r:.2f} (goal <= 1.3: {verdict(r <= 1.3)})"
        )
    _simulated_tdx(rounds, t["bare"])


def _simulated_tdx(rounds: int, bare: float) -> None:
    from cocopart_tdx.simroots import SimulatedIntelRoots

    from cocopart.attest.evidence import Evidence
    from cocopart.attest.verifier import TrustStore, Verifier

    now = datetime(2026, 3, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as cache:
        roots = SimulatedIntelRoots.load("bench", cache_dir=cache)
        collateral = roots.collateral(now)
        quotes = [
            Evidence(
                vendor="tdx",
                format="tdx-quote",
                collateral=collateral,
                raw=roots.quote_from_tdreport(
                    roots.build_tdreport(report_data=i.to_bytes(64, "little"))
                ),
            )
            for i in range(256)
        ]
    verifier = Verifier(trust=TrustStore().with_root("tdx", roots.root_pem))
    assert all(verifier.verify(q, now).ok for q in quotes)
    it = iter(range(1 << 62))
    t = interleaved(
        {"Verifier": lambda: verifier.verify(quotes[next(it) % 256], now)}, rounds * 2, 150
    )
    print(
        f"   256 distinct simulated quotes, one platform: Verifier {t['Verifier'] * 1e6:6.1f} us "
        f"| ratio {t['Verifier'] / bare:.2f}"
    )


def snp(rounds: int) -> None:
    from cocopart_sev_snp import certs
    from cocopart_sev_snp.report import SnpReport
    from cocopart_sev_snp.verify import SnpEvidenceVerifier
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from cocopart.attest.evidence import Evidence
    from cocopart.attest.verifier import TrustStore, Verifier

    raw = (VECTORS / SNP_REPORT).read_bytes()
    vcek = certs.split_certificates((VECTORS / SNP_CHAIN).read_bytes())[0]
    plugin, trust = SnpEvidenceVerifier(), TrustStore()
    copies = [
        Evidence(
            vendor="sev-snp",
            format="snp-report",
            raw=bytes(bytearray(raw)),
            certificates=[bytes(bytearray(vcek))],
        )
        for _ in range(64)
    ]
    verifier = Verifier(trust=trust)
    assert verifier.verify(copies[0], SNP_NOW).ok
    report = SnpReport.parse(raw)
    key = certs.load_certificate(vcek).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(report.signature_r, report.signature_s)
    algorithm = ec.ECDSA(hashes.SHA384())
    it = iter(range(1 << 62))
    t = interleaved(
        {
            "bare": lambda: key.verify(der, raw[:0x2A0], algorithm),
            "plug-in": lambda: plugin.verify(copies[next(it) % 64], trust, SNP_NOW),
            "Verifier": lambda: verifier.verify(copies[next(it) % 64], SNP_NOW),
        },
        rounds * 2,
        20,
    )
    print("3. cached SEV-SNP verification (routex-milan-v3 + its VCEK, AMD chain built in)")
    for name in ("plug-in", "Verifier"):
        share = t["bare"] / t[name]
        print(
            f"   bare P-384 verify {1 / t['bare']:6.0f}/s | {name:8s} {1 / t[name]:6.0f}/s | "
            f"{share:.0%} of the bare rate (goal >= 90%: {verdict(share >= 0.9)})"
        )


def processes(runs: int) -> None:
    python = sys.executable
    cocopart = str(Path(python).with_name("cocopart"))
    report = str(VECTORS / SNP_REPORT)
    chain = str(VECTORS / SNP_CHAIN)
    args = ["verify", report, "--certs", chain, "--now", "2025-12-08T00:00:00Z"]
    commands = {
        "bare Typer --help": [python, "-c", BARE_TYPER, "--help"],
        "cocopart verify": [cocopart, *args],
        "verify command alone": [python, "-c", VERIFY_ONLY, *args],
    }
    for name, cmd in commands.items():
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert res.returncode == 0, (name, res.stdout[-500:], res.stderr[-500:])
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(runs):
        for name, cmd in commands.items():
            t0 = child_cpu()
            subprocess.run(cmd, capture_output=True, check=True)
            best[name] = min(best[name], child_cpu() - t0)
    bare = best["bare Typer --help"]
    print(f"4. whole process, CPU time (best of {runs}): bare Typer --help {bare * 1e3:.0f} ms")
    for name in ("cocopart verify", "verify command alone"):
        r = best[name] / bare
        print(
            f"   {name:21s} {best[name] * 1e3:5.0f} ms | ratio {r:.2f} "
            f"(goal <= 1.5: {verdict(r <= 1.5)})"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rounds",
        type=int,
        default=25,
        help="rounds per measurement (short rounds: the best one escapes the load)",
    )
    ap.add_argument("--processes", type=int, default=9, help="runs of each process")
    ap.add_argument("--only", choices=("tdx", "snp", "process"), default=None)
    args = ap.parse_args()
    if not (VECTORS / TDX_QUOTE).is_file():
        print(f"vectors not found at {VECTORS} (set COCOPART_VECTORS)", file=sys.stderr)
        return 2
    if args.only in (None, "tdx"):
        tdx(args.rounds)
    if args.only in (None, "snp"):
        snp(args.rounds)
    if args.only in (None, "process"):
        processes(args.processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
