"""TDX metadata: field-id layout, the fields L1 uses to configure its L2 VMs, and the rules of
TDG.VP.RD/WR (leaves 9/10) and TDG.VM.RD/WR (leaves 7/8) (tdx.md §2.2, MOD
``md_field_id_t``, tdvps/tdr_tdcs/td_l2_vmcs_fields_lookup, tdg_vp_rd_wr.c, tdg_vm_rd_wr.c).

Field id (64 bits): 23:0 field code, 33:32 element size (0 = 8 bits .. 3 = 64 bits), 37:34
last element, 46:38 last field, 50 inc size, 51 write-mask valid, 54:52 context (0 platform,
1 TD, 2 vCPU), 61:56 class, 63 non-architectural.

An L2 VMCS field of VM n is ``(class << 56) | (2 << 52) | (size << 32) | VMX encoding`` with
class 36 + 8·(n − 1) (36/44/52). Write rule (modelled as one rule, **unconfirmed** beyond
tdx.md): the bits written are ``R9 & write_mask``; asking to set, under R9, a bit the field's
L1 write mask does not allow is METADATA_FIELD_VALUE_NOT_VALID (:data:`STRICT_WRITE_MASK`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from cocopart_tdx.status import Operand, TdxStatus, with_details
from cocopart_tdx.tdreport import TD_ATTRIBUTE_BITS

U64 = (1 << 64) - 1
CONTEXT_PLATFORM, CONTEXT_TD, CONTEXT_VCPU = 0, 1, 2
SIZE_BITS = {0: 8, 1: 16, 2: 32, 3: 64}
#: tdx.md §2.2: L2 VMCS classes for VM 1/2/3 (= 36 + 8·(vm − 1)); MSR bitmaps 37/45/53,
#: shadow MSR bitmaps 38/46/54.
L2_VMCS_CLASS_BASE = 36
L2_CLASS_STRIDE = 8
MANAGEMENT_CLASS = 32
#: Asking to write a bit outside a field's L1 write mask fails (rather than being dropped).
STRICT_WRITE_MASK = True


@dataclass(frozen=True)
class FieldId:
    """A decoded metadata field identifier (MOD ``md_field_id_t``)."""

    code: int
    size: int
    context: int
    cls: int
    last_element: int = 0
    last_field: int = 0
    inc_size: int = 0
    write_mask_valid: int = 0
    non_arch: bool = False

    def encode(self) -> int:
        return (
            (self.code & 0xFFFFFF)
            | (self.size & 3) << 32
            | (self.last_element & 0xF) << 34
            | (self.last_field & 0x1FF) << 38
            | (self.inc_size & 1) << 50
            | (self.write_mask_valid & 1) << 51
            | (self.context & 7) << 52
            | (self.cls & 0x3F) << 56
            | (int(self.non_arch) << 63)
        )

    @classmethod
    def decode(cls, value: int) -> FieldId:
        return cls(
            code=value & 0xFFFFFF,
            size=(value >> 32) & 3,
            last_element=(value >> 34) & 0xF,
            last_field=(value >> 38) & 0x1FF,
            inc_size=(value >> 50) & 1,
            write_mask_valid=(value >> 51) & 1,
            context=(value >> 52) & 7,
            cls=(value >> 56) & 0x3F,
            non_arch=bool(value >> 63 & 1),
        )


# -- L2 VMCS fields -------------------------------------------------------------------------
def vmx_size(encoding: int) -> int:
    """Metadata element size of a VMX field from its encoding width bits 14:13
    (0 16-bit, 1 64-bit, 2 32-bit, 3 natural width = 64 bits here)."""
    return {0: 1, 1: 3, 2: 2, 3: 3}[(encoding >> 13) & 3]


def l2_vmcs_class(vm: int) -> int:
    if not 1 <= vm <= 3:
        raise ValueError(f"L2 VM index {vm} is not 1..3")
    return L2_VMCS_CLASS_BASE + L2_CLASS_STRIDE * (vm - 1)


@lru_cache(maxsize=1024)
def l2_vmcs_field(vm: int, encoding: int) -> int:
    """Field id of VMX field ``encoding`` in VM ``vm``'s L2 VMCS (tdx.md §2.2)."""
    return (l2_vmcs_class(vm) << 56) | (CONTEXT_VCPU << 52) | (vmx_size(encoding) << 32) | encoding


