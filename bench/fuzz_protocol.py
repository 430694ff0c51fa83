"""Protocol fuzz of the privileged layer's dispatcher (issue 11).

Usage: ``python bench/fuzz_protocol.py [--calls 100000] [--seed 0] [--backend
sev-snp|tdx|both] [--segments N] [--layers 2|3] [--interrupt-mode restricted|alternate]
[--option KEY=VALUE ...] [--timeout 10]``. The documented long run is
``python bench/fuzz_protocol.py --calls 100000`` (10^5 calls per backend).

For each backend the calls are split over ``--segments`` fresh partitions (default: one per
2,000 calls), each set up from the seed unless the command line fixes it: 2 or 3 workload
layers (SNP: their VMPLs in any order), interrupt mode ``restricted`` or ``alternate`` (which
offers the APIC protocol) and the backend's options (SNP ``call_protocol``, ``host_page_size``; TDX ``module``,
``enable_tdvmcall``, ``host_mapping``). The memory map assigns each layer 8 MiB of RAM; the
rest of RAM is l1's pool and ends 12 KiB short of a 2 MiB boundary. Each layer validates
part of its RAM (and validates then rescinds some more) and gets canary bytes in its RAM,
calling area and scratch pages.

Each call goes through the real L2 -> L1 path (``p.machine.transport.call(layer, vcpu,
Registers.call(protocol, call, rcx, rdx, r8))``: SNP VMGEXIT, TDX L2 exit) from a random
workload layer and vCPU: protocol ids 0-5 and random u32, call ids 0-10 and random u32,
registers from random u64, small numbers, and GPAs of interesting pages (every layer's
calling areas, context and scratch pages, RAM of the caller and of the others, pool RAM, the
last page of RAM, the RAM end, the hole, the guest total, near 2**64), and buffers the caller
first writes into pages it may write itself (its calling area or scratch pages): random
bytes, mutated PVALIDATE lists, attestation requests, vTPM requests (TPM2_ReadPublic,
PCR_Read, PCR_Extend), CREATE_VCPU context pages.

After every call (:func:`check_call`): no exception escaped and no hang (a per-call
watchdog); the result code is a defined ``ResultCode`` or ``0x8000_1000`` + a hardware code;
a protocol not offered answers UNSUPPORTED_PROTOCOL and an unknown call UNSUPPORTED_CALL;
call_pending is 0 in the calling area of the call; the bytes of every page the call names or
the fuzz tracks that belongs to someone else than the caller (another workload or l1; l1's
free pool excepted) are unchanged unless its owner let the caller write it (TDX: other
layers' L2 state pages excepted, which L1 rewrites when it switches L2 VMs); the
``memory_view`` (state, every layer's access, owner) of every page the caller does not own
is unchanged; every layer still has its vCPU 0. At the end of a segment every layer, after
undoing through the protocol what it did to its own protocol pages, validates free pages of
its own RAM and attests with the library's operations (:func:`check_not_stuck`).

Prints calls/s, the generators used, a histogram of result codes, the successful calls and
the violations (each with its seed, segment, call index and the lines that replay the call);
exits 1 on any violation. ``tests/test_protocol_fuzz.py`` imports this module and runs a
bounded hypothesis-driven version in CI.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import random
import signal
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cocopart import Attest, CreateVcpu, GpaRange, Partition, RescindPages, ValidatePages
from cocopart.authority import POOL
from cocopart.backend import MemoryRun
from cocopart.memory import (
    REPORT_BUFFER_SIZE,
    SCRATCH_CERTS,
    SCRATCH_MANIFEST,
    SCRATCH_PAGES,
    SCRATCH_REPORT,
    SCRATCH_VTPM,
)
from cocopart.model import PAGE_2M, PAGE_4K
from cocopart.ops import Operation, OperationResult
from cocopart.protocol import attest as attest_codec
from cocopart.protocol import pvalidate as pv
from cocopart.protocol import vtpm as vtpm_codec
from cocopart.protocol.call import U64, CallOutcome, Registers
from cocopart.protocol.calling_area import BUFFER, CALL_PENDING
from cocopart.protocol.ids import (
    PROTOCOL_BASE,
    AttestCall,
    CoreCall,
    ProtocolId,
    ResultCode,
    VtpmCall,
    call_name,
    result_name,
)
from cocopart.protocol.manifest import VTPM_SERVICE_GUID
from cocopart.service import tpm

BACKENDS = ("sev-snp", "tdx")
MIB = 1 << 20
#: RAM the memory map assigns to each workload layer; the rest of RAM is l1's pool.
LAYER_RAM = 8 * MIB
#: Guest RAM: the layers' RAM, 6 MiB of pool and a 12 KiB tail that is not 2 MiB aligned
#: (so the protocol region starts after a hole that belongs to no workload).
POOL_RAM = 6 * MIB - 12 * 1024
VCPUS = 2
#: Calls per fresh partition by default (a partition's page tables fragment as the calls go
#: on, and each check reads the whole memory_view: longer segments run slower).
SEGMENT_CALLS = 2_000
#: Part of each layer's RAM that it validates and rescinds while the fuzz is set up.
RESCINDED, RESCINDED_SIZE = 4 * MIB, 64 * 4096
#: Defined result codes, and the protocol-specific ones: PROTOCOL_BASE + a hardware code
#: (ids.protocol_error; SNP RMP return codes are 1..0x10).
DEFINED_CODES = frozenset(int(c) for c in ResultCode)
MAX_HW_CODE = 0xFF
#: Where a request puts its nonce in the caller's calling area (like the workload client).
NONCE_OFFSET = 0x800
X2APIC_REGISTERS = (
    0x802,
    0x803,
    0x808,
    0x80A,
    0x80B,
    0x80D,
    0x80F,
    0x810,
    0x818,
    0x820,
    0x828,
    0x830,
    0x832,
    0x83F,
    0x8FF,
    0x900,
)


#: Backend options the fuzz varies (each backend's own ``backend_options``).
OPTION_CHOICES: dict[str, dict[str, tuple[Any, ...]]] = {
    "sev-snp": {"call_protocol": ("ghcb", "msr"), "host_page_size": ("2M", "4K")},
    "tdx": {
        "module": ("1.5", "2.0"),
        "enable_tdvmcall": (False, True),
        "host_mapping": ("4K", "2M"),
    },
}
INTERRUPT_MODES = ("restricted", "alternate")


def random_setup(
    rng: random.Random, backend: str, layers: int | None = None
) -> tuple[int, str, dict[str, Any]]:
    """(workload layers, interrupt mode, backend options) drawn from ``rng``."""
    n = layers or rng.choice((2, 3))
    options = {k: rng.choice(v) for k, v in OPTION_CHOICES[backend].items()}
    if backend == "sev-snp":
        options["workload_vmpls"] = rng.sample((1, 2, 3), n)
    return n, rng.choice(INTERRUPT_MODES), options


def allowed_code(code: int) -> bool:
    """A defined ``ResultCode`` or ``PROTOCOL_BASE`` + a small hardware code."""
    return code in DEFINED_CODES or PROTOCOL_BASE < code <= PROTOCOL_BASE + MAX_HW_CODE


def fuzz_config(
    layers: int, interrupt_mode: str = "restricted", options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The guest: ``layers`` workload layers with 8 MiB of RAM each, a pool, 2 vCPUs."""
    return {
        "memory": layers * LAYER_RAM + POOL_RAM,
        "vcpus": VCPUS,
        "workload_layers": layers,
        "interrupt_mode": interrupt_mode,
        "backend_options": dict(options or {}),
        "memory_map": {
            f"l2.{i + 1}": [{"start": i * LAYER_RAM, "size": LAYER_RAM}] for i in range(layers)
        },
    }


