"""TDX collateral: PCS TCB info (v3, id "TDX") and QE identity (v2, id "TD_QE").

The Intel PCS serves each as a JSON body ``{"tcbInfo": {...}, "signature": "<hex r||s>"}``
(resp. ``"enclaveIdentity"``), signed with ECDSA P-256/SHA-256 by the Intel SGX TCB Signing
key over the *exact bytes* of the ``"tcbInfo"`` / ``"enclaveIdentity"`` value; the TCB
Signing certificate chains to the Intel SGX Root CA and arrives in the HTTP header
``TCB-Info-Issuer-Chain`` (shared/vectors README "How verified" and "TDX collateral").

TCB status follows Intel's published algorithm for TDX (Intel PCS API, "TDX TCB Info" and
the DCAP quote verification flow), implemented here from that description:

1. Platform level: walk ``tcbLevels`` in the order given (Intel sorts them, newest first)
   and take the first level where (a) every SGX TCB component SVN of the PCK certificate is
   >= the level's ``sgxtcbcomponents``, (b) the PCK PCESVN is >= the level's ``pcesvn`` and
   (c) every TEE_TCB_SVN byte of the quote is >= the level's ``tdxtcbcomponents``, comparing
   bytes 0..15 when TEE_TCB_SVN[1] == 0 and bytes 2..15 otherwise. No level -> the TCB is
   not supported ("No matching TCB level found").
2. TDX module: when TEE_TCB_SVN[1] (the module's major version) > 0 and the TCB info has
   ``tdxModuleIdentities``, the identity ``TDX_<major as 2 hex digits>`` must match
   MRSIGNERSEAM and SEAMATTRIBUTES (under ``attributesMask``); its first level with
   ``isvsvn`` <= TEE_TCB_SVN[0] gives the module status. Otherwise ``tdxModule`` must match.
3. QE identity: MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES (under their masks) of the QE
   report must match; the first level with ``isvsvn`` <= the QE's ISVSVN gives its status.
4. Converge: a module or QE status OutOfDate turns UpToDate/SWHardeningNeeded into OutOfDate
   and ConfigurationNeeded/ConfigurationAndSWHardeningNeeded into
   OutOfDateConfigurationNeeded; Revoked wins over everything. Advisory IDs are the union.

The expected answers are dcap-qvl's results listed in the vectors README.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cocopart.spi import EvidenceError
from cocopart_tdx.pck import PckTcb
from cocopart_tdx.quote import EnclaveReportBody, TdQuoteBody

TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
NO_MATCHING_TCB_LEVEL = "No matching TCB level found"


class CollateralError(EvidenceError):
    """Collateral that cannot be parsed or does not have the expected shape."""


def parse_time(value: str) -> datetime:
    """PCS timestamps are ISO 8601 UTC with a ``Z`` suffix; naive values are taken as UTC."""
    t = datetime.fromisoformat(value)
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


# --- exact bytes of a top-level JSON member ---------------------------------------------------

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")


def json_members(body: bytes) -> dict[str, tuple[Any, bytes]]:
    """Each top-level member of the JSON object ``body``: its parsed value and the exact
    bytes of that value as they appear in ``body`` (what the PCS signature covers).

    One pass of the C JSON scanner: ``raw_decode`` returns where each value ends, so the
    signed bytes are a slice, not a re-serialisation. Decoding UTF-8 and encoding the slice
    again gives the original bytes back. A repeated member is refused (which copy would the
    signature cover?)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CollateralError(f"collateral is not UTF-8: {exc}") from None
    i = _WS.match(text, 0).end()  # type: ignore[union-attr]
    if text[i : i + 1] != "{":
        raise CollateralError("collateral is not a JSON object")
    members: dict[str, tuple[Any, bytes]] = {}
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    try:
        while text[i : i + 1] != "}":
            key, i = _DECODER.raw_decode(text, i)
            if not isinstance(key, str):
                raise CollateralError("JSON: member name expected")
            i = _WS.match(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != ":":
                raise CollateralError("JSON: ':' expected")
            start = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
            value, end = _DECODER.raw_decode(text, start)
            if key in members:
                raise CollateralError(f"JSON: member {key!r} appears twice")
            members[key] = (value, text[start:end].encode("utf-8"))
            i = _WS.match(text, end).end()  # type: ignore[union-attr]
            if text[i : i + 1] == ",":
                i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
            elif text[i : i + 1] != "}":
                raise CollateralError("JSON: ',' or '}' expected")
    except json.JSONDecodeError as exc:
        raise CollateralError(f"JSON: {exc}") from None
    if text[i + 1 :].strip():
        raise CollateralError("JSON: data after the object")
    return members


@dataclass(frozen=True)
class SignedJson:
    """A PCS response body split into the signed bytes, the parsed value and the signature."""

    key: str
    raw_value: bytes
    value: dict[str, Any] = field(hash=False, compare=False)
    signature: bytes = b""

    @classmethod
    def parse(cls, body: bytes, key: str) -> SignedJson:
        members = json_members(body)
        if key not in members:
            raise CollateralError(f"collateral has no top-level {key!r}")
        value, raw = members[key]
        try:
            sig = bytes.fromhex(members["signature"][0])
        except (ValueError, KeyError, TypeError) as exc:
            raise CollateralError(f"{key}: {type(exc).__name__}: {exc}") from None
        if not isinstance(value, dict) or len(sig) != 64:
            raise CollateralError(f"{key}: value is not an object or signature is not 64 bytes")
        return cls(key, raw, value, sig)

    def signature_ok(self, signer: ec.EllipticCurvePublicKey) -> bool:
        """ECDSA P-256/SHA-256 of the raw value, signature given as hex r||s."""
        r = int.from_bytes(self.signature[:32], "big")
        s = int.from_bytes(self.signature[32:], "big")
        try:
            signer.verify(encode_dss_signature(r, s), self.raw_value, _ECDSA_SHA256)
        except InvalidSignature:
            return False
        return True


_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def pcs_body(key: str, raw_value: bytes, signature: bytes) -> bytes:
    """Assemble a PCS response body around the exact signed bytes (inverse of SignedJson)."""
    return (
        b'{"'
        + key.encode()
        + b'":'
        + raw_value
        + b',"signature":"'
        + signature.hex().encode()
        + b'"}'
    )


# --- parsed TCB info and QE identity ---------------------------------------------------------


@dataclass(frozen=True)
class TcbLevel:
    """One platform TCB level of a TDX TCB info."""

    sgx_svns: tuple[int, ...]
    pcesvn: int
    tdx_svns: tuple[int, ...]
    status: str
    tcb_date: str = ""
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class IsvLevel:
    """One ``isvsvn`` level (QE identity, TDX module identity)."""

    isvsvn: int
    status: str
    tcb_date: str = ""
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TdxModuleIdentity:
    """``tdxModule`` or one entry of ``tdxModuleIdentities``."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[IsvLevel, ...] = ()

    def mismatch(self, mrsignerseam: bytes, seam_attributes: bytes) -> str | None:
        if mrsignerseam != self.mrsigner:
            return f"MRSIGNERSEAM {mrsignerseam.hex()} is not {self.id}'s {self.mrsigner.hex()}"
        if _masked(seam_attributes, self.attributes_mask) != _masked(
            self.attributes, self.attributes_mask
        ):
            return f"SEAMATTRIBUTES {seam_attributes.hex()} do not match {self.id}'s"
        return None


def _masked(value: bytes, mask: bytes) -> bytes:
    return bytes(a & b for a, b in zip(value, mask))


def _isv_levels(items: list[dict[str, Any]]) -> tuple[IsvLevel, ...]:
    return tuple(
        IsvLevel(
            int(lv["tcb"]["isvsvn"]),
            str(lv["tcbStatus"]),
            str(lv.get("tcbDate", "")),
            tuple(lv.get("advisoryIDs", ())),
        )
        for lv in items
    )


_SVN = itemgetter("svn")


@dataclass(frozen=True)
class TcbInfo:
    """A parsed TDX TCB info (``tcbInfo`` v3 with ``id`` "TDX")."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_evaluation_data_number: int
    tdx_module: TdxModuleIdentity | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]
    levels: tuple[TcbLevel, ...]

    @classmethod
    def from_value(cls, v: dict[str, Any]) -> TcbInfo:
        try:
            if v.get("id") != "TDX" or int(v["version"]) != 3:
                raise CollateralError(
                    f"tcbInfo id {v.get('id')!r} version {v.get('version')!r} "
                    "is not a TDX TCB info v3"
                )
            module = None
            if "tdxModule" in v:
                m = v["tdxModule"]
                module = TdxModuleIdentity(
                    "tdxModule",
                    bytes.fromhex(m["mrsigner"]),
                    bytes.fromhex(m["attributes"]),
                    bytes.fromhex(m["attributesMask"]),
                )
            identities = tuple(
                TdxModuleIdentity(
                    str(m["id"]),
                    bytes.fromhex(m["mrsigner"]),
                    bytes.fromhex(m["attributes"]),
                    bytes.fromhex(m["attributesMask"]),
                    _isv_levels(m["tcbLevels"]),
                )
                for m in v.get("tdxModuleIdentities", ())
            )
            levels = []
            for lv in v["tcbLevels"]:
                t = lv["tcb"]
                sgx = tuple(map(int, map(_SVN, t["sgxtcbcomponents"])))
                tdx = tuple(map(int, map(_SVN, t["tdxtcbcomponents"])))
                if len(sgx) != 16 or len(tdx) != 16:
                    raise CollateralError("a TDX TCB level needs 16 SGX and 16 TDX components")
                levels.append(
                    TcbLevel(
                        sgx,
                        int(t["pcesvn"]),
                        tdx,
                        str(lv["tcbStatus"]),
                        str(lv.get("tcbDate", "")),
                        tuple(lv.get("advisoryIDs", ())),
                    )
                )
            return cls(
                str(v["id"]),
                int(v["version"]),
                parse_time(v["issueDate"]),
                parse_time(v["nextUpdate"]),
                bytes.fromhex(v["fmspc"]),
                bytes.fromhex(v["pceId"]),
                int(v["tcbEvaluationDataNumber"]),
                module,
                identities,
                tuple(levels),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CollateralError(f"tcbInfo: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class EnclaveIdentity:
    """A parsed QE identity (``enclaveIdentity`` v2, ``id`` "TD_QE" for TDX)."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[IsvLevel, ...]

    @classmethod
    def from_value(cls, v: dict[str, Any]) -> EnclaveIdentity:
        try:
            if v.get("id") != "TD_QE":
                raise CollateralError(f"enclaveIdentity id {v.get('id')!r} is not TD_QE")
            return cls(
                str(v["id"]),
                int(v["version"]),
                parse_time(v["issueDate"]),
                parse_time(v["nextUpdate"]),
                int(v["miscselect"], 16),
                int(v["miscselectMask"], 16),
                bytes.fromhex(v["attributes"]),
                bytes.fromhex(v["attributesMask"]),
                bytes.fromhex(v["mrsigner"]),
                int(v["isvprodid"]),
                _isv_levels(v["tcbLevels"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CollateralError(f"enclaveIdentity: {type(exc).__name__}: {exc}") from None

    def mismatch(self, qe: EnclaveReportBody) -> str | None:
        """Why the QE report is not this enclave, or None."""
        if qe.mrsigner != self.mrsigner:
            return f"QE MRSIGNER {qe.mrsigner.hex()} is not {self.mrsigner.hex()}"
        if qe.isvprodid != self.isvprodid:
            return f"QE ISVPRODID {qe.isvprodid} is not {self.isvprodid}"
        if qe.miscselect & self.miscselect_mask != self.miscselect & self.miscselect_mask:
            return f"QE MISCSELECT {qe.miscselect:#x} does not match"
        if _masked(qe.attributes, self.attributes_mask) != _masked(
            self.attributes, self.attributes_mask
        ):
            return f"QE ATTRIBUTES {qe.attributes.hex()} do not match"
        return None


# --- TCB status ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TcbEvaluation:
    """Outcome of the TCB status algorithm; ``status`` is None when the TCB is not supported."""

    status: str | None
    advisory_ids: tuple[str, ...] = ()
    platform_status: str | None = None
    module_status: str | None = None
    qe_status: str | None = None
    problems: tuple[str, ...] = ()
    tcb_date: str = ""


def converge(platform: str, other: str | None) -> str:
    """Combine the platform status with a TDX-module or QE status (algorithm step 4)."""
    if other == "Revoked" or platform == "Revoked":
        return "Revoked"
    if other == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def _first_isv_level(levels: tuple[IsvLevel, ...], isvsvn: int) -> IsvLevel | None:
    return next((lv for lv in levels if isvsvn >= lv.isvsvn), None)


def platform_level(info: TcbInfo, pck: PckTcb, tee_tcb_svn: bytes) -> TcbLevel | None:
    """Algorithm step 1: the first TCB level the platform meets."""
    first_tdx = 2 if tee_tcb_svn[1] > 0 else 0
    for lv in info.levels:
        if (
            all(have >= want for have, want in zip(pck.comp_svns, lv.sgx_svns))
            and pck.pcesvn >= lv.pcesvn
            and all(tee_tcb_svn[i] >= lv.tdx_svns[i] for i in range(first_tdx, 16))
        ):
            return lv
    return None


def evaluate_tcb(
    info: TcbInfo,
    identity: EnclaveIdentity | None,
    pck: PckTcb,
    body: TdQuoteBody,
    qe: EnclaveReportBody | None,
) -> TcbEvaluation:
    """Run the whole TCB status algorithm for one quote; never raises for bad input."""
    problems: list[str] = []
    level = platform_level(info, pck, body.tee_tcb_svn)
    if level is None:
        return TcbEvaluation(
            None,
            problems=(
                NO_MATCHING_TCB_LEVEL + ": the platform TCB is below every level in the TCB info",
            ),
        )
    status = level.status
    advisories = list(level.advisory_ids)
    module_status: str | None = None
    major = body.tee_tcb_svn[1]
    if major > 0 and info.tdx_module_identities:
        ident_id = f"TDX_{major:02X}"
        ident = next((m for m in info.tdx_module_identities if m.id == ident_id), None)
        if ident is None:
            problems.append(f"TDX module identity {ident_id} is not in the TCB info")
        else:
            why = ident.mismatch(body.mrsignerseam, body.seam_attributes)
            mlevel = _first_isv_level(ident.levels, body.tee_tcb_svn[0])
            if why:
                problems.append(why)
            elif mlevel is None:
                problems.append(
                    f"TDX module {ident_id} SVN {body.tee_tcb_svn[0]} is below every "
                    "level of its identity"
                )
            else:
                module_status = mlevel.status
                advisories += mlevel.advisory_ids
                status = converge(status, module_status)
    elif info.tdx_module is not None:
        why = info.tdx_module.mismatch(body.mrsignerseam, body.seam_attributes)
        if why:
            problems.append(why)
    qe_status: str | None = None
    if identity is not None and qe is not None:
        why = identity.mismatch(qe)
        qlevel = _first_isv_level(identity.levels, qe.isvsvn)
        if why:
            problems.append(why)
        elif qlevel is None:
            problems.append(f"QE ISVSVN {qe.isvsvn} is below every level of the QE identity")
        else:
            qe_status = qlevel.status
            advisories += qlevel.advisory_ids
            status = converge(status, qe_status)
    if problems:
        return TcbEvaluation(
            None,
            tuple(sorted(set(advisories))),
            level.status,
            module_status,
            qe_status,
            tuple(problems),
            level.tcb_date,
        )
    return TcbEvaluation(
        status,
        tuple(sorted(set(advisories))),
        level.status,
        module_status,
        qe_status,
        (),
        level.tcb_date,
    )


# --- dcap-qvl collateral JSON ------------------------------------------------------------


def collateral_from_dcap_qvl_json(data: bytes | str) -> dict[str, bytes]:
    """Convert dcap-qvl's ``QuoteCollateralV3`` JSON into cocopart's collateral dict.

    Keys produced: ``tcb_info``, ``qe_identity`` (PCS response bodies), ``tcb_info_issuer_chain``,
    ``qe_identity_issuer_chain``, ``pck_crl_issuer_chain`` (PEM), ``root_crl``, ``pck_crl``
    (DER). The signed ``tcb_info`` / ``qe_identity`` strings are kept byte for byte.
    """
    try:
        d = json.loads(data)
        out = {
            "tcb_info": pcs_body(
                "tcbInfo", d["tcb_info"].encode(), bytes.fromhex(d["tcb_info_signature"])
            ),
            "qe_identity": pcs_body(
                "enclaveIdentity",
                d["qe_identity"].encode(),
                bytes.fromhex(d["qe_identity_signature"]),
            ),
            "tcb_info_issuer_chain": d["tcb_info_issuer_chain"].encode(),
            "qe_identity_issuer_chain": d["qe_identity_issuer_chain"].encode(),
            "root_crl": bytes.fromhex(d["root_ca_crl"]),
            "pck_crl": bytes.fromhex(d["pck_crl"]),
        }
        if d.get("pck_crl_issuer_chain"):
            out["pck_crl_issuer_chain"] = d["pck_crl_issuer_chain"].encode()
        return out
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CollateralError(
            f"not a dcap-qvl QuoteCollateralV3 JSON: {type(exc).__name__}: {exc}"
        ) from None


def collateral_to_dcap_qvl_json(c: dict[str, bytes]) -> str:
    """The inverse of :func:`collateral_from_dcap_qvl_json` (for cross-checks with dcap-qvl).

    Needs every key that function produces; the PEM chains must be ASCII.
    """
    tcb = SignedJson.parse(c["tcb_info"], "tcbInfo")
    qe = SignedJson.parse(c["qe_identity"], "enclaveIdentity")
    return json.dumps(
        {
            "pck_crl_issuer_chain": c.get("pck_crl_issuer_chain", b"").decode(),
            "root_ca_crl": c["root_crl"].hex(),
            "pck_crl": c["pck_crl"].hex(),
            "tcb_info_issuer_chain": c["tcb_info_issuer_chain"].decode(),
            "tcb_info": tcb.raw_value.decode(),
            "tcb_info_signature": tcb.signature.hex(),
            "qe_identity_issuer_chain": c.get(
                "qe_identity_issuer_chain", c["tcb_info_issuer_chain"]
            ).decode(),
            "qe_identity": qe.raw_value.decode(),
            "qe_identity_signature": qe.signature.hex(),
        }
    )


def signing_key(chain: list[x509.Certificate]) -> ec.EllipticCurvePublicKey:
    """The TCB Signing key: the leaf of an issuer chain."""
    key = chain[0].public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CollateralError("the TCB signing certificate does not hold an EC key")
    return key
