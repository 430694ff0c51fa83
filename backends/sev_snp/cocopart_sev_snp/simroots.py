"""Simulated AMD roots: an ARK -> ASK -> VCEK chain shaped like AMD's, derived from a seed.

For tests, demos and the SNP machine model, which must produce reports that verify without
AMD's keys. The chain has AMD's shape (sev-snp.md §6.4): ARK (RSA-4096, self-signed, CN
"ARK-<product>") -> ASK (RSA-4096, CN "SEV-<product>") -> VCEK (P-384, CN "SEV-VCEK"),
every link RSASSA-PSS SHA-384 salt 48, and the VCEK carries AMD's extensions (structVersion,
productName, the SPLs, hwID = chip_id) as the real VCEK vectors do. The subject's O names
the simulation, so nobody mistakes these certificates for AMD's; a verifier accepts them
only when their ARK is listed in ``TrustStore.pinned_roots["sev-snp"]``.

Keys are derived deterministically from the seed (same seed, same keys on every machine):
the P-384 scalar from an HMAC-SHA-512 stream, the RSA-4096 primes by a Miller-Rabin search
over candidates drawn from that stream. RSA generation takes seconds in pure Python, so the
PEMs are cached on disk: ``$COCOPART_CACHE/simroots`` or ``~/.cache/cocopart/simroots``,
one JSON file per seed and product; later loads read the file. PSS certificate signatures
are salted, so certificate bytes differ between cache files of the same seed — the keys,
which is what pinning compares, do not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cocopart.spi import ConfigError, Evidence, TrustStore
from cocopart_sev_snp import certs
from cocopart_sev_snp.report import (
    PRODUCTS,
    SIGNED_LENGTH,
    Product,
    SnpReport,
    TcbVersion,
)

CACHE_FORMAT = 1
RSA_BITS = 4096
RSA_EXPONENT = 65537
#: Miller-Rabin rounds per 2048-bit prime (FIPS 186-5 B.3 asks for 4 at this size).
MR_ROUNDS = 5
SIM_ORG = "cocopart simulated AMD roots (not AMD)"
NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2099, 12, 31, tzinfo=UTC)

#: CPUID family/model/stepping per product, as in the real vectors (README table).
CPUID: dict[Product, tuple[int, int, int]] = {
    "Milan": (0x19, 0x01, 0x01),
    "Genoa": (0x19, 0x11, 0x01),
    "Turin": (0x1A, 0x02, 0x01),
}
#: Default simulated TCB per product (values of the routex Milan/Genoa/Turin vectors; the
#: Turin FMC is set to 1 so that its byte is exercised).
DEFAULT_TCB: dict[Product, dict[str, int]] = {
    "Milan": {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219},
    "Genoa": {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84},
    "Turin": {"fmc": 1, "bootloader": 1, "tee": 0, "snp": 2, "microcode": 71},
}
#: productName per product, spelled as in the real VCEKs (Milan "Milan-B0").
PRODUCT_NAME: dict[Product, str] = {"Milan": "Milan-B0", "Genoa": "Genoa", "Turin": "Turin"}
#: Firmware version (major, minor, build) written into simulated reports.
FIRMWARE = (1, 55, 40)
#: P-384 group order (SEC 2 / FIPS 186-4 D.1.2.4).
P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973",
    16,
)


# --- deterministic key material -----------------------------------------------------------


class _Stream:
    """A deterministic byte stream: HMAC-SHA-512(seed key, label || counter) blocks."""

    def __init__(self, seed: str, label: str) -> None:
        self._key = hashlib.sha512(b"cocopart-simroots\0" + seed.encode()).digest()
        self._label = label.encode()
        self._counter = 0

    def take(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            self._counter += 1
            out += hmac.new(
                self._key, self._label + self._counter.to_bytes(8, "big"), hashlib.sha512
            ).digest()
        return bytes(out[:n])

    def integer(self, bits: int) -> int:
        return int.from_bytes(self.take((bits + 7) // 8), "big") >> (-bits % 8)


def _small_primes(limit: int) -> list[int]:
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return [i for i in range(3, limit) if sieve[i]]


_SMALL_PRIMES = _small_primes(1 << 16)


def _probable_prime(n: int, stream: _Stream, rounds: int = MR_ROUNDS) -> bool:
    """Miller-Rabin with bases drawn from ``stream``."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        a = 2 + stream.integer(n.bit_length()) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(stream: _Stream, bits: int, window: int = 4096) -> int:
    """A ``bits``-bit prime p (top two bits set, gcd(e, p-1) = 1): sieve a window of odd
    numbers from a stream-drawn start with the primes below 2^16, then Miller-Rabin."""
    while True:
        start = stream.integer(bits) | (3 << (bits - 2)) | 1
        composite = bytearray(window)  # index i stands for start + 2i
        for p in _SMALL_PRIMES:
            first = (-start * ((p + 1) // 2)) % p  # smallest i with p | start + 2i
            composite[first::p] = b"\1" * len(range(first, window, p))
        for i in range(window):
            if composite[i]:
                continue
            candidate = start + 2 * i
            if (candidate - 1) % RSA_EXPONENT and _probable_prime(candidate, stream):
                return candidate


def derive_rsa_key(seed: str, label: str, bits: int = RSA_BITS) -> rsa.RSAPrivateKey:
    """A deterministic RSA key (e = 65537) for ``seed`` and ``label``."""
    stream = _Stream(seed, "rsa/" + label)
    while True:
        p, q = _prime(stream, bits // 2), _prime(stream, bits // 2)
        if p != q and (p * q).bit_length() == bits:
            break
    p, q = max(p, q), min(p, q)
    lam = (p - 1) * (q - 1) // _gcd(p - 1, q - 1)
    d = pow(RSA_EXPONENT, -1, lam)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(RSA_EXPONENT, p * q),
    )
    return numbers.private_key()


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def derive_p384_key(seed: str, label: str) -> ec.EllipticCurvePrivateKey:
    """A deterministic P-384 key: scalar = stream mod (order - 1) + 1."""
    scalar = int.from_bytes(_Stream(seed, "p384/" + label).take(64), "big") % (P384_ORDER - 1)
    return ec.derive_private_key(scalar + 1, ec.SECP384R1())


def derive_chip_id(seed: str, product: Product) -> bytes:
    """64-byte chip_id; Turin chips use 8 bytes and zero the rest (sev-snp.md §6.3)."""
    chip = _Stream(seed, f"chip_id/{product}").take(64)
    return chip[:8] + bytes(56) if product == "Turin" else chip


# --- certificates -------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    # Attribute order as in AMD's certificates (vectors): OU, C, L, ST, O, CN.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIM_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return bytes((0x02, len(body))) + body


def _der_ia5(text: str) -> bytes:
    body = text.encode("ascii")
    return bytes((0x16, len(body))) + body


def _vcek_extensions(
    product: Product, tcb: TcbVersion, chip_id: bytes
) -> list[x509.UnrecognizedExtension]:
    """AMD's VCEK extensions, in the order of the real Milan/Turin VCEK vectors."""

    def ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)

    p = certs.AMD_OID_PREFIX
    spl = tcb.components()
    out = [
        ext(f"{p}.1", _der_int(1 if product == "Turin" else 0)),
        ext(f"{p}.2", _der_ia5(PRODUCT_NAME[product])),
    ]
    if product == "Turin":
        order = [
            ("9", spl.get("fmc", 0)),
            ("1", tcb.bootloader),
            ("2", tcb.tee),
            ("3", tcb.snp),
            ("5", 0),
            ("6", 0),
            ("7", 0),
            ("8", tcb.microcode),
        ]
        hwid = chip_id[: certs.HWID_SIZE_TURIN]
    else:
        order = [
            ("1", tcb.bootloader),
            ("2", tcb.tee),
            ("4", 0),
            ("5", 0),
            ("6", 0),
            ("7", 0),
            ("3", tcb.snp),
            ("8", tcb.microcode),
        ]
        hwid = chip_id
    out += [ext(f"{p}.3.{n}", _der_int(v)) for n, v in order]
    out.append(ext(f"{p}.4", hwid))
    return out


def _issue(
    subject: str,
    issuer: str,
    public_key: Any,
    signer: rsa.RSAPrivateKey,
    serial: int,
    ca: bool,
    extensions: list[x509.UnrecognizedExtension],
    issuer_key: rsa.RSAPrivateKey | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None if subject == issuer else 0),
            critical=True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
    if issuer_key is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer, hashes.SHA384(), rsa_padding=certs.AMD_PSS)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# --- the roots ----------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$COCOPART_CACHE/simroots`` when set, else ``~/.cache/cocopart/simroots``."""
    base = os.environ.get("COCOPART_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "cocopart"
    return root / "simroots"


def _cache_file(cache_dir: Path, seed: str, product: Product) -> Path:
    tag = hashlib.sha256(seed.encode()).hexdigest()[:16]
    return cache_dir / f"{product.lower()}-{tag}.json"


@dataclass(frozen=True)
class SimulatedAmdRoots:
    """A simulated ARK/ASK/VCEK set for one seed and product (see the module docstring)."""

    seed: str
    product: Product
    ark_pem: bytes
    ask_pem: bytes
    vcek_der: bytes
    chip_id: bytes
    tcb: TcbVersion
    from_cache: bool = False
    cache_path: Path | None = None
    _vcek_key: list[ec.EllipticCurvePrivateKey] = field(
        default_factory=list, repr=False, compare=False
    )

    @classmethod
    def load(
        cls, seed: str, product: str = "Milan", cache_dir: Path | None = None
    ) -> SimulatedAmdRoots:
        """Read the roots of ``seed``/``product`` from the cache, or derive and cache them."""
        prod = next((p for p in PRODUCTS if p.lower() == product.lower()), None)
        if prod is None:
            raise ConfigError(
                f"unknown SNP product {product!r} (known: {', '.join(PRODUCTS)})", field="product"
            )
        directory = cache_dir if cache_dir is not None else default_cache_dir()
        path = _cache_file(directory, seed, prod)
        tcb = TcbVersion.decode(TcbVersion.encode(**DEFAULT_TCB[prod], product=prod), prod)
        chip_id = derive_chip_id(seed, prod)
        vcek_key = derive_p384_key(seed, f"VCEK/{prod}/{tcb.raw:016x}")
        cached = cls._read_cache(path, seed, prod, vcek_key)
        if cached is not None:
            ark_pem, ask_pem, vcek_der = cached
            from_cache = True
        else:
            ark_pem, ask_pem, vcek_der = cls._generate(seed, prod, tcb, chip_id, vcek_key)
            cls._write_cache(path, seed, prod, ark_pem, ask_pem, vcek_der)
            from_cache = False
        return cls(
            seed=seed,
            product=prod,
            ark_pem=ark_pem,
            ask_pem=ask_pem,
            vcek_der=vcek_der,
            chip_id=chip_id,
            tcb=tcb,
            from_cache=from_cache,
            cache_path=path,
            _vcek_key=[vcek_key],
        )

    @staticmethod
    def _generate(
        seed: str,
        product: Product,
        tcb: TcbVersion,
        chip_id: bytes,
        vcek_key: ec.EllipticCurvePrivateKey,
    ) -> tuple[bytes, bytes, bytes]:
        ark_key = derive_rsa_key(seed, f"ARK/{product}")
        ask_key = derive_rsa_key(seed, f"ASK/{product}")
        index = PRODUCTS.index(product) + 1
        ark_cn, ask_cn = f"ARK-{product}", f"SEV-{product}"
        ark = _issue(ark_cn, ark_cn, ark_key.public_key(), ark_key, index << 16, True, [])
        ask = _issue(
            ask_cn,
            ark_cn,
            ask_key.public_key(),
            ark_key,
            (index << 16) + 1,
            True,
            [],
            issuer_key=ark_key,
        )
        vcek = _issue(
            "SEV-VCEK",
            ask_cn,
            vcek_key.public_key(),
            ask_key,
            1,
            False,
            _vcek_extensions(product, tcb, chip_id),
        )
        return _pem(ark), _pem(ask), vcek.public_bytes(serialization.Encoding.DER)

    @staticmethod
    def _read_cache(
        path: Path, seed: str, product: Product, vcek_key: ec.EllipticCurvePrivateKey
    ) -> tuple[bytes, bytes, bytes] | None:
        """The cached PEMs, or None when absent, unreadable or not for these keys."""
        try:
            data = json.loads(path.read_text())
            if (
                data.get("format") != CACHE_FORMAT
                or data.get("product") != product
                or data.get("seed_sha256") != hashlib.sha256(seed.encode()).hexdigest()
            ):
                return None
            ark_pem, ask_pem = data["ark_pem"].encode(), data["ask_pem"].encode()
            vcek_der = base64.b64decode(data["vcek_der"])
            vcek = certs.load_certificate(vcek_der)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if vcek.public_key() != vcek_key.public_key():
            return None
        return ark_pem, ask_pem, vcek_der

    @staticmethod
    def _write_cache(
        path: Path, seed: str, product: Product, ark_pem: bytes, ask_pem: bytes, vcek_der: bytes
    ) -> None:
        """Write the cache file atomically; a read-only cache is not an error."""
        data = {
            "format": CACHE_FORMAT,
            "product": product,
            "seed_sha256": hashlib.sha256(seed.encode()).hexdigest(),
            "ark_pem": ark_pem.decode(),
            "ask_pem": ask_pem.decode(),
            "vcek_der": base64.b64encode(vcek_der).decode(),
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                "w", dir=path.parent, delete=False, suffix=".tmp"
            ) as tmp:
                json.dump(data, tmp, indent=1)
            os.replace(tmp.name, path)
        except OSError:
            pass

    # --- use -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The signer name a verifier reports for this chain."""
        return f"simulated:ARK-{self.product}"

    @property
    def vcek_key(self) -> ec.EllipticCurvePrivateKey:
        return self._vcek_key[0]

    def certificates(self) -> list[bytes]:
        """[VCEK (DER), ASK (PEM), ARK (PEM)] as an :class:`Evidence` wants them."""
        return [self.vcek_der, self.ask_pem, self.ark_pem]

    def trust_store(self, base: TrustStore | None = None) -> TrustStore:
        """``base`` (default: an empty store) with this ARK pinned for "sev-snp"."""
        return (base or TrustStore()).with_root("sev-snp", self.ark_pem)

    def sign_report(self, report: bytes | SnpReport) -> bytes:
        """Sign bytes 0x000..0x29F with the VCEK and return the 0x4A0-byte signed report."""
        model = SnpReport.parse(report) if isinstance(report, bytes) else report
        body = model.build()[:SIGNED_LENGTH]
        try:
            algorithm = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)
            der = self.vcek_key.sign(body, algorithm)
        except (TypeError, UnsupportedAlgorithm):  # no RFC 6979 here: randomised is fine
            der = self.vcek_key.sign(body, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return model.model_copy(update={"signature_r": r, "signature_s": s}).build()

    def build_report(
        self,
        report_data: bytes = b"",
        vmpl: int = 0,
        measurement: bytes | None = None,
        policy: int = 0x30000,
        **fields: Any,
    ) -> bytes:
        """A fully-populated report of this platform, signed by its VCEK.

        Version 3 on Milan/Genoa and 5 on Turin; current/reported/committed/launch TCB are
        :attr:`tcb`; chip_id, CPUID and firmware as the simulated platform has them.
        ``fields`` override any other :class:`SnpReport` field (e.g. ``reported_tcb``).
        """
        fam, mod, step = CPUID[self.product]
        major, minor, build = FIRMWARE
        stream = _Stream(self.seed, f"report/{self.product}")
        values: dict[str, Any] = {
            "version": 5 if self.product == "Turin" else 3,
            "guest_svn": 0,
            "policy": policy,
            "vmpl": vmpl,
            "current_tcb": self.tcb.raw,
            "reported_tcb": self.tcb.raw,
            "committed_tcb": self.tcb.raw,
            "launch_tcb": self.tcb.raw,
            "platform_info": 0x3,  # SMT_EN | TSME_EN
            "signer_info": 0,  # SIGNING_KEY 0 = VCEK
            "report_data": report_data.ljust(64, b"\0"),
            "measurement": (
                measurement
                if measurement is not None
                else hashlib.sha384(f"{self.seed}/launch".encode()).digest()
            ),
            "report_id": hashlib.sha256(stream.take(32) + report_data).digest(),
            "report_id_ma": b"\xff" * 32,
            "cpuid_fam_id": fam,
            "cpuid_mod_id": mod,
            "cpuid_step": step,
            "chip_id": self.chip_id,
            "current_major": major,
            "current_minor": minor,
            "current_build": build,
            "committed_major": major,
            "committed_minor": minor,
            "committed_build": build,
        }
        values.update(fields)
        return self.sign_report(SnpReport(**values))

    def evidence(self, report: bytes, **kw: Any) -> Evidence:
        """An :class:`Evidence` for ``report`` with this chain attached."""
        return Evidence(
            vendor="sev-snp",
            format="snp-report",
            raw=report,
            certificates=self.certificates(),
            **kw,
        )


def build_report(roots: SimulatedAmdRoots, **kw: Any) -> bytes:
    """Module-level form of :meth:`SimulatedAmdRoots.build_report`."""
    return roots.build_report(**kw)