@dataclass(frozen=True)
class FieldSpec:
    """What L1 may do with a field: read it, and which bits it may write."""

    name: str
    readable: bool
    wr_mask: int
    default: int = 0


FULL = U64
# VMX encodings (Intel SDM Vol. 3 App. B) with L1 access per MOD td_l2_vmcs_fields_lookup.c as
# summarised in tdx.md §2.2. Natural-width/64-bit fields are 64-bit elements.
_SEG = ("ES", "CS", "SS", "DS", "FS", "GS", "LDTR", "TR")
L2_VMCS_FIELDS: dict[int, FieldSpec] = {}
for _i, _s in enumerate(_SEG):
    L2_VMCS_FIELDS[0x0800 + 2 * _i] = FieldSpec(f"GUEST_{_s}_SELECTOR", True, 0xFFFF)
    L2_VMCS_FIELDS[0x4800 + 2 * _i] = FieldSpec(f"GUEST_{_s}_LIMIT", True, 0xFFFF_FFFF)
    L2_VMCS_FIELDS[0x4814 + 2 * _i] = FieldSpec(f"GUEST_{_s}_AR_BYTES", True, 0xFFFF_FFFF)
    L2_VMCS_FIELDS[0x6806 + 2 * _i] = FieldSpec(f"GUEST_{_s}_BASE", True, FULL)
L2_VMCS_FIELDS.update(
    {
        0x0810: FieldSpec("GUEST_INTR_STATUS", True, 0xFFFF),
        0x4810: FieldSpec("GUEST_GDTR_LIMIT", True, 0xFFFF_FFFF),
        0x4812: FieldSpec("GUEST_IDTR_LIMIT", True, 0xFFFF_FFFF),
        0x4824: FieldSpec("GUEST_INTERRUPTIBILITY_INFO", True, 0xFFFF_FFFF),
        0x4826: FieldSpec("GUEST_ACTIVITY_STATE", True, 0),
        0x482A: FieldSpec("GUEST_SYSENTER_CS", True, 0xFFFF_FFFF),
        0x6800: FieldSpec("GUEST_CR0", True, 0x8005001F, default=0x21),  # PE|NE (OVMM asserts)
        0x6802: FieldSpec("GUEST_CR3", True, FULL),
        0x6804: FieldSpec("GUEST_CR4", True, 0x03FF1FBF),
        0x6816: FieldSpec("GUEST_GDTR_BASE", True, FULL),
        0x6818: FieldSpec("GUEST_IDTR_BASE", True, FULL),
        0x681A: FieldSpec("GUEST_DR7", True, FULL),
        0x681C: FieldSpec("GUEST_RSP", True, FULL),
        0x681E: FieldSpec("GUEST_RIP", True, FULL),
        0x6820: FieldSpec("GUEST_RFLAGS", True, FULL, default=0x2),
        0x6822: FieldSpec("GUEST_PENDING_DBG_EXCEPTIONS", True, FULL),
        0x6824: FieldSpec("GUEST_SYSENTER_ESP", True, FULL),
        0x6826: FieldSpec("GUEST_SYSENTER_EIP", True, FULL),
        0x6828: FieldSpec("GUEST_S_CET", True, FULL),
        0x682A: FieldSpec("GUEST_SSP", True, FULL),
        0x2804: FieldSpec("GUEST_IA32_PAT", True, FULL, default=0x0007040600070406),
        0x2806: FieldSpec("GUEST_IA32_EFER", True, 0x501),
        0x2808: FieldSpec("GUEST_IA32_PERF_GLOBAL_CTRL", True, FULL),
        0x2012: FieldSpec("VIRTUAL_APIC_PAGE_ADDR", True, 0xFFFF_FFFF_FFFF_F000),
        0x4000: FieldSpec("PIN_BASED_VM_EXEC_CONTROL", True, 0),
        # L1 may write bits 1-3 only: bit 4, IPI virtualization, is not offered for an L2 (MOD
        # td_l2_vmcs_fields_lookup.c, tertiary controls, l1_vmm_wr_mask 0xE)
        0x2034: FieldSpec("TERTIARY_PROC_BASED_VM_EXEC_CONTROL", True, 0xE),
        0x4004: FieldSpec("EXCEPTION_BITMAP", True, 0xFFFF_FFFF),
        0x400C: FieldSpec("VM_EXIT_CONTROLS", True, 0),
        0x4012: FieldSpec("VM_ENTRY_CONTROLS", True, 1 << 9),
        0x4016: FieldSpec("VM_ENTRY_INTR_INFO_FIELD", True, 0xFFFF_FFFF),
        0x4018: FieldSpec("VM_ENTRY_EXCEPTION_ERROR_CODE", True, 0xFFFF_FFFF),
        0x401A: FieldSpec("VM_ENTRY_INSTRUCTION_LEN", True, 0xFFFF_FFFF),
        0x401C: FieldSpec("TPR_THRESHOLD", True, 0xFFFF_FFFF),
        0x6000: FieldSpec("CR0_GUEST_HOST_MASK", True, FULL),
        0x6002: FieldSpec("CR4_GUEST_HOST_MASK", True, FULL),
        0x6004: FieldSpec("CR0_READ_SHADOW", True, FULL),
        0x6006: FieldSpec("CR4_READ_SHADOW", True, FULL),
        0x0000: FieldSpec("VIRTUAL_PROCESSOR_ID", False, 0),
        0x2010: FieldSpec("TSC_OFFSET", False, 0),
        0x201A: FieldSpec("EPT_POINTER", True, 0),
    }
)
VMCS_BY_NAME = {spec.name: enc for enc, spec in L2_VMCS_FIELDS.items()}
VIRTUAL_APIC_PAGE_ADDR = VMCS_BY_NAME["VIRTUAL_APIC_PAGE_ADDR"]