# -- the calls ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One protocol call: buffers written into the caller's own memory, then the registers."""

    layer: str
    vcpu: int
    protocol: int
    call: int
    rcx: int
    rdx: int
    r8: int
    writes: tuple[tuple[int, bytes], ...] = ()
    kind: str = "random"

    def registers(self) -> Registers:
        return Registers.call(self.protocol, self.call, self.rcx, self.rdx, self.r8)

    def describe(self) -> str:
        writes = ", ".join(f"{len(d)} B @ {g:#x}" for g, d in self.writes) or "none"
        return (
            f"{self.kind}: {self.layer} vCPU {self.vcpu} protocol {self.protocol:#x} call "
            f"{self.call:#x} rcx={self.rcx:#x} rdx={self.rdx:#x} r8={self.r8:#x}; "
            f"writes: {writes}"
        )

    def reproducer(self) -> str:
        """Python lines that make this call on a partition ``p``."""
        lines = [
            f"p.machine.memory.write({g:#x}, bytes.fromhex({d.hex()!r}))" for g, d in self.writes
        ]
        lines.append(
            f"p.machine.transport.call({self.layer!r}, {self.vcpu}, Registers.call("
            f"{self.protocol:#x}, {self.call:#x}, {self.rcx:#x}, {self.rdx:#x}, "
            f"{self.r8:#x}))"
        )
        return "\n".join(lines)


