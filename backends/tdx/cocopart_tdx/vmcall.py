"""TDG.VP.VMCALL (TDCALL leaf 0) ABI: GPR selection, sub-functions, TDVMCALL status,
MapGPA with RETRY, the GetQuote buffer — and how cocopart carries its L2 -> L1 protocol in a
vendor-specific TDVMCALL (tdx.md §1.2, §4.3; MOD tdg_vp_vmcall.c, LNX shared/tdx.h, tdx.c,
tdx-guest driver).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from cocopart.spi import Registers
from cocopart_tdx.status import Operand, TdxStatus, with_details

U64 = (1 << 64) - 1
GPR_BIT = {
    "rax": 0,
    "rcx": 1,
    "rdx": 2,
    "rbx": 3,
    "rsp": 4,
    "rbp": 5,
    "rsi": 6,
    "rdi": 7,
    **{f"r{i}": i for i in range(8, 16)},
}
#: RCX bits that must be 0: RAX, RCX, RSP (and RBP with CONFIG_FLAGS.NO_RBP_MOD), 63:32
FORBIDDEN_SELECT = (1 << 0) | (1 << 1) | (1 << 4)
RBP_SELECT = 1 << 5


class TdvmcallStatus(IntEnum):
    """TDVMCALL status in R10 (tdx.md §1.2; LNX shared/tdx.h, OVMM)."""

    SUCCESS = 0
    RETRY = 1
    INVALID_OPERAND = 0x8000000000000000
    GPA_INUSE = 0x8000000000000001
    ALIGN_ERROR = 0x8000000000000002
    SUBFUNC_UNSUPPORTED = 0x8000000000000003


class SubFunction(IntEnum):
    """Standard GHCI sub-functions in R11 when R10 = 0 (tdx.md §1.2)."""

    CPUID = 10
    HLT = 12
    IO = 30
    RDMSR = 31
    WRMSR = 32
    REQUEST_MMIO = 48
    WBINVD = 54
    PCONFIG = 65
    GET_TD_VM_CALL_INFO = 0x10000
    MAP_GPA = 0x10001
    GET_QUOTE = 0x10002
    REPORT_FATAL_ERROR = 0x10003
    SETUP_EVENT_NOTIFY_INTERRUPT = 0x10004
    SERVICE = 0x10005


def gpr_select(*names: str) -> int:
    """RCX bits 15:0 selecting the GPRs passed to and from the host."""
    out = 0
    for n in names:
        out |= 1 << GPR_BIT[n]
    return out


def check_select(rcx: int, no_rbp_mod: bool = False) -> int | None:
    """RCX of TDG.VP.VMCALL: 63:32 zero; RAX, RCX, RSP never selected; RBP not when
    NO_RBP_MOD -> OPERAND_INVALID(RCX) (MOD tdg_vp_vmcall.c)."""
    bad = FORBIDDEN_SELECT | (RBP_SELECT if no_rbp_mod else 0)
    if rcx >> 32 or rcx & bad:
        return with_details(TdxStatus.OPERAND_INVALID, Operand.RCX)
    return None


def host_view(regs: dict[str, int], rcx: int, vm_index: int) -> dict[str, int]:
    """What the host sees: the selected GPRs (others zeroed) and RCX = {gpr_select,
    xmm_select, VM index in bits 33:32} (tdx.md §1.2, MOD td_exit_qualification_t)."""
    sel = rcx & 0xFFFF
    out = {r: (v if sel >> GPR_BIT[r] & 1 else 0) for r, v in regs.items() if r in GPR_BIT}
    out["rcx"] = (rcx & 0xFFFF_FFFF) | ((vm_index & 3) << 32)
    return out


# -- MapGPA ---------------------------------------------------------------------------------
#: Linux retries a MapGPA that answers RETRY without progress at most 3 times (tdx.md §4.3).
MAP_GPA_MAX_RETRIES_WITHOUT_PROGRESS = 3
MAP_GPA_SELECT = gpr_select("r10", "r11", "r12", "r13")


def map_gpa_registers(gpa: int, size: int) -> dict[str, int]:
    """TDVMCALL<MapGPA>: R12 = start GPA (shared bit set -> to shared), R13 = size."""
    return {
        "rax": 0,
        "rcx": MAP_GPA_SELECT,
        "r10": 0,
        "r11": SubFunction.MAP_GPA,
        "r12": gpa,
        "r13": size,
    }


# -- GetQuote -------------------------------------------------------------------------------
GET_QUOTE_VERSION = 1
GET_QUOTE_SUCCESS = 0
GET_QUOTE_IN_FLIGHT = 0xFFFF_FFFF_FFFF_FFFF
GET_QUOTE_ERROR = 0x8000_0000_0000_0000
GET_QUOTE_SERVICE_UNAVAILABLE = 0x8000_0000_0000_0001
_GQ = struct.Struct("<QQII")
GET_QUOTE_HEADER = _GQ.size  # 24


@dataclass
class GetQuoteBuffer:
    """The shared GetQuote buffer: u64 version, u64 status, u32 in_len, u32 out_len, data
    (TDREPORT in, quote out) (tdx.md §1.2, LNX tdx-guest driver)."""

    version: int
    status: int
    in_len: int
    out_len: int
    data: bytes

    def encode(self, size: int) -> bytes:
        body = _GQ.pack(self.version, self.status, self.in_len, self.out_len) + self.data
        if len(body) > size:
            raise ValueError(f"GetQuote buffer needs {len(body)} bytes, has {size}")
        return body.ljust(size, b"\0")

    @classmethod
    def decode(cls, raw: bytes) -> GetQuoteBuffer:
        version, status, in_len, out_len = _GQ.unpack_from(raw)
        n = out_len if status == GET_QUOTE_SUCCESS and out_len else in_len
        return cls(
            version, status, in_len, out_len, bytes(raw[GET_QUOTE_HEADER : GET_QUOTE_HEADER + n])
        )

    @classmethod
    def request(cls, tdreport: bytes) -> GetQuoteBuffer:
        return cls(GET_QUOTE_VERSION, GET_QUOTE_IN_FLIGHT, len(tdreport), 0, tdreport)


def get_quote_registers(shared_gpa: int, size: int) -> dict[str, int]:
    """TDVMCALL<GetQuote>: R12 = shared GPA of the buffer, R13 = its size (4K multiple)."""
    return {
        "rax": 0,
        "rcx": MAP_GPA_SELECT,
        "r10": 0,
        "r11": SubFunction.GET_QUOTE,
        "r12": shared_gpa,
        "r13": size,
    }


# -- cocopart's L2 -> L1 protocol over TDG.VP.VMCALL ----------------------------------------
#: R10 != 0 selects a vendor-specific TDVMCALL (tdx.md §1.2; Hyper-V uses R10 for its
#: hypercall control). cocopart's marker: ASCII "COCOPART".
PROTOCOL_R10 = int.from_bytes(b"COCOPART", "big")
PROTOCOL_SELECT = gpr_select("r10", "r11", "r12", "r13", "r14")


def encode_protocol_call(regs: Registers) -> dict[str, int]:
    """The L2's registers for one protocol call: RAX = 0 (leaf TDG.VP.VMCALL), RCX = GPR
    select, R10 = marker, R11 = protocol RAX, R12..R14 = RCX, RDX, R8."""
    return {
        "rax": 0,
        "rcx": PROTOCOL_SELECT,
        "r10": PROTOCOL_R10,
        "r11": regs.rax,
        "r12": regs.rcx,
        "r13": regs.rdx,
        "r14": regs.r8,
    }


def is_protocol_call(gprs: dict[str, int]) -> bool:
    return gprs.get("rax", 0) & 0xFFFF == 0 and gprs.get("r10") == PROTOCOL_R10


def decode_protocol_call(gprs: dict[str, int]) -> Registers:
    return Registers(gprs["r11"], gprs["r12"], gprs["r13"], gprs["r14"])


def encode_protocol_result(gprs: dict[str, int], regs: Registers) -> None:
    """L1's answer in the L2's registers: RAX = 0 (TDCALL done), R10 = TDVMCALL SUCCESS,
    R11 = result code, R12..R14 = RCX, RDX, R8 out."""
    gprs.update(
        rax=0, r10=TdvmcallStatus.SUCCESS, r11=regs.rax, r12=regs.rcx, r13=regs.rdx, r14=regs.r8
    )


def decode_protocol_result(gprs: dict[str, int], regs: Registers) -> None:
    regs.rax, regs.rcx, regs.rdx, regs.r8 = gprs["r11"], gprs["r12"], gprs["r13"], gprs["r14"]


# The same call carried by the VMCALL instruction (exit 18), used when ENABLE_TDVMCALL sends
# the L2's TDG.VP.VMCALL to the host: RAX, RCX, RDX, R8 as the protocol defines them.
def encode_vmcall_instruction(regs: Registers) -> dict[str, int]:
    return {"rax": regs.rax, "rcx": regs.rcx, "rdx": regs.rdx, "r8": regs.r8}


def decode_vmcall_instruction(gprs: dict[str, int]) -> Registers:
    return Registers(gprs["rax"], gprs["rcx"], gprs["rdx"], gprs["r8"])


def encode_vmcall_result(gprs: dict[str, int], regs: Registers) -> None:
    gprs.update(rax=regs.rax, rcx=regs.rcx, rdx=regs.rdx, r8=regs.r8)
