"""Host-side AMD-SP (PSP) platform firmware for SEV / SEV-ES / SEV-SNP, and the Linux host
driver sequence that drives it.

Three layers, all writing into one ordered :class:`StepLog` (pydantic, printable by a CLI),
each in its own module (this one re-exports them all, so ``from cocopart_sev_snp.psp import
...`` keeps working): :mod:`~cocopart_sev_snp.psp_firmware`,
:mod:`~cocopart_sev_snp.psp_driver` and :mod:`~cocopart_sev_snp.psp_presets`.

* :class:`AmdSp` — the firmware state machine. Legacy SEV platform state UNINIT / INIT /
  WORKING, SNP platform state UNINIT / INIT, firmware API version, per-type guest counts, the
  ASID cache state (:class:`~cocopart_sev_snp.asids.AsidCache`). Every command is a method
  that returns a :class:`FirmwareResult`: status name + code + a sentence a person
  understands + the source of the rule.
* :class:`HostDriver` — ``ccp`` (sev-dev.c, sev-fw.c) and ``kvm_amd`` (svm/sev.c) on the
  host: probe-time init that always tries SNP_INIT(_EX) first, then legacy INIT/INIT_EX +
  DF_FLUSH; the ``psp_init_on_probe`` and ``ciphertext_hiding_asids`` module parameters; KVM's
  ASID allocator; lazy SEV INIT at the first legacy guest; firmware hot-load and commit;
  FACTORY_RESET and shutdown as the ioctl / module exit do them.
* Presets — the configurations of the seed-002 thread as runnable functions returning the
  configured host plus its log (:data:`PRESETS`, :func:`run_preset`).

Sources (tags used in the ``source`` field of every result):

* ``sev-snp.md §8`` — /work/shared/reference/sev-snp.md section 8.
* ``ASPFW`` — amd/AMD-ASPFW 3ca6650 "Initial Publication", Genoa SEV FW 1.55.25:
  ``fw/psp_bl_uapps/sev_uapp/src/{sev_mcmd.c, sev_plat.c, sev_guest.c, sev_dispatch.c}``.
* ``LX psp-sev.h`` — torvalds/linux include/linux/psp-sev.h (command ids, state enum) and
  include/uapi/linux/psp-sev.h (status codes, incl. the 0x19..0x27 explicit-value fix).
* ``LX sev-dev.c`` — torvalds/linux drivers/crypto/ccp/sev-dev.c (__sev_snp_init_locked,
  __sev_platform_init_locked, _sev_platform_init_locked, sev_ioctl_do_reset,
  __sev_snp_shutdown_locked).
* ``LX sev-fw.c`` — Dionna Glaze, "[PATCH v5] crypto: ccp: SNP_DOWNLOAD_FIRMWARE_EX"
  series, 2024-11 (merge status unconfirmed, sev-snp.md §9.9).
* ``LX kvm sev.c`` — arch/x86/kvm/svm/sev.c sev_hardware_setup / sev_asid_new and Ashish
  Kalra's CipherTextHiding series (2025).
* ``seed 002`` — "Re: [PATCH v2 3/3] x86/sev: Add SEV-SNP CipherTextHiding support",
  Ashish Kalra, 2024-12-07, quoting Sean Christopherson and Tom Lendacky (2024-11-21/12-06).

Results whose rule is a modelling decision rather than a confirmed fact carry
``confirmed=False``; the module-level list :data:`UNCONFIRMED` names each one.
"""

from __future__ import annotations

from cocopart_sev_snp.psp_driver import (
    UPLOAD_ERRORS,
    GuestLaunch,
    HostDriver,
    ModuleParams,
    ProbeReport,
)
from cocopart_sev_snp.psp_firmware import (
    SNP_INIT_EX_API,
    SNP_MIN_API,
    SRC_ASPFW,
    SRC_DEV,
    SRC_FW,
    SRC_HDR,
    SRC_KVM,
    SRC_MODEL,
    SRC_REF,
    SRC_SEED,
    SRC_SEED_TL,
    UNCONFIRMED,
    Actor,
    AmdSp,
    Cmd,
    FirmwareImage,
    FirmwareResult,
    FwStatus,
    FwVersion,
    Guest,
    Hardware,
    LogEntry,
    PlatformSnapshot,
    SevState,
    SnpState,
    StepLog,
)
from cocopart_sev_snp.psp_presets import (
    HOTLOAD_IMAGE,
    PRESET_HW,
    PRESETS,
    PresetReport,
    PresetRun,
    preset_ciphertext_hiding,
    preset_firmware_hotload,
    preset_lazy_sev_init,
    preset_legacy_on_snp_host,
    preset_no_snp_host,
    preset_snp_only,
    preset_snp_plus_sev,
    run_preset,
)

__all__ = [
    "HOTLOAD_IMAGE",
    "PRESETS",
    "PRESET_HW",
    "SNP_INIT_EX_API",
    "SNP_MIN_API",
    "SRC_ASPFW",
    "SRC_DEV",
    "SRC_FW",
    "SRC_HDR",
    "SRC_KVM",
    "SRC_MODEL",
    "SRC_REF",
    "SRC_SEED",
    "SRC_SEED_TL",
    "UNCONFIRMED",
    "UPLOAD_ERRORS",
    "Actor",
    "AmdSp",
    "Cmd",
    "FirmwareImage",
    "FirmwareResult",
    "FwStatus",
    "FwVersion",
    "Guest",
    "GuestLaunch",
    "Hardware",
    "HostDriver",
    "LogEntry",
    "ModuleParams",
    "PlatformSnapshot",
    "PresetReport",
    "PresetRun",
    "ProbeReport",
    "SevState",
    "SnpState",
    "StepLog",
    "preset_ciphertext_hiding",
    "preset_firmware_hotload",
    "preset_lazy_sev_init",
    "preset_legacy_on_snp_host",
    "preset_no_snp_host",
    "preset_snp_only",
    "preset_snp_plus_sev",
    "run_preset",
]
