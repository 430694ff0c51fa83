"""AMD's public SEV-SNP certificate authorities (built in) and a certificate cache directory
in the layout of AMD's Key Distribution Service (KDS).

Built in: the ARK, ASK and ASVK of Milan, Genoa and Turin, as AMD's KDS serves them at
``https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/cert_chain`` (ASK + ARK) and
``https://kdsintf.amd.com/vlek/v1/{Milan,Genoa,Turin}/cert_chain`` (ASVK + ARK); the same
certificates are in go-sev-guest ``verify/trust/ask_ark_*.pem`` and virtee/sev
``tests/certs_data/cert_chain_*`` (shared/vectors README, per-file list). They are package
data (``amd_kds/<product>-{ark,ask,asvk}.pem``), each pinned here by the SHA-256 of its DER
encoding, so a report plus its VCEK (or VLEK) alone verifies offline. A file that does not
match its pin is not used (and :func:`builtin_problems` names it).

Trust does not come from here: the ARK is still accepted only through the pinned ARK key
(:data:`cocopart_sev_snp.certs.AMD_ARK_SPKI_SHA256`) or the caller's trust store, and every
link is still signature-checked. Built-in certificates only fill the roles the evidence
leaves empty.

The cache directory (``TrustStore.certificate_cache``, CLI ``--cert-cache DIR``) mirrors the
KDS URL paths::

    DIR/vcek/v1/<Product>/cert_chain          ASK + ARK (PEM), as the KDS serves it
    DIR/vlek/v1/<Product>/cert_chain          ASVK + ARK (PEM)
    DIR/vcek/v1/<Product>/<hwid>              the chip's VCEK (DER or PEM); also accepted:
    DIR/vcek/v1/<Product>/<hwid>?blSPL=...    the name wget gives the KDS URL,
    DIR/vcek/v1/<Product>/<hwid>.der|.pem     a suffix, or
    DIR/vcek/v1/<Product>/<hwid>/*            a directory with one VCEK per TCB

``<hwid>`` is the report's CHIP_ID in hex (64 bytes on Milan/Genoa; the first 8 bytes on
Turin), either case. Among several VCEKs of one chip the one whose SPL extensions equal the
report's REPORTED_TCB is used (AMD issues one VCEK per chip and TCB: KDS specification,
AMD pub. 57230, "VCEK certificate"; go-sev-guest ``kds.VCEKCertURL``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from cocopart_sev_snp import certs
from cocopart_sev_snp.report import PRODUCTS, Product, TcbVersion

KDS_URL = "https://kdsintf.amd.com"
_DATA = Path(__file__).with_name("amd_kds")

#: SHA-256 of the DER encoding of each built-in certificate: file name -> (product, role, pin).
BUILTIN_PINS: dict[str, tuple[Product, str, str]] = {
    "milan-ark.pem": (
        "Milan",
        "ARK",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    "milan-ask.pem": (
        "Milan",
        "ASK",
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    ),
    "milan-asvk.pem": (
        "Milan",
        "ASVK",
        "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    ),
    "genoa-ark.pem": (
        "Genoa",
        "ARK",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    "genoa-ask.pem": (
        "Genoa",
        "ASK",
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    ),
    "genoa-asvk.pem": (
        "Genoa",
        "ASVK",
        "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    ),
    "turin-ark.pem": (
        "Turin",
        "ARK",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
    "turin-ask.pem": (
        "Turin",
        "ASK",
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    ),
    "turin-asvk.pem": (
        "Turin",
        "ASVK",
        "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
    ),
}
#: The same pins keyed by fingerprint, for "is this DER one of AMD's built-in certificates".
PINNED_DER_SHA256: dict[str, tuple[Product, str]] = {
    pin: (product, role) for product, role, pin in BUILTIN_PINS.values()
}


@lru_cache(maxsize=1)
def _load_builtin() -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    ders: list[bytes] = []
    problems: list[str] = []
    for name, (_product, _role, pin) in BUILTIN_PINS.items():
        try:
            found = certs.split_certificates((_DATA / name).read_bytes())
        except (OSError, certs.CertificateError) as exc:
            problems.append(f"built-in {name}: {exc}")
            continue
        if len(found) != 1 or hashlib.sha256(found[0]).hexdigest() != pin:
            problems.append(f"built-in {name} does not match its pinned SHA-256 {pin[:16]}...")
            continue
        ders.append(found[0])
    return tuple(ders), tuple(problems)


def builtin_ders() -> tuple[bytes, ...]:
    """The DER of every built-in AMD certificate whose package file matches its pin."""
    return _load_builtin()[0]


def builtin_problems() -> tuple[str, ...]:
    """Package files that are missing or do not match their pins (empty when intact)."""
    return _load_builtin()[1]


def hwid_hex(chip_id: bytes, product: Product | None) -> str:
    """The hwID the KDS names a chip by: CHIP_ID in hex, its first 8 bytes on Turin."""
    return (chip_id[: certs.HWID_SIZE_TURIN] if product == "Turin" else chip_id).hex()


def vcek_url(chip_id: bytes, tcb: TcbVersion, product: Product) -> str:
    """The KDS URL of the VCEK for this chip and TCB (KDS spec: SPLs as decimal query
    parameters; go-sev-guest ``kds.VCEKCertURL``, which zero-pads them to two digits)."""
    query = (
        f"blSPL={tcb.bootloader:02d}&teeSPL={tcb.tee:02d}&snpSPL={tcb.snp:02d}"
        f"&ucodeSPL={tcb.microcode:02d}"
    )
    if tcb.fmc is not None:
        query += f"&fmcSPL={tcb.fmc:02d}"
    return f"{KDS_URL}/vcek/v1/{product}/{hwid_hex(chip_id, product)}?{query}"


def _files(entry: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.iterdir() if p.is_file())
    return [entry] if entry.is_file() else []


def _read(paths: list[Path]) -> list[bytes]:
    out = []
    for path in paths:
        try:
            out.append(path.read_bytes())
        except OSError:  # an unreadable cache file is as good as an absent one
            continue
    return out


def cached_chains(cache: Path) -> list[bytes]:
    """Every ``{vcek,vlek}/v1/<product>/cert_chain`` file in the cache directory."""
    return _read(
        [
            p
            for kind in ("vcek", "vlek")
            for p in sorted((cache / kind / "v1").glob("*/cert_chain"))
            if p.is_file()
        ]
    )


def cached_vceks(cache: Path, chip_id: bytes, tcb: dict[Product | None, TcbVersion]) -> list[bytes]:
    """VCEKs in the cache for this chip, best first: those whose SPLs equal the report's
    REPORTED_TCB (decoded per product in ``tcb``), then the others."""
    found: list[bytes] = []
    for product in PRODUCTS:
        folder = cache / "vcek" / "v1" / product
        if not folder.is_dir():
            continue
        want = hwid_hex(chip_id, product)
        entries = [
            p
            for p in sorted(folder.iterdir())
            if p.name.lower().startswith(want)
            and p.name[len(want) : len(want) + 1] in ("", "?", ".")
        ]
        found += _read([f for e in entries for f in _files(e)])
    return sorted(found, key=lambda blob: not _matches(blob, tcb))


def _matches(blob: bytes, tcb: dict[Product | None, TcbVersion]) -> bool:
    try:
        ders = certs.split_certificates(blob)
        ext = certs.parse_leaf_extensions(certs.load_certificate(ders[0]))
    except (certs.CertificateError, ValueError):
        return False
    product = certs.product_from_name(ext.product_name or "")
    decoded = tcb.get(product) or tcb.get(None)
    return decoded is not None and certs.tcb_problem(decoded, ext.spl) is None
