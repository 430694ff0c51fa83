"""L1's attestation and measurement: hardware report = TDG.MR.REPORT + TDVMCALL<GetQuote>;
measurement = TDG.MR.RTMR.EXTEND with the UEFI CC PCR -> RTMR mapping (:func:`pcr_to_rtmr`)."""

from __future__ import annotations

from cocopart.spi import HardwareEvidence, ResultCode
from cocopart_tdx import vmcall as vmc
from cocopart_tdx.l1_core import L1Core
from cocopart_tdx.l1_errors import L1Error
from cocopart_tdx.l1_tally import Tally, vm_name
from cocopart_tdx.status import status_name


def pcr_to_rtmr(pcr: int) -> int:
    """UEFI confidential-computing mapping of TPM PCRs to TDX RTMRs (UEFI CC measurement,
    TDVF): PCR 1 and 7 -> RTMR0, PCR 2-6 -> RTMR1, PCR 8-15 -> RTMR2, every other PCR
    (0, 16-23) -> RTMR3 — one rule, our choice for the PCRs UEFI maps to MRTD or nowhere."""
    if pcr in (1, 7):
        return 0
    if 2 <= pcr <= 6:
        return 1
    if 8 <= pcr <= 15:
        return 2
    return 3


class L1Attestation(L1Core):
    """TDG.MR.REPORT + GetQuote, and RTMR extension."""

    # -- attestation and measurement -----------------------------------------------------------
    def hardware_report(self, report_data: bytes, on_behalf_of: str) -> HardwareEvidence | int:
        target = vm_name(self.vm_of(on_behalf_of)) if on_behalf_of in self.workloads else "L1"
        tally = Tally()
        self.memory.write(self.region.reportdata, report_data.ljust(64, b"\0")[:64])
        r = self.module.mr_report(self.region.tdreport, self.region.reportdata, 0)
        tally.record("l1", "TDG.MR.REPORT", target, "ok" if r.ok else status_name(r.status))
        if not r.ok:
            self._flush(tally)
            return self.fail(r.status, "TDG.MR.REPORT")
        tdreport = self.memory.read(self.region.tdreport, 1024)
        size = self.region.quote_buffer_size
        self.memory.write(
            self.region.quote_buffer, vmc.GetQuoteBuffer.request(tdreport).encode(size)
        )
        out = self.tdvmcall(
            vmc.get_quote_registers(self.region.quote_buffer | self.module.shared_bit, size),
            "GetQuote",
            tally,
        )
        self._flush(tally)
        buf = vmc.GetQuoteBuffer.decode(self.memory.read(self.region.quote_buffer, size))
        if out.get("r10") != vmc.TdvmcallStatus.SUCCESS or buf.status != vmc.GET_QUOTE_SUCCESS:
            self.last_error = L1Error(
                "GET_QUOTE",
                buf.status,
                f"TDVMCALL<GetQuote> failed: R10 {out.get('r10', 0):#x}, "
                f"buffer status {buf.status:#x}",
            )
            return ResultCode.INVALID_REQUEST
        return HardwareEvidence(raw=buf.data, format="tdx-quote")

    def extend_measurement(self, register: int, digest: bytes) -> int:
        rtmr = pcr_to_rtmr(register)
        self.memory.write(self.region.rtmr_data, digest[:48].ljust(48, b"\0"))
        r = self.module.rtmr_extend(self.region.rtmr_data, rtmr)
        self.trace.record(
            "l1", "TDG.MR.RTMR.EXTEND", f"RTMR{rtmr}", "ok" if r.ok else status_name(r.status)
        )
        if not r.ok:
            return self.fail(r.status, "TDG.MR.RTMR.EXTEND")
        return ResultCode.SUCCESS

    def extend_rtmr(self, index: int, digest: bytes) -> int:
        """L1 extending an RTMR by index directly (an ExtendMeasurement from L1)."""
        self.memory.write(self.region.rtmr_data, digest[:48].ljust(48, b"\0"))
        r = self.module.rtmr_extend(self.region.rtmr_data, index)
        self.trace.record(
            "l1", "TDG.MR.RTMR.EXTEND", f"RTMR{index}", "ok" if r.ok else status_name(r.status)
        )
        return r.status