class Target:
    """A partition prepared for fuzzing, with its interesting pages."""

    def __init__(
        self,
        backend: str,
        layers: int = 3,
        interrupt_mode: str = "restricted",
        options: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.setup = f"{layers} layers, interrupt mode {interrupt_mode}, options {options or {}}"
        self.p = Partition(fuzz_config(layers, interrupt_mode, options), backend=backend)
        m = self.p.machine
        self.machine = m
        self.memory = m.memory
        self.layout = m.layout
        self.workloads: tuple[str, ...] = tuple(m.workloads)
        self.ram = self.layout.memory
        self.total = self.layout.total
        self.service = m.service
        self.ownership = m.ownership
        self._view: list[MemoryRun] | None = None
        self._starts: list[int] = []
        for i, layer in enumerate(self.workloads):
            base = i * LAYER_RAM
            for start, size in (
                (base, PAGE_2M),
                (base + PAGE_2M, 64 * PAGE_4K),
                (base + RESCINDED, RESCINDED_SIZE),
            ):
                r = self.run(ValidatePages(layer=layer, range=GpaRange.of(start, size)))
                if not r.ok:
                    raise RuntimeError(f"{backend}: preparing {layer}: {r.reason}")
            # private but not validated (SNP: assigned in the RMP), where a raw PVALIDATE
            # can succeed; TDX module 1.5 cannot rescind: those pages stay accepted
            self.run(RescindPages(layer=layer, range=GpaRange.of(base + RESCINDED, RESCINDED_SIZE)))
        #: per layer: its protocol pages and RAM pages; ``shared``: pool and boundaries
        self.protocol_pages: dict[str, list[int]] = {}
        self.ram_pages: dict[str, list[int]] = {}
        for i, layer in enumerate(self.workloads):
            base = i * LAYER_RAM
            self.protocol_pages[layer] = (
                [self.layout.caa(i, v) for v in range(VCPUS)]
                + [self.layout.context(i, v) for v in range(VCPUS)]
                + [self.layout.scratch(i, s) for s in range(SCRATCH_PAGES)]
            )
            self.ram_pages[layer] = [
                base,
                base + 7 * PAGE_4K,
                base + PAGE_2M,
                base + PAGE_2M + PAGE_4K,
                base + 4 * MIB,
                base + LAYER_RAM - PAGE_2M,
                base + LAYER_RAM - PAGE_4K,
            ]
        pool = len(self.workloads) * LAYER_RAM
        last = self.ram - PAGE_4K
        self.shared_pages = [
            pool,
            pool + PAGE_4K,
            pool + PAGE_2M,
            last & ~(PAGE_2M - 1),
            last,
            self.ram,
            self.layout.base - PAGE_4K,
            self.layout.base,
            self.total - PAGE_4K,
        ]
        pages = {g for v in self.protocol_pages.values() for g in v}
        pages |= {g for v in self.ram_pages.values() for g in v}
        pages |= set(self.shared_pages)
        self.tracked = sorted(g + d for g in pages for d in (0, PAGE_4K) if g + d < self.total)
        for layer in self.workloads:  # canaries: something to lose
            for g in self.ram_pages[layer][:4] + self.protocol_pages[layer][2 * VCPUS :]:
                self.memory.write(g, canary(layer, g))
            caa = self.caa(layer, 0)
            self.memory.write(caa + BUFFER, canary(layer, caa)[BUFFER:])

    def view(self) -> list[MemoryRun]:
        """``memory_view`` of the whole guest (RAM, hole, protocol region), kept until the
        next call or operation (:meth:`call`, :meth:`run`)."""
        if self._view is None:
            self._view = self.p.memory_view(0, self.total)
            self._starts = [r.start for r in self._view]
        return self._view

    def run_at(self, g: int) -> MemoryRun:
        view = self.view()
        return view[bisect.bisect_right(self._starts, g) - 1]

    def call(self, layer: str, vcpu: int, regs: Registers) -> CallOutcome:
        """A protocol call through the transport (the real L2 -> L1 path)."""
        try:
            out: CallOutcome = self.machine.transport.call(layer, vcpu, regs)
            return out
        finally:
            self._view = None

    def run(self, op: Operation) -> OperationResult:
        """An operation through the library (``Partition.run``)."""
        try:
            result: OperationResult = self.p.run(op)
            return result
        finally:
            self._view = None

    def caa(self, layer: str, vcpu: int) -> int:
        return int(self.service.state.caa(layer, vcpu))

    def scratch(self, layer: str, slot: int) -> int:
        return int(self.layout.scratch(self.workloads.index(layer), slot))

    def vcpus_of(self, layer: str) -> list[int]:
        return sorted(r.vcpu for r in self.service.state.contexts.values() if r.layer == layer)


def canary(layer: str, gpa: int) -> bytes:
    seed = f"{layer}:{gpa:#x}".encode()
    return (seed * (PAGE_4K // len(seed) + 1))[:PAGE_4K]


def _fill(rng: random.Random, n: int) -> bytes:
    """``n`` random bytes from one draw of ``rng`` (keeps hypothesis' choice sequence short)."""
    return random.Random(rng.getrandbits(64)).randbytes(n)


def _u32(rng: random.Random) -> int:
    return int(rng.getrandbits(32))


def _pick(rng: random.Random, weighted: list[tuple[int, Any]]) -> Any:
    total = sum(w for w, _ in weighted)
    x = rng.randrange(total)
    for w, v in weighted:
        if x < w:
            return v
        x -= w
    raise AssertionError("unreachable")


def gpa(rng: random.Random, t: Target, caller: str) -> int:
    """A guest-physical address worth trying as a register or a buffer field."""
    kind = _pick(
        rng,
        [
            (3, "own-protocol"),
            (3, "other-protocol"),
            (3, "own-ram"),
            (3, "other-ram"),
            (2, "shared"),
            (2, "random-page"),
            (1, "u64"),
            (1, "high"),
            (1, "small"),
        ],
    )
    others = [w for w in t.workloads if w != caller] or [caller]
    if kind == "own-protocol":
        g = rng.choice(t.protocol_pages[caller])
    elif kind == "other-protocol":
        g = rng.choice(t.protocol_pages[rng.choice(others)])
    elif kind == "own-ram":
        g = rng.choice(t.ram_pages[caller])
    elif kind == "other-ram":
        g = rng.choice(t.ram_pages[rng.choice(others)])
    elif kind == "shared":
        g = rng.choice(t.shared_pages + [t.total])
    elif kind == "random-page":
        g = rng.randrange(t.total // PAGE_4K + 2) * PAGE_4K
    elif kind == "u64":
        return int(rng.getrandbits(64))
    elif kind == "high":
        return U64 + 1 - rng.choice([8, PAGE_4K, PAGE_2M, rng.randrange(1, 1 << 16)])
    else:
        return rng.randrange(16)
    return (g + rng.choice([0, 0, 0, 0, 8, BUFFER, NONCE_OFFSET, PAGE_4K - 8, 1, -PAGE_4K])) & U64


def _own_buffer(rng: random.Random, t: Target, layer: str, vcpu: int, aligned: bool) -> int:
    """Where the caller writes a request: its calling area (past call_pending) or a scratch
    page of its own."""
    if aligned or rng.random() < 0.3:
        return t.scratch(layer, rng.choice([SCRATCH_VTPM, SCRATCH_REPORT, SCRATCH_CERTS]))
    return t.caa(layer, vcpu) + rng.choice([BUFFER, BUFFER, 0x10, 0x800, 0xFF8])


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte flips, a truncation or an extension, or nothing."""
    out = bytearray(data)
    for _ in range(_pick(rng, [(6, 0), (3, 1), (1, 4)])):
        if out:
            out[rng.randrange(len(out))] = rng.getrandbits(8)
    if out and rng.random() < 0.05:
        del out[rng.randrange(len(out)) :]
    if rng.random() < 0.05:
        out += _fill(rng, rng.randrange(1, 64))
    return bytes(out)


def _page_for_pvalidate(rng: random.Random, t: Target, caller: str, big: bool) -> int:
    """Mostly the caller's own RAM or pool RAM (where PVALIDATE may succeed), else anything."""
    step = PAGE_2M if big else PAGE_4K
    kind = rng.randrange(8)
    if kind < 2:
        base, size = t.workloads.index(caller) * LAYER_RAM + RESCINDED, RESCINDED_SIZE
    elif kind < 4:
        base, size = t.workloads.index(caller) * LAYER_RAM, LAYER_RAM
    elif kind < 6:
        base, size = len(t.workloads) * LAYER_RAM, POOL_RAM
    else:
        g = gpa(rng, t, caller) & pv.GFN_MASK
        return g & ~(PAGE_2M - 1) if big and rng.random() < 0.8 else g
    return base + rng.randrange(max(1, size // step)) * step


def _pvalidate_list(rng: random.Random, t: Target, caller: str) -> bytes:
    entries: list[int] = []
    for _ in range(_pick(rng, [(6, 1), (3, 2), (2, 4), (1, 0)])):
        big = rng.random() < 0.3
        base = _page_for_pvalidate(rng, t, caller, big)
        count = _pick(rng, [(6, 1), (3, rng.randrange(2, 16)), (1, rng.randrange(16, 512))])
        count = min(count, pv.MAX_ENTRIES_IN_CAA - len(entries))
        step = PAGE_2M if big else PAGE_4K
        first = pv.entry(base, big, rng.random() < 0.6, rng.random() < 0.2)
        if rng.random() < 0.05:
            first |= rng.choice([2, 3, 0x10, 0x800])  # bad size, reserved bits
        entries += [(first + k * step) & U64 for k in range(count)]
    if not entries:
        entries = [int(rng.getrandbits(64))]
    entries = entries[: pv.MAX_ENTRIES_IN_CAA]
    nxt = 0 if rng.random() < 0.9 else rng.randrange(len(entries) + 2)
    data = pv.HEADER.pack(len(entries), nxt, 0) + struct.pack(f"<{len(entries)}Q", *entries)
    if rng.random() < 0.05:  # count beyond the page, zero, or random
        count = rng.choice([0, pv.MAX_ENTRIES_IN_CAA + 1, 0xFFFF, _u32(rng) & 0xFFFF])
        data = struct.pack("<H", count) + data[2:]
    return _mutate(rng, data) if rng.random() < 0.3 else data


def _size(rng: random.Random, good: int) -> int:
    return int(
        _pick(
            rng,
            [
                (30, good),
                (1, 0),
                (
                    1,
                    rng.choice(
                        [
                            1,
                            63,
                            65,
                            PAGE_4K,
                            PAGE_4K + 1,
                            attest_codec.MAX_CERTS_SIZE,
                            attest_codec.MAX_CERTS_SIZE + 1,
                        ]
                    ),
                ),
                (1, _u32(rng)),
            ],
        )
    )


def _attest_request(
    rng: random.Random, t: Target, caller: str, vcpu: int, single: bool
) -> tuple[bytes, bytes]:
    """(request, nonce) for ATTEST_SERVICES / ATTEST_SINGLE_SERVICE."""

    def where(good: int) -> int:
        return good if rng.random() < 0.9 else gpa(rng, t, caller)

    certs = rng.random() < 0.5
    guid = rng.choice([VTPM_SERVICE_GUID, uuid.UUID(int=rng.getrandbits(128))]) if single else None
    req = attest_codec.AttestRequest(
        report_gpa=where(t.scratch(caller, SCRATCH_REPORT)),
        report_size=_size(rng, REPORT_BUFFER_SIZE),
        nonce_gpa=where(t.caa(caller, vcpu) + NONCE_OFFSET),
        nonce_size=_size(rng, attest_codec.NONCE_SIZE) & 0xFFFF,
        manifest_gpa=where(t.scratch(caller, SCRATCH_MANIFEST)),
        manifest_size=_size(rng, REPORT_BUFFER_SIZE),
        certs_gpa=where(t.scratch(caller, SCRATCH_CERTS)) if certs else 0,
        certs_size=_size(rng, attest_codec.MAX_CERTS_SIZE) if certs else 0,
        service_guid=guid,
        manifest_version=0 if rng.random() < 0.9 else _u32(rng),
    )
    data = req.encode()
    return _mutate(rng, data) if rng.random() < 0.3 else data, _fill(rng, attest_codec.NONCE_SIZE)


def _tpm_command(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        handle = tpm.EK_HANDLE if rng.random() < 0.8 else _u32(rng)
        body = struct.pack(">I", handle)
        tag, cc = tpm.TPM_ST_NO_SESSIONS, tpm.TPM_CC_READ_PUBLIC
    elif kind == 1:
        sels = b""
        count = _pick(rng, [(6, rng.randrange(1, 3)), (1, 0), (1, rng.randrange(3, 40))])
        for _ in range(min(count, 8)):
            alg = rng.choice([tpm.TPM_ALG_SHA256, tpm.TPM_ALG_SHA384, rng.getrandbits(16)])
            size = rng.choice([3, 3, 0, 1, 4, 32])
            sels += struct.pack(">HB", alg, size) + _fill(rng, size)
        body = struct.pack(">I", count) + sels
        tag, cc = tpm.TPM_ST_NO_SESSIONS, tpm.TPM_CC_PCR_READ
    elif kind == 2:
        auth = struct.pack(">IH", tpm.TPM_RS_PW, 0) + b"\x00" + struct.pack(">H", 0)
        digests = b""
        count = rng.choice([1, 2, 0, 3])
        for _ in range(count):
            alg = rng.choice([tpm.TPM_ALG_SHA256, tpm.TPM_ALG_SHA384, rng.getrandbits(16)])
            digests += struct.pack(">H", alg) + _fill(rng, 48 if alg == tpm.TPM_ALG_SHA384 else 32)
        body = (
            struct.pack(">II", rng.choice([0, 7, 23, 24, _u32(rng)]), len(auth))
            + auth
            + struct.pack(">I", count)
            + digests
        )
        tag, cc = tpm.TPM_ST_SESSIONS, tpm.TPM_CC_PCR_EXTEND
    else:
        return _fill(rng, rng.randrange(0, 64))
    if rng.random() < 0.1:
        tag = rng.getrandbits(16)
    size = 10 + len(body) if rng.random() < 0.9 else rng.getrandbits(32)
    return _mutate(rng, struct.pack(">HII", tag, size, cc) + body)


def _vtpm_request(rng: random.Random) -> bytes:
    command = _tpm_command(rng)[: vtpm_codec.MAX_INBUF]
    data = vtpm_codec.encode_request(command, locality=rng.choice([0, 0, 0, 3, 255]))
    if rng.random() < 0.1:  # platform command or inbuf_size wrong
        data = struct.pack("<I", rng.choice([0, 1, 7, 9, _u32(rng)])) + data[4:]
    if rng.random() < 0.1:
        data = data[:5] + struct.pack("<I", rng.choice([0, 4087, 4088, _u32(rng)])) + data[9:]
    return data


def _reg(rng: random.Random, t: Target, caller: str, buffer: int | None) -> int:
    return int(
        _pick(
            rng,
            [
                (4, buffer if buffer is not None else 0),
                (4, gpa(rng, t, caller)),
                (2, rng.getrandbits(64)),
                (2, rng.randrange(4)),
                (1, rng.getrandbits(32)),
            ],
        )
    )


def generate(rng: random.Random, t: Target) -> Call:
    """One random call (the buffers it writes are in the caller's own memory)."""
    layer = rng.choice(t.workloads)
    vcpu = rng.choice(t.vcpus_of(layer) or [0]) if rng.random() < 0.95 else rng.randrange(VCPUS)
    kind = _pick(
        rng,
        [
            (5, "pvalidate"),
            (3, "attest"),
            (3, "vtpm"),
            (2, "core"),
            (1, "vcpu"),
            (2, "apic"),
            (3, "random"),
        ],
    )
    writes: list[tuple[int, bytes]] = []
    buffer: int | None = None
    protocol, call = 0, 0
    if kind == "pvalidate":
        buffer = _own_buffer(rng, t, layer, vcpu, aligned=False)
        writes.append((buffer, _pvalidate_list(rng, t, layer)))
        protocol, call = ProtocolId.CORE, CoreCall.PVALIDATE
    elif kind == "attest":
        single = rng.random() < 0.4
        req, nonce = _attest_request(rng, t, layer, vcpu, single)
        buffer = t.caa(layer, vcpu) + BUFFER
        writes += [(t.caa(layer, vcpu) + NONCE_OFFSET, nonce), (buffer, req)]
        protocol = ProtocolId.ATTEST
        call = AttestCall.ATTEST_SINGLE_SERVICE if single else AttestCall.ATTEST_SERVICES
    elif kind == "vtpm":
        buffer = _own_buffer(rng, t, layer, vcpu, aligned=rng.random() < 0.9)
        writes.append((buffer, _vtpm_request(rng)))
        protocol, call = ProtocolId.VTPM, rng.choice([VtpmCall.CMD, VtpmCall.CMD, VtpmCall.QUERY])
    elif kind == "core":
        protocol, call = ProtocolId.CORE, rng.randrange(8)
        if call == CoreCall.QUERY_PROTOCOL:
            buffer = (rng.randrange(6) << 32) | rng.randrange(3)
        elif call == CoreCall.REMAP_CA and rng.random() < 0.7:  # mostly a page of its own
            buffer = rng.choice(t.protocol_pages[layer] + t.ram_pages[layer])
    elif kind == "vcpu":
        return _finish(t, _vcpu_call(rng, t, layer, vcpu))
    elif kind == "apic":
        protocol, call = ProtocolId.APIC, rng.randrange(6)
        if call in (2, 3):
            reg = rng.choice(X2APIC_REGISTERS)
            value = (rng.randrange(VCPUS + 1) << 32) | (1 << 14) | rng.randrange(256)
            return Call(
                layer,
                vcpu,
                protocol,
                call,
                reg,
                value if rng.random() < 0.7 else _reg(rng, t, layer, None),
                _reg(rng, t, layer, None),
                (),
                kind,
            )
    else:
        if rng.random() < 0.5:
            buffer = _own_buffer(rng, t, layer, vcpu, aligned=rng.random() < 0.3)
            size = rng.choice([8, 64, attest_codec.SINGLE_SIZE, 512, PAGE_4K])
            size = min(size, PAGE_4K - (buffer % PAGE_4K))
            writes.append((buffer, _fill(rng, size)))
        protocol = _pick(rng, [(6, rng.randrange(6)), (1, _u32(rng))])
        call = _pick(rng, [(6, rng.randrange(11)), (1, _u32(rng))])
    rcx = buffer if buffer is not None and rng.random() < 0.85 else _reg(rng, t, layer, buffer)
    return _finish(
        t,
        Call(
            layer,
            vcpu,
            int(protocol),
            int(call),
            rcx,
            _reg(rng, t, layer, buffer),
            _reg(rng, t, layer, buffer),
            tuple(writes),
            kind,
        ),
    )


def _vcpu_call(rng: random.Random, t: Target, layer: str, vcpu: int) -> Call:
    """CREATE_VCPU with a context page of the caller's own (on SNP a copy of its live VMSA,
    so that the checks of the VMSA pass) and a calling area, or DELETE_VCPU of a context."""
    contexts = sorted(t.service.state.contexts)
    if rng.random() < 0.35 and contexts:
        rcx = rng.choice(contexts) if rng.random() < 0.8 else gpa(rng, t, layer)
        return Call(layer, vcpu, ProtocolId.CORE, CoreCall.DELETE_VCPU, rcx, 0, 0, (), "vcpu")
    scratch = [t.scratch(layer, s) for s in range(SCRATCH_PAGES)]
    own = t.ram_pages[layer][:4] + scratch
    ctx = rng.choice(t.ram_pages[layer][:4]) if rng.random() < 0.9 else gpa(rng, t, layer)
    if ctx in scratch:  # not the buffers the library's client uses: see check_not_stuck
        ctx = t.ram_pages[layer][0]
    writes: tuple[tuple[int, bytes], ...] = ()
    live = [g for g, r in t.service.state.contexts.items() if r.layer == layer]
    if live and ctx < t.total and t.ownership.owner(ctx) == layer and rng.random() < 0.8:
        writes = ((ctx, t.memory.read(live[0], PAGE_4K)),)
    caa = _pick(rng, [(4, rng.choice(own)), (1, t.caa(layer, vcpu)), (2, gpa(rng, t, layer))])
    return Call(
        layer,
        vcpu,
        ProtocolId.CORE,
        CoreCall.CREATE_VCPU,
        ctx,
        caa,
        rng.randrange(VCPUS + 1) if rng.random() < 0.9 else _u32(rng),
        writes,
        "vcpu",
    )


def _may_write(t: Target, layer: str, g: int) -> bool:
    """May ``layer`` itself write the page at ``g`` (shared, or ``w`` in its access, never a
    vCPU context)?"""
    if not 0 <= g < t.total:
        return False
    r = t.run_at(g)
    return (not r.private or "w" in r.access.get(layer, "")) and not r.context


def _clip(
    t: Target, layer: str, writes: tuple[tuple[int, bytes], ...]
) -> tuple[tuple[int, bytes], ...]:
    """The caller writes only pages it may write itself, and only inside the page."""
    return tuple((g, d[: PAGE_4K - g % PAGE_4K]) for g, d in writes if _may_write(t, layer, g))


def _finish(t: Target, c: Call) -> Call:
    return Call(
        c.layer, c.vcpu, c.protocol, c.call, c.rcx, c.rdx, c.r8, _clip(t, c.layer, c.writes), c.kind
    )


# -- running and checking ---------------------------------------------------------------------
class Hang(Exception):
    """A call did not return within the watchdog's time."""


@contextlib.contextmanager
def watchdog(seconds: float) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread if the block runs longer than ``seconds``
    (no watchdog off the main thread or where SIGALRM does not exist)."""
    if (
        seconds <= 0
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def fire(_sig: int, _frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _guarded(t: Target, caller: str, runs: list[MemoryRun]) -> list[tuple[int, int, Any]]:
    """The runs of ``memory_view`` the caller does not own (l1's free pool excepted), merged,
    each as ``(start, end, state)``."""
    out: list[tuple[int, int, Any]] = []
    for run in runs:
        if run.owner == caller or (run.owner == POOL.owner and not run.assigned):
            continue
        state = (
            run.private,
            run.validated,
            tuple(sorted(run.access.items())),
            run.context,
            run.owner,
            run.assigned,
        )
        if out and out[-1][1] == run.start and out[-1][2] == state:
            out[-1] = (out[-1][0], run.end, state)
        else:
            out.append((run.start, run.end, state))
    return out


def _writable_by(caller: str, state: Any) -> bool:
    """Has another layer granted the caller write access to its (private) page? A shared
    page is never a protocol buffer, so the privileged layer never writes another layer's
    shared page either."""
    _private, _validated, access, _context, _owner, _assigned = state
    return "w" in dict(access).get(caller, "")


def _pages_of(c: Call) -> set[int]:
    """Pages a call names (registers, buffers, GPAs inside its buffers), and the next ones."""
    cands = [c.rcx, c.rdx, c.r8] + [g for g, _ in c.writes]
    for _g, data in c.writes:
        cands += [v for (v,) in struct.iter_unpack("<Q", data[: len(data) & ~7][:4096])]
    return {(v & ~(PAGE_4K - 1)) + d for v in cands for d in (0, PAGE_4K)}


@dataclass
class Snapshot:
    """What must not change: bytes of pages the caller may not write, guarded state."""

    pages: dict[int, bytes]
    view: list[tuple[int, int, Any]]
    caa: int
    #: before the call: is its protocol offered to the caller, is its call id known
    offered: bool
    known_call: bool


def snapshot(t: Target, c: Call) -> Snapshot:
    view = _guarded(t, c.layer, t.view())
    starts = [s for s, _e, _v in view]
    # TDX: when L1 runs another L2 VM on a physical vCPU it saves the descheduled VM's state
    # into that VM's L2_ENTER_GUEST_STATE buffer (the context page): L1's bookkeeping, not
    # the caller's doing. The page's state (context, access) is still compared.
    volatile = set(t.service.state.contexts) if t.backend == "tdx" else set()
    pages: dict[int, bytes] = {}
    for g in {g for g in _pages_of(c) if g < t.total} | set(t.tracked):
        i = bisect.bisect_right(starts, g) - 1
        if i < 0 or g >= view[i][1] or g in volatile or _writable_by(c.layer, view[i][2]):
            continue
        pages[g] = t.memory.read(g, PAGE_4K)
    offered = t.service.is_offered(c.protocol, c.layer, c.vcpu)
    known = c.call in t.service.protocols.get(c.protocol, {})
    return Snapshot(pages, view, t.caa(c.layer, c.vcpu), offered, known)


def execute(t: Target, c: Call, timeout: float = 0) -> CallOutcome:
    """Write the call's buffers, then call through the transport (with a watchdog)."""
    for g, data in c.writes:
        t.memory.write(g, data)
    with watchdog(timeout):
        return t.call(c.layer, c.vcpu, c.registers())


def check_call(t: Target, c: Call, before: Snapshot, out: CallOutcome) -> list[str]:
    """The violations of one call (empty: none)."""
    bad: list[str] = []
    code = out.code
    if not allowed_code(code):
        bad.append(f"result code {code:#x} is not a defined or protocol-specific code")
    for name in ("rax", "rcx", "rdx", "r8"):
        v = getattr(out.regs, name)
        if not isinstance(v, int) or not 0 <= v <= U64:
            bad.append(f"{name} after the call is {v!r}, not a u64")
    # sev-snp.md §1.6; INVALID_REQUEST: the call was not serviced (no such vCPU)
    if code != ResultCode.INVALID_REQUEST:
        if not before.offered and code != ResultCode.UNSUPPORTED_PROTOCOL:
            bad.append(f"protocol {c.protocol:#x}, not offered, answered {result_name(code)}")
        elif before.offered and not before.known_call and code != ResultCode.UNSUPPORTED_CALL:
            bad.append(f"unknown call {c.call:#x} answered {result_name(code)}")
    # the calling area of the call, and the one REMAP_CA (which zeroes it) moved to
    areas = {before.caa}
    if (c.protocol, c.call) == (ProtocolId.CORE, CoreCall.REMAP_CA):
        areas.add(t.caa(c.layer, c.vcpu))
    for caa in areas:
        if t.memory.read(caa + CALL_PENDING, 1) != b"\x00":
            bad.append(f"call_pending of the calling area {caa:#x} is still set")
    for g, data in before.pages.items():
        if t.memory.read(g, PAGE_4K) != data:
            owner = t.ownership.owner(g)
            bad.append(
                f"{c.layer} changed the bytes of the page {g:#x} (owner {owner}) "
                f"with {result_name(code)}"
            )
    after = _guarded(t, c.layer, t.view())
    if after != before.view:
        diff = sorted(set(after) ^ set(before.view))[:4]
        bad.append(f"{c.layer}'s call changed the state of pages it does not own: {diff}")
    return bad


def _repair(t: Target, layer: str) -> list[str]:
    """Undo, through the protocol, what a layer did to its own protocol layout: delete the
    vCPUs it created and move its calling area off a scratch page (the library's client
    uses those as buffers) or off a page it can no longer write. Returns the failures."""
    bad: list[str] = []
    i = t.workloads.index(layer)
    for g, rec in sorted(t.service.state.contexts.items()):
        if rec.layer == layer and rec.vcpu != 0:
            out = t.call(layer, 0, Registers.call(ProtocolId.CORE, CoreCall.DELETE_VCPU, g))
            if out.code != ResultCode.SUCCESS:
                bad.append(
                    f"{layer}: DELETE_VCPU of its vCPU {rec.vcpu} ({g:#x}) answered "
                    f"{result_name(out.code)}"
                )
    scratch = [t.scratch(layer, s) for s in range(SCRATCH_PAGES)]
    caa = t.caa(layer, 0)
    if caa in scratch or not _may_write(t, layer, caa):
        codes = []
        for home in [t.layout.caa(i, v) for v in range(VCPUS)] + t.ram_pages[layer]:
            out = t.call(layer, 0, Registers.call(ProtocolId.CORE, CoreCall.REMAP_CA, home))
            codes.append(f"{home:#x}: {result_name(out.code)}")
            if out.code == ResultCode.SUCCESS:
                break
        else:
            bad.append(f"{layer}: no REMAP_CA off {caa:#x} succeeds ({'; '.join(codes)})")
    return bad


def check_not_stuck(t: Target) -> list[str]:
    """Every layer can still use the privileged layer: after :func:`_repair`, it validates
    free pages of its own RAM and attests with the library's operations."""
    bad: list[str] = []
    for i, layer in enumerate(t.workloads):
        bad += _repair(t, layer)
        free = [
            r
            for r in t.p.memory_view(0, t.ram)
            if r.owner == layer and not r.validated and not r.context
        ]
        if free:
            # a whole 2 MiB page where the run has one (it may be one 2M RMP entry), else 64 KiB
            start, end = free[0].start, free[0].end
            big = -(-start // PAGE_2M) * PAGE_2M
            size = PAGE_2M if big + PAGE_2M <= end else min(end - start, 16 * PAGE_4K)
            rng = GpaRange.of(big if size == PAGE_2M else start, size)
            r = t.run(ValidatePages(layer=layer, range=rng))
            if not r.ok:
                bad.append(
                    f"{layer}: validating its own free pages {rng} after the fuzz: "
                    f"{r.status.value} {r.reason}"
                )
        r = t.run(Attest(layer=layer, report_data=None))
        if not r.ok:
            buffers = [t.caa(layer, 0)] + [t.scratch(layer, s) for s in range(SCRATCH_PAGES)]
            views = [
                (f"{g:#x}", v.context, v.access)
                for g in buffers
                for v in t.p.memory_view(g, g + PAGE_4K)
            ]
            bad.append(
                f"{layer}: attest after the fuzz: {r.status.value} {r.reason} "
                f"(calling area and scratch pages: {views})"
            )
    return bad


@dataclass
class Report:
    backend: str
    calls: int = 0
    seconds: float = 0.0
    codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    #: (call name, result name) -> calls
    by_call: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: vCPU 0 of a layer found deleted and created again by l1 (each is a violation)
    recreated: int = 0
    setups: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _bsp_check(t: Target, rep: Report) -> list[str]:
    """vCPU 0 of every layer still exists (RULE_BSP_KEEPS_RUNNING: a raw DELETE_VCPU of a
    BSP is refused). If not, l1 creates it again so that the run goes on."""
    bad = []
    for layer in t.workloads:
        if 0 in t.vcpus_of(layer):
            continue
        rep.recreated += 1
        bad.append(f"vCPU 0 of {layer} was deleted (RULE_BSP_KEEPS_RUNNING)")
        r = t.run(CreateVcpu(layer="l1", target=layer, vcpu=0))
        if not r.ok or 0 not in t.vcpus_of(layer):
            bad.append(f"l1 cannot create vCPU 0 of {layer} again: {r.status.value} {r.reason}")
    return bad


def fuzz(
    t: Target,
    rng: random.Random,
    calls: int,
    *,
    timeout: float = 0,
    report: Report | None = None,
    label: str = "",
) -> Report:
    """Make ``calls`` random calls on ``t``, checking each; violations go into the report
    (each with the call and a reproducer)."""
    rep = report or Report(t.backend)
    start = time.perf_counter()
    for i in range(calls):
        c = generate(rng, t)
        before = snapshot(t, c)
        try:
            out = execute(t, c, timeout)
        except Hang as err:
            problems = [f"hang: {err}\n{traceback.format_exc()}"]
            rep.codes["<hang>"] += 1
        except Exception as err:  # noqa: BLE001 - any escape is the finding
            problems = [f"{type(err).__name__} escaped: {err}\n{traceback.format_exc()}"]
            rep.codes["<exception>"] += 1
        else:
            problems = check_call(t, c, before, out)
            rep.codes[result_name(out.code)] += 1
            rep.by_call[(call_name(c.protocol, c.call), result_name(out.code))] += 1
        rep.kinds[c.kind] += 1
        rep.calls += 1
        problems += _bsp_check(t, rep)
        for p in problems:
            rep.violations.append(
                f"{t.backend} {label}call #{i}: {p}\n  {c.describe()}\n"
                f"  reproducer (after the calls before it):\n"
                + "\n".join("    " + ln for ln in c.reproducer().split("\n"))
            )
    rep.seconds += time.perf_counter() - start
    return rep


def _option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def run_backend(backend: str, args: argparse.Namespace) -> Report:
    """``args.calls`` calls on ``backend`` in ``args.segments`` fresh partitions, each set up
    from the seed (layers, interrupt mode, backend options) unless the command line fixes it."""
    rng = random.Random(f"{args.seed}:{backend}")
    rep = Report(backend)
    per = -(-args.calls // args.segments)
    for seg in range(args.segments):
        n = min(per, args.calls - seg * per)
        if n <= 0:
            break
        layers, mode, options = random_setup(rng, backend, args.layers)
        options.update(dict(args.option))
        t = Target(backend, layers, args.interrupt_mode or mode, options)
        label = f"seed {args.seed} segment {seg} ({t.setup}) "
        fuzz(t, rng, n, timeout=args.timeout, report=rep, label=label)
        rep.violations += [f"{backend} {label}after the fuzz: {v}" for v in check_not_stuck(t)]
        rep.setups.append(t.setup)
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000, help="calls per backend")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    ap.add_argument(
        "--segments",
        type=int,
        default=None,
        help="fresh partitions per backend, each with its own setup (default: "
        f"one per {SEGMENT_CALLS:,} calls)",
    )
    ap.add_argument(
        "--layers",
        type=int,
        choices=(2, 3),
        default=None,
        help="workload layers (default: drawn per segment)",
    )
    ap.add_argument(
        "--interrupt-mode",
        choices=INTERRUPT_MODES,
        default=None,
        help="default: drawn per segment (alternate offers the APIC protocol)",
    )
    ap.add_argument(
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option for every segment (JSON value)",
    )
    ap.add_argument("--timeout", type=float, default=10.0, help="per-call watchdog, seconds")
    ap.add_argument("--show", type=int, default=10, help="violations printed in full")
    args = ap.parse_args(argv)
    args.segments = max(1, args.segments or args.calls // SEGMENT_CALLS)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    failed = False
    for backend in backends:
        wall = time.perf_counter()
        rep = run_backend(backend, args)
        wall = time.perf_counter() - wall
        rate = rep.calls / rep.seconds if rep.seconds else 0.0
        print(
            f"{backend}: {rep.calls} calls in {rep.seconds:.1f} s ({rate:,.0f} calls/s; "
            f"{wall:.1f} s with setup and the final checks), seed {args.seed}"
        )
        for i, setup in enumerate(rep.setups):
            print(f"  segment {i}: {setup}")
        print("  generators: " + ", ".join(f"{k} {n}" for k, n in sorted(rep.kinds.items())))
        print("  result codes:")
        for name, n in rep.codes.most_common():
            print(f"    {name:32} {n:8}")
        ok = sorted((n, k) for (k, r), n in rep.by_call.items() if r == "SUCCESS")
        print("  successful calls: " + ", ".join(f"{k} {n}" for n, k in reversed(ok)))
        print(f"  violations: {len(rep.violations)}")
        for v in rep.violations[: args.show]:
            print("  - " + v.replace("\n", "\n    "))
        failed |= bool(rep.violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