# -- per-VM management fields of the vCPU (class 32), element = VM index ------------------
L2_CTLS_BASE = 0xA020000300000050
L2_DEBUG_CTLS_BASE = 0xA020000300000054
TSC_DEADLINE_BASE = 0xA020000300000058
L2_ENTER_GUEST_STATE_GPA_BASE = 0xA020000300000100
L2_VAPIC_GPA_BASE = 0xA020000300000110
#: L2_CTLS bits (tdx.md §2.2)
L2_CTLS_ENABLE_SHARED_EPTP = 1 << 0
L2_CTLS_ENABLE_TDVMCALL = 1 << 1
L2_CTLS_ENABLE_EXTENDED_VE = 1 << 2
#: An L2 VM reaches shared memory only through the host's shared EPT, which its L2 VMCS uses
#: only while L2_CTLS[vm].ENABLE_SHARED_EPTP is set; with the bit clear the module points
#: the L2's shared EPTP at the TDCS zero page, so every L2 access to a shared GPA is an
#: EPT-violation TD exit the host cannot resolve (MOD 1.5 metadata_vp.c, L2_CTLS write
#: handling; OpenHCL sets it for its lower VTLs).
RULE_L2_SHARED_NEEDS_SHARED_EPTP = "an L2 uses shared memory only with L2_CTLS.ENABLE_SHARED_EPTP"
#: Write mask is 0x7 but 1.5.01 enumerates only bits 0-1 as allowed: bit 2 is refused.
L2_CTLS_WR_MASK = 0x7
L2_CTLS_ALLOWED = L2_CTLS_ENABLE_SHARED_EPTP | L2_CTLS_ENABLE_TDVMCALL


def l2_ctls(vm: int) -> int:
    return L2_CTLS_BASE + vm


def tsc_deadline(vm: int) -> int:
    return TSC_DEADLINE_BASE + vm


