"""Simulated Intel-style attestation roots, for tests and for platforms without TDX hardware.

Everything is derived from a seed string: the P-256 keys (root CA, PCK Platform CA, PCK leaf,
quoting-enclave attestation key, TCB signing key) and the TDREPORT MAC key. Certificates and
signatures use deterministic ECDSA (RFC 6979), so the same seed always yields the same bytes;
the certificates are still cached on disk ($COCOPART_CACHE/simroots, else
~/.cache/cocopart/simroots) so that loading is cheap and a relying party can be handed the
same root PEM across processes.

The shapes mirror the real ones (see :mod:`cocopart_tdx.pck`, :mod:`cocopart_tdx.quote`,
:mod:`cocopart_tdx.collateral`): Root CA -> PCK Platform CA -> PCK leaf with the Intel SGX
extensions (FMSPC, TCB, PCE-ID ...); a quoting enclave whose report binds its attestation
key and is signed by the PCK key; PCS-format TCB info and QE identity signed by a TCB signing
certificate under the same root; CRLs from the root and the platform CA.

Unlike hardware, the TDREPORT MAC here is HMAC-SHA-256 with a seed-derived key over
REPORTMACSTRUCT without its MAC field. On a real CPU the MAC key never leaves the processor;
only the same platform can check it. Nothing here is Intel's: every subject name says
"Simulated", and a verifier accepts these roots only when they are in its TrustStore.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cocopart.spi import EvidenceError
from cocopart_tdx.collateral import pcs_body
from cocopart_tdx.pck import SGX_EXTENSIONS_OID, PckTcb, SgxExtensions, load_certificates
from cocopart_tdx.quote import (
    BODY_TYPE_TD15,
    QUOTE_VERSION_4,
    QUOTE_VERSION_5,
    CertificationData,
    EnclaveReportBody,
    QeReportCertificationData,
    QuoteHeader,
    QuoteSignatureData,
    TdQuote,
    TdQuoteBody,
)
from cocopart_tdx.tdreport import TdReport, encode_td_attributes

_CACHE_FORMAT = 2
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
_ROOT_NOT_AFTER = datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)
_LEAF_NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)

#: The simulated platform's TCB (PCK certificate) and the TD's TEE_TCB_SVN by default:
#: TDX module 1.5-style (major 1, minor 5, microcode 7), matching the UpToDate level.
SIM_FMSPC = bytes.fromhex("00c0ffee0000")
SIM_SGX_SVNS = (5, 5, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0)
SIM_PCESVN = 11
DEFAULT_TEE_TCB_SVN = bytes([5, 1, 7] + [0] * 13)
DEFAULT_TD_ATTRIBUTES = encode_td_attributes(sept_ve_disable=True)
DEFAULT_XFAM = bytes.fromhex("e702060000000000")
SIM_QE_ISVSVN = 4
SIM_QE_ISVPRODID = 2
SIM_QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
SIM_QE_AUTH_DATA = bytes(range(32))


def default_cache_dir() -> Path:
    """$COCOPART_CACHE/simroots, else ~/.cache/cocopart/simroots."""
    base = os.environ.get("COCOPART_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "cocopart") / "simroots"


def _derive_key(seed: str, label: str) -> ec.EllipticCurvePrivateKey:
    digest = hashlib.sha512(f"cocopart-simroots|{label}|{seed}".encode()).digest()
    scalar = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cocopart simulation (not Intel)"),
        ]
    )


def _serial(seed: str, label: str) -> int:
    return (
        int.from_bytes(hashlib.sha256(f"serial|{label}|{seed}".encode()).digest()[:16], "big") >> 1
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    serial: int,
    ca: bool,
    not_after: datetime,
    extra: list[x509.ExtensionType] | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(
                ca=ca, path_length=1 if ca and issuer is None else (0 if ca else None)
            ),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    b = b.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
    )
    for ext in extra or []:
        b = b.add_extension(ext, critical=False)
    return b.sign(issuer_key, hashes.SHA256(), ecdsa_deterministic=True)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 as r||s (32 bytes each, big-endian), deterministic."""
    r, s = decode_dss_signature(
        key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    )
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class SimulatedIntelRoots:
    """A simulated Intel attestation infrastructure derived from ``seed``."""

    seed: str
    root: x509.Certificate
    platform_ca: x509.Certificate
    pck: x509.Certificate
    tcb_signing: x509.Certificate

    # --- construction ----------------------------------------------------------------------

    @classmethod
    def load(cls, seed: str, cache_dir: str | Path | None = None) -> SimulatedIntelRoots:
        """Load the certificates for ``seed`` from the disk cache, creating them if needed."""
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = directory / f"{hashlib.sha256(seed.encode()).hexdigest()[:24]}.json"
        if path.is_file():
            try:
                cached = json.loads(path.read_text())
                if cached.get("format") == _CACHE_FORMAT and cached.get("seed") == seed:
                    certs = [
                        load_certificates(cached[k].encode())[0]
                        for k in ("root", "platform_ca", "pck", "tcb_signing")
                    ]
                    roots = cls(seed, *certs)
                    if roots._keys_match():
                        return roots
            except (OSError, ValueError, KeyError, EvidenceError):
                pass  # a damaged cache entry is rebuilt below
        roots = cls._generate(seed)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "format": _CACHE_FORMAT,
                        "seed": seed,
                        "root": _pem(roots.root).decode(),
                        "platform_ca": _pem(roots.platform_ca).decode(),
                        "pck": _pem(roots.pck).decode(),
                        "tcb_signing": _pem(roots.tcb_signing).decode(),
                    },
                    indent=1,
                )
            )
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home still works, just without the cache
        return roots

    @classmethod
    def _generate(cls, seed: str) -> SimulatedIntelRoots:
        root_key, ca_key = _derive_key(seed, "root"), _derive_key(seed, "platform-ca")
        root = _cert(
            f"Simulated SGX Root CA [{seed}]",
            root_key,
            None,
            root_key,
            _serial(seed, "root"),
            True,
            _ROOT_NOT_AFTER,
        )
        platform_ca = _cert(
            "Simulated SGX PCK Platform CA",
            ca_key,
            root,
            root_key,
            _serial(seed, "platform-ca"),
            True,
            _LEAF_NOT_AFTER,
        )
        ext = SgxExtensions(
            ppid=hashlib.sha256(f"ppid|{seed}".encode()).digest()[:16],
            tcb=PckTcb(SIM_SGX_SVNS, SIM_PCESVN, bytes(SIM_SGX_SVNS)),
            pce_id=bytes(2),
            fmspc=SIM_FMSPC,
            sgx_type=1,
            platform_instance_id=hashlib.sha256(f"pinst|{seed}".encode()).digest()[:16],
            configuration={"dynamic_platform": True, "cached_keys": False, "smt_enabled": True},
        )
        sgx_ext = x509.UnrecognizedExtension(
            x509.ObjectIdentifier(SGX_EXTENSIONS_OID), ext.to_der()
        )
        pck = _cert(
            "Simulated SGX PCK Certificate",
            _derive_key(seed, "pck"),
            platform_ca,
            ca_key,
            _serial(seed, "pck"),
            False,
            _LEAF_NOT_AFTER,
            [sgx_ext],
        )
        tcb_signing = _cert(
            "Simulated SGX TCB Signing",
            _derive_key(seed, "tcb-signing"),
            root,
            root_key,
            _serial(seed, "tcb-signing"),
            False,
            _LEAF_NOT_AFTER,
        )
        return cls(seed, root, platform_ca, pck, tcb_signing)

    def _keys_match(self) -> bool:
        pairs = (
            (self.root, "root"),
            (self.platform_ca, "platform-ca"),
            (self.pck, "pck"),
            (self.tcb_signing, "tcb-signing"),
        )
        return all(
            c.public_key() == _derive_key(self.seed, label).public_key() for c, label in pairs
        )

    # --- keys and identities ----------------------------------------------------------------

    def _key(self, label: str) -> ec.EllipticCurvePrivateKey:
        return _derive_key(self.seed, label)

    @property
    def root_pem(self) -> bytes:
        """The simulated root certificate, PEM: put it in a TrustStore under "tdx"."""
        return _pem(self.root)

    @property
    def pck_chain_pem(self) -> bytes:
        """PCK leaf, Platform CA and root, PEM, as quotes carry them (NUL-terminated)."""
        return _pem(self.pck, self.platform_ca, self.root) + b"\0"

    @property
    def report_mac_key(self) -> bytes:
        """The simulated CPU's TDREPORT MAC key (a real CPU never reveals its key)."""
        return hashlib.sha256(f"cocopart-simroots|report-mac|{self.seed}".encode()).digest()

    @property
    def attestation_key(self) -> bytes:
        """The QE attestation public key as a quote carries it (x||y)."""
        nums = self._key("qe-attestation").public_key().public_numbers()
        return nums.x.to_bytes(32, "big") + nums.y.to_bytes(32, "big")

    @property
    def qe_mrsigner(self) -> bytes:
        return hashlib.sha256(f"qe-mrsigner|{self.seed}".encode()).digest()

    @property
    def qe_mrenclave(self) -> bytes:
        return hashlib.sha256(f"qe-mrenclave|{self.seed}".encode()).digest()

    @property
    def mrseam(self) -> bytes:
        """MRSEAM of the simulated TDX module."""
        return hashlib.sha384(f"tdx-module|{self.seed}".encode()).digest()

    # --- TDREPORT and quote -----------------------------------------------------------------

    def mac(self, report: TdReport) -> bytes:
        """HMAC-SHA-256 of REPORTMACSTRUCT[0:224] with the simulated CPU key."""
        return hmac.new(self.report_mac_key, report.mac_input, hashlib.sha256).digest()

    def build_tdreport(
        self,
        *,
        report_data: bytes = bytes(64),
        mrtd: bytes = bytes(48),
        rtmrs: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4,
        attributes: bytes = DEFAULT_TD_ATTRIBUTES,
        xfam: bytes = DEFAULT_XFAM,
        mrconfigid: bytes = bytes(48),
        mrowner: bytes = bytes(48),
        mrownerconfig: bytes = bytes(48),
        servtd_hash: bytes = bytes(48),
        tee_tcb_svn: bytes = DEFAULT_TEE_TCB_SVN,
        tee_tcb_svn2: bytes | None = None,
    ) -> bytes:
        """A TDREPORT as TDG.MR.REPORT would return it on the simulated platform (MAC included)."""
        report = TdReport.build(
            report_data=report_data,
            mrtd=mrtd,
            rtmrs=rtmrs,
            attributes=attributes,
            xfam=xfam,
            mrconfigid=mrconfigid,
            mrowner=mrowner,
            mrownerconfig=mrownerconfig,
            servtd_hash=servtd_hash,
            tee_tcb_svn=tee_tcb_svn,
            tee_tcb_svn2=tee_tcb_svn if tee_tcb_svn2 is None else tee_tcb_svn2,
            mrseam=self.mrseam,
            cpusvn=bytes(SIM_SGX_SVNS),
            report_version=1 if any(servtd_hash) else 0,
        )
        return report.with_mac(self.mac(report)).to_bytes()

    def qe_report(self) -> EnclaveReportBody:
        """The QE's report: REPORTDATA = SHA-256(attestation key || QE auth data) || 0*32."""
        binding = hashlib.sha256(self.attestation_key + SIM_QE_AUTH_DATA).digest() + bytes(32)
        return EnclaveReportBody.build(
            mrenclave=self.qe_mrenclave,
            mrsigner=self.qe_mrsigner,
            isvprodid=SIM_QE_ISVPRODID,
            isvsvn=SIM_QE_ISVSVN,
            report_data=binding,
            attributes=SIM_QE_ATTRIBUTES,
            cpusvn=bytes(SIM_SGX_SVNS),
        )

    def quote_from_tdreport(self, tdreport_bytes: bytes, version: int = QUOTE_VERSION_4) -> bytes:
        """Quote a TDREPORT as the simulated TD quoting enclave would.

        The TDREPORT's MAC must be this platform's (as the real QE checks it with the CPU);
        ``version`` 4 gives a TDX 1.0 body, 5 a v5 quote with a TDX 1.5 body (type 3).
        """
        report = TdReport.from_bytes(tdreport_bytes)
        if not hmac.compare_digest(self.mac(report), report.mac_struct.mac):
            raise EvidenceError(
                "the TDREPORT MAC is not this simulated platform's: the quoting enclave refuses it"
            )
        if report.hash_problems():
            raise EvidenceError("; ".join(report.hash_problems()))
        if version not in (QUOTE_VERSION_4, QUOTE_VERSION_5):
            raise EvidenceError(f"quote version {version} is not supported (4 or 5)")
        body = TdQuoteBody.from_tdreport(report, td15=version == QUOTE_VERSION_5)
        qe_report = self.qe_report()
        qe_cert = QeReportCertificationData(
            qe_report,
            _sign_raw(self._key("pck"), qe_report.to_bytes()),
            SIM_QE_AUTH_DATA,
            CertificationData(5, self.pck_chain_pem),
        )
        header = QuoteHeader(version=version)
        unsigned = TdQuote(
            header, body, QuoteSignatureData(bytes(64), self.attestation_key, qe_cert)
        )
        signature = _sign_raw(self._key("qe-attestation"), unsigned.signed_bytes())
        quote = TdQuote(header, body, QuoteSignatureData(signature, self.attestation_key, qe_cert))
        assert version == QUOTE_VERSION_4 or quote.body_type == BODY_TYPE_TD15
        return quote.to_bytes()

    # --- collateral -------------------------------------------------------------------------

    def tcb_info_value(self, now: datetime) -> dict[str, object]:
        """The simulated TDX TCB info (v3) with an UpToDate and an OutOfDate level."""

        def comps(svns: tuple[int, ...]) -> list[dict[str, int]]:
            return [{"svn": v} for v in svns]

        zero_module = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
        return {
            "id": "TDX",
            "version": 3,
            "issueDate": _iso(now - timedelta(days=1)),
            "nextUpdate": _iso(now + timedelta(days=29)),
            "fmspc": SIM_FMSPC.hex(),
            "pceId": "0000",
            "tcbType": 0,
            "tcbEvaluationDataNumber": 1,
            "tdxModule": zero_module,
            "tdxModuleIdentities": [
                {
                    "id": "TDX_01",
                    **zero_module,
                    "tcbLevels": [
                        {
                            "tcb": {"isvsvn": 5},
                            "tcbDate": "2025-01-01T00:00:00Z",
                            "tcbStatus": "UpToDate",
                        },
                        {
                            "tcb": {"isvsvn": 3},
                            "tcbDate": "2024-01-01T00:00:00Z",
                            "tcbStatus": "OutOfDate",
                            "advisoryIDs": ["SIM-SA-0002"],
                        },
                    ],
                }
            ],
            "tcbLevels": [
                {
                    "tcb": {
                        "sgxtcbcomponents": comps(SIM_SGX_SVNS),
                        "pcesvn": SIM_PCESVN,
                        "tdxtcbcomponents": comps((5, 0, 7) + (0,) * 13),
                    },
                    "tcbDate": "2025-01-01T00:00:00Z",
                    "tcbStatus": "UpToDate",
                },
                {
                    "tcb": {
                        "sgxtcbcomponents": comps((4, 4) + SIM_SGX_SVNS[2:]),
                        "pcesvn": SIM_PCESVN,
                        "tdxtcbcomponents": comps((3, 0, 5) + (0,) * 13),
                    },
                    "tcbDate": "2024-01-01T00:00:00Z",
                    "tcbStatus": "OutOfDate",
                    "advisoryIDs": ["SIM-SA-0001"],
                },
            ],
        }

    def qe_identity_value(self, now: datetime) -> dict[str, object]:
        """The simulated TD_QE identity (v2)."""
        return {
            "id": "TD_QE",
            "version": 2,
            "issueDate": _iso(now - timedelta(days=1)),
            "nextUpdate": _iso(now + timedelta(days=29)),
            "tcbEvaluationDataNumber": 1,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": SIM_QE_ATTRIBUTES.hex().upper(),
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": self.qe_mrsigner.hex().upper(),
            "isvprodid": SIM_QE_ISVPRODID,
            "tcbLevels": [
                {
                    "tcb": {"isvsvn": SIM_QE_ISVSVN},
                    "tcbDate": "2025-01-01T00:00:00Z",
                    "tcbStatus": "UpToDate",
                }
            ],
        }

    def _crl(
        self,
        issuer: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
        now: datetime,
        revoked: list[int],
    ) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(now - timedelta(days=1))
            .next_update(now + timedelta(days=29))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
            )
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(now - timedelta(days=2))
                .build()
            )
        return b.sign(key, hashes.SHA256(), ecdsa_deterministic=True).public_bytes(
            serialization.Encoding.DER
        )

    def collateral(self, now: datetime, *, revoke_pck: bool = False) -> dict[str, bytes]:
        """PCS-format collateral valid at ``now`` (issued a day before, next update in 29 days).

        Keys as :class:`cocopart.attest.evidence.Evidence` expects them for TDX. With
        ``revoke_pck`` the PCK CRL lists the simulated PCK leaf.
        """
        signer = self._key("tcb-signing")
        tcb_raw = json.dumps(self.tcb_info_value(now), separators=(",", ":")).encode()
        qe_raw = json.dumps(self.qe_identity_value(now), separators=(",", ":")).encode()
        chain = _pem(self.tcb_signing, self.root)
        return {
            "tcb_info": pcs_body("tcbInfo", tcb_raw, _sign_raw(signer, tcb_raw)),
            "qe_identity": pcs_body("enclaveIdentity", qe_raw, _sign_raw(signer, qe_raw)),
            "tcb_info_issuer_chain": chain,
            "qe_identity_issuer_chain": chain,
            "root_crl": self._crl(self.root, self._key("root"), now, []),
            "pck_crl": self._crl(
                self.platform_ca,
                self._key("platform-ca"),
                now,
                [self.pck.serial_number] if revoke_pck else [],
            ),
            "pck_crl_issuer_chain": _pem(self.platform_ca, self.root),
        }
