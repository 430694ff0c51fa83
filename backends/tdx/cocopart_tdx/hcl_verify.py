"""Verify an Azure TDX HCL report: a TDREPORT plus the vTPM's runtime claims.

An Azure TDX confidential VM's vTPM hands out an HCL report (:mod:`cocopart.attest.hcl`)
whose hardware report is a TDREPORT; the TDREPORT's REPORTDATA is SHA-256 of the runtime
claims (the vTPM keys, the VM configuration), zero-padded. What can be verified:

* ``tdx.hcl.parse`` — the envelope, and that it holds a TDX report (type 4);
* ``tdx.hcl.runtime_data`` — REPORTDATA binds the runtime claims;
* the TDREPORT's structure and its two SHA-384 hashes (as for a plain TDREPORT).

What cannot: the TDREPORT's MAC is keyed by the CPU and only the platform that made it can
check it (tdx.md §7.1), so an HCL report alone is **unauthenticated** (``tdx.tdreport.mac``
fails and says so). Azure turns the TDREPORT into a TD quote (the quoting enclave checks the
MAC before it signs; trustee ``az-tdx-vtpm`` verifies exactly this pair). Give that quote as
``evidence.collateral["td_quote"]`` (CLI: ``--collateral td_quote=QUOTE``) with the quote's
own collateral: the quote is verified completely, ``tdx.hcl.quote_matches`` checks that its
body is the TDREPORT's fields (a quote body is copied unchanged from the TDREPORT it was made
from, tdx.md §7.3), and the MAC check then passes on the quoting enclave's word. The claims
are the quote's (TCB status included), with the runtime claims in
``Claims.extra["runtime_claims"]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cocopart.spi import Check, Evidence, EvidenceError, HclReport, TrustStore, VendorResult
from cocopart_tdx.quote import QuoteLayout, TdQuoteBody
from cocopart_tdx.tdreport import TDREPORT_SIZE, TdReport

HCL_REPORT_TYPE_TDX = 4
REPORTDATA_OFFSET = 128
QUOTE_COLLATERAL = "td_quote"
#: The quote checks that make it vouch for its body: signed by an attestation key that a QE
#: certified, under a PCK chain to a trusted root (TCB status and TD attributes are judged by
#: their own checks).
AUTHENTICITY = frozenset(
    {
        "tdx.quote.parse",
        "tdx.quote.signature",
        "tdx.qe_report.binding",
        "tdx.pck.chain",
        "tdx.pck.root_pinned",
        "tdx.qe_report.signature",
    }
)


class _Verifier(Protocol):
    def verify(self, evidence: Evidence, trust: TrustStore, now: datetime) -> VendorResult: ...


def _quote_matches(quote_raw: bytes, tdreport: bytes) -> Check:
    name = "tdx.hcl.quote_matches"
    try:
        body = QuoteLayout.parse(quote_raw).body
        report = TdReport.from_bytes(tdreport, strict=False)
    except EvidenceError as exc:
        return Check(name=name, ok=False, detail=f"cannot compare: {exc}")
    want = TdQuoteBody.from_tdreport(report, td15=body.is_td15)
    if body == want:
        return Check(
            name=name,
            ok=True,
            detail="the quote's body is this TDREPORT's fields "
            "(measurements, attributes, REPORTDATA, TEE TCB)",
        )
    differ = [
        field
        for field in (
            "mrtd",
            "rtmrs",
            "report_data",
            "td_attributes",
            "xfam",
            "mrconfigid",
            "mrowner",
            "mrownerconfig",
            "mrseam",
            "tee_tcb_svn",
            "mrsignerseam",
            "seam_attributes",
        )
        if getattr(body, field) != getattr(want, field)
    ]
    return Check(
        name=name,
        ok=False,
        detail="the quote was not made from this TDREPORT: "
        + ", ".join(differ or ["TDX 1.5 fields"])
        + " differ",
    )


def verify_hcl(
    verifier: _Verifier, evidence: Evidence, trust: TrustStore, now: datetime
) -> VendorResult:
    """Verify an Azure TDX HCL report (and its TD quote when one is given)."""
    try:
        hcl = HclReport.parse(evidence.raw)
        if hcl.report_type != HCL_REPORT_TYPE_TDX:
            raise EvidenceError(
                f"the Azure HCL report holds hardware report type "
                f"{hcl.report_type}, not {HCL_REPORT_TYPE_TDX} (TDX)"
            )
    except EvidenceError as exc:
        return VendorResult(
            claims=None, checks=[Check(name="tdx.hcl.parse", ok=False, detail=str(exc))]
        )
    tdreport = hcl.hardware_report(TDREPORT_SIZE)
    checks = [
        Check(
            name="tdx.hcl.parse",
            ok=True,
            detail=f"Azure HCL report v{hcl.version} "
            f"holding a TDREPORT, {len(hcl.variable_data)} bytes of runtime data",
        )
    ]
    problem = hcl.binding_problem(tdreport[REPORTDATA_OFFSET : REPORTDATA_OFFSET + 64])
    checks.append(
        Check(
            name="tdx.hcl.runtime_data",
            ok=problem is None,
            detail=problem or f"REPORTDATA = {hcl.hash_name}(runtime data), zero-padded",
        )
    )
    inner = evidence.model_copy(update={"format": "tdreport", "raw": tdreport})
    quote_raw = evidence.collateral.get(QUOTE_COLLATERAL)
    if quote_raw is None:
        result = verifier.verify(inner, trust, now)
        checks += [
            c
            if c.name != "tdx.tdreport.mac"
            else Check(
                name=c.name,
                ok=False,
                detail="the TDREPORT inside an Azure HCL report is MACed "
                "by a CPU key that only its own platform can check, so this evidence is "
                "unauthenticated on its own; give the TD quote Azure made from it "
                f"(collateral '{QUOTE_COLLATERAL}', CLI --collateral {QUOTE_COLLATERAL}=QUOTE) "
                "to verify it",
            )
            for c in result.checks
        ]
        claims = result.claims
    else:
        collateral = {k: v for k, v in evidence.collateral.items() if k != QUOTE_COLLATERAL}
        quoted = evidence.model_copy(
            update={"format": "tdx-quote", "raw": quote_raw, "collateral": collateral}
        )
        result = verifier.verify(quoted, trust, now)
        report_checks = verifier.verify(inner, trust, now).checks
        match = _quote_matches(quote_raw, tdreport)
        quote_ok = all(c.ok for c in result.checks if c.name in AUTHENTICITY)
        for c in report_checks:
            if c.name == "tdx.tdreport.mac":
                ok = match.ok and quote_ok
                c = Check(
                    name=c.name,
                    ok=ok,
                    detail=(
                        "checked by the quoting enclave: the quote made from this TDREPORT verifies"
                        if ok
                        else "the quote does not vouch for this TDREPORT (see "
                        "tdx.hcl.quote_matches and the quote's checks)"
                    ),
                )
            if c.name.startswith("tdx.tdreport."):
                checks.append(c)
        checks += [*result.checks, match]
        claims = result.claims
    if claims is not None:
        extra = {**claims.extra, "azure_hcl": True, "runtime_claims": hcl.runtime_claims()}
        claims = claims.model_copy(update={"format": evidence.format, "extra": extra})
    return VendorResult(claims=claims, checks=checks)