def management_fields(num_l2_vms: int) -> dict[int, FieldSpec]:
    """The per-VM vCPU management fields and L1's access (tdx.md §2.2 table)."""
    out: dict[int, FieldSpec] = {}
    for vm in range(1, num_l2_vms + 1):
        out[L2_CTLS_BASE + vm] = FieldSpec(f"L2_CTLS[{vm}]", True, L2_CTLS_WR_MASK)
        out[TSC_DEADLINE_BASE + vm] = FieldSpec(f"TSC_DEADLINE[{vm}]", True, FULL)
        out[L2_DEBUG_CTLS_BASE + vm] = FieldSpec(f"L2_DEBUG_CTLS[{vm}]", False, 0)
        out[L2_ENTER_GUEST_STATE_GPA_BASE + vm] = FieldSpec(
            f"L2_ENTER_GUEST_STATE_GPA[{vm}]", False, 0
        )
        out[L2_VAPIC_GPA_BASE + vm] = FieldSpec(f"L2_VAPIC_GPA[{vm}]", False, 0)
    return out


# -- TD-scope fields (TDG.VM.RD/WR) ---------------------------------------------------------
NUM_L2_VMS_FIELD = 0x9010000100000005  # tdx.md §2.1 (TDPSVSM, COCO)
CONFIG_FLAGS_FIELD = 0x1110000300000016  # tdx.md §7.2
TD_CTLS_FIELD = 0x1110000300000017
NOTIFY_ENABLES_FIELD = 0x9110000300000010
VM_CTLS_BASE = 0x9110000300000012  # host only
CONFIG_FLAG_GPAW = 1 << 0
CONFIG_FLAG_PAGE_RELEASE = 1 << 6  # tdx.md §2.1 newer CONFIG_FLAGS (OVMM)
TD_CTLS_WR_MASK = 0x1F | (1 << 63)
#: TD_CTLS bit 0 (tdx.md §7.2): an L1 access to a PENDING page is a TD exit, not a #VE.
TD_CTLS_PENDING_VE_DISABLE = 1 << 0
#: TD ATTRIBUTES bit 28 (tdx.md §7.2).
TD_ATTR_SEPT_VE_DISABLE = 1 << TD_ATTRIBUTE_BITS["sept_ve_disable"]


def initial_td_ctls(attributes: int) -> int:
    """TD_CTLS as TDH.MNG.INIT leaves it: PENDING_VE_DISABLE = ATTRIBUTES.SEPT_VE_DISABLE
    (MOD 1.5 src/vmm_dispatcher/api_calls/tdh_mng_init.c)."""
    return TD_CTLS_PENDING_VE_DISABLE if attributes & TD_ATTR_SEPT_VE_DISABLE else 0


def td_fields(num_l2_vms: int) -> dict[int, FieldSpec]:
    out = {
        NUM_L2_VMS_FIELD: FieldSpec("NUM_L2_VMS", True, 0),
        CONFIG_FLAGS_FIELD: FieldSpec("CONFIG_FLAGS", True, 0),
        TD_CTLS_FIELD: FieldSpec("TD_CTLS", True, TD_CTLS_WR_MASK),
        NOTIFY_ENABLES_FIELD: FieldSpec("NOTIFY_ENABLES", True, 0x1),
    }
    for vm in range(1, num_l2_vms + 1):
        out[VM_CTLS_BASE + vm] = FieldSpec(f"VM_CTLS[{vm}]", False, 0)
    return out


# -- read/write semantics -------------------------------------------------------------------
class MetadataError(Exception):
    """Carries the status a read or write fails with."""

    def __init__(self, status: int) -> None:
        super().__init__(f"{status:#x}")
        self.status = status


class VcpuMetadata:
    """The TDVPS metadata of one L1 vCPU as L1 sees it through TDG.VP.RD/WR."""

    def __init__(self, num_l2_vms: int) -> None:
        self.num_l2_vms = num_l2_vms
        self.management = management_fields(num_l2_vms)
        self.values: dict[int, int] = {}

    def spec(self, field_id: int) -> tuple[FieldSpec, int]:
        """The spec of a field id and the storage key; METADATA_FIELD_ID_INCORRECT if none."""
        fid = FieldId.decode(field_id)
        if fid.context != CONTEXT_VCPU:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_ID_INCORRECT))
        if field_id in self.management:
            return self.management[field_id], field_id
        rel = fid.cls - L2_VMCS_CLASS_BASE
        if rel >= 0 and rel % L2_CLASS_STRIDE == 0 and not fid.non_arch:
            vm = rel // L2_CLASS_STRIDE + 1
            spec = L2_VMCS_FIELDS.get(fid.code)
            if 1 <= vm <= self.num_l2_vms and spec is not None and fid.size == vmx_size(fid.code):
                return spec, field_id
        raise MetadataError(int(TdxStatus.METADATA_FIELD_ID_INCORRECT))

    def read(self, field_id: int) -> int:
        spec, key = self.spec(field_id)
        if not spec.readable:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_NOT_READABLE))
        return self.values.get(key, spec.default)

    def write(self, field_id: int, value: int, mask: int) -> int:
        """Masked write; returns the old value."""
        spec, key = self.spec(field_id)
        if spec.wr_mask == 0:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_NOT_WRITABLE))
        if STRICT_WRITE_MASK and value & mask & ~spec.wr_mask & U64:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_VALUE_NOT_VALID))
        if (
            key in self.management
            and spec.name.startswith("L2_CTLS")
            and value & mask & ~L2_CTLS_ALLOWED
        ):
            raise MetadataError(int(TdxStatus.METADATA_FIELD_VALUE_NOT_VALID))
        old = self.values.get(key, spec.default)
        eff = mask & spec.wr_mask
        self.values[key] = (old & ~eff & U64) | (value & eff)
        return old

    def set_internal(self, field_id: int, value: int) -> None:
        """A module-side update (fields L1 cannot write, e.g. L2_VAPIC_GPA)."""
        self.values[field_id] = value

    def get_internal(self, field_id: int, default: int = 0) -> int:
        return self.values.get(field_id, default)


class TdMetadata:
    """TD-scope metadata (TDCS) as TDG.VM.RD/WR see it."""

    def __init__(self, num_l2_vms: int, config_flags: int, td_ctls: int = 0) -> None:
        self.fields = td_fields(num_l2_vms)
        self.values: dict[int, int] = {
            NUM_L2_VMS_FIELD: num_l2_vms,
            CONFIG_FLAGS_FIELD: config_flags,
            TD_CTLS_FIELD: td_ctls,
        }

    def read(self, field_id: int) -> int:
        spec = self.fields.get(field_id)
        if spec is None:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_ID_INCORRECT))
        if not spec.readable:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_NOT_READABLE))
        return self.values.get(field_id, spec.default)

    def write(self, field_id: int, value: int, mask: int) -> int:
        spec = self.fields.get(field_id)
        if spec is None:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_ID_INCORRECT))
        if spec.wr_mask == 0:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_NOT_WRITABLE))
        if STRICT_WRITE_MASK and value & mask & ~spec.wr_mask & U64:
            raise MetadataError(int(TdxStatus.METADATA_FIELD_VALUE_NOT_VALID))
        old = self.values.get(field_id, spec.default)
        eff = mask & spec.wr_mask
        self.values[field_id] = (old & ~eff & U64) | (value & eff)
        return old


def vp_rcx_check(rcx: int) -> int | None:
    """TDG.VP.RD/WR: RCX must be 0 — only the current vCPU (tdx.md §1.1)."""
    return with_details(TdxStatus.OPERAND_INVALID, Operand.RCX) if rcx else None


def vm_rcx_check(rcx: int) -> int | None:
    """TDG.VM.RD/WR: RCX (VM index) must be 0 in 1.5.01 (tdx.md §1.1)."""
    return with_details(TdxStatus.OPERAND_INVALID, Operand.RCX) if rcx else None
