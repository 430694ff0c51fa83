"""Host fault scenarios: what happens when the *host* touches a guest's private memory, in
vendor-neutral terms, so the same scenario runs on every backend and under every host policy.

The scenarios are the three of the seed-003 thread (Peter Gonda / Brijesh Singh, KVM list,
2021-11-12, "SNP host RMP fault handling"):

* :attr:`HostFaultScenario.FORGOTTEN_SHARE` — a buggy guest forgets to share a page it then
  hands to a virtual device for DMA; the device emulator writes the guest-private page;
* :attr:`HostFaultScenario.CONVERT_UNDER_EMULATION` — a malicious guest converts a shared page
  to private while a host process is emulating a device on it;
* :attr:`HostFaultScenario.KEXEC` — the host kexecs into a new kernel while guests' private
  pages are still private (SNP: in the RMP).

A backend's machine takes part by implementing :class:`HostFaultModel` (two methods); the
policies a backend offers are what it accepts as backend option ``host_fault_policy`` (SNP:
``sigbus`` / ``panic`` / ``convert``; TDX: none — the architecture raises no host fault).
:func:`run_host_fault_scenario` runs one scenario on a :class:`~cocopart.partition.Partition`,
:func:`compare_host_faults` runs every scenario under every policy on every backend and
returns a :class:`FaultComparison`; :func:`comparison_rows` / :func:`markdown_table` render it
(``cocopart_cli.fault_table`` renders it as a rich table).

The model has one guest in detail (``guest0``, the partition) and ``other_guests`` more on
the same host that only matter for host-wide consequences (a host panic, a host-wide daemon
that dies). Every guest has its own VMM process ``qemu:guestN``; the host-wide daemon
(:data:`HOST_DAEMON`) serves the devices of every guest (seed 003, Peter Gonda: "a single
process could manage the networking for all VMs").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from cocopart.errors import NotSupportedError
from cocopart.trace import Event, TraceMark

#: The host-wide daemon of the scenarios: one user-space process serving every guest's
#: virtual network (seed 003, Peter Gonda 2021-11-12: "Crashing that singleton process kills
#: networking for all VMs on the system").
HOST_DAEMON = "net-daemon"
#: Name of the modelled guest (the partition) and the prefix of the others.
GUEST = "guest"
#: Backend option that selects a backend's host fault policy.
POLICY_OPTION = "host_fault_policy"
#: Policy label of a backend with no host fault policy (nothing faults on the host).
NO_POLICY = "none"

#: The scenarios assume the host's mapping of a guest page reaches the physical page that backs
#: the guest's private page: in the 2021 SEV-SNP host series the seed discusses, private and
#: shared are two RMP states of one page. Applied to TDX too, so the scenes compare. With
#: guest_memfd (Linux 6.8+) user space cannot map private memory at all and a conversion
#: swaps the backing page; that is not modelled. (Model decision.)
ASSUMPTION_SAME_PAGE = "the host's mapping of a GPA reaches the page backing it when private"


class HostFaultScenario(str, Enum):
    """The seed-003 scenarios."""

    FORGOTTEN_SHARE = "forgotten-share"
    CONVERT_UNDER_EMULATION = "convert-under-emulation"
    KEXEC = "kexec"

    @property
    def description(self) -> str:
        """The scenario in one sentence (seed 003)."""
        return _TITLES[self]


_TITLES = {
    HostFaultScenario.FORGOTTEN_SHARE: "(a) a buggy guest forgets to share a page it uses for device DMA",
    HostFaultScenario.CONVERT_UNDER_EMULATION: "(b) a malicious guest converts a page to private while a host process emulates a "
    "device on it",
    HostFaultScenario.KEXEC: "(c) kexec on the host with guests' private pages still private",
}


class Emulator(str, Enum):
    """Who on the host touches the guest page."""

    VMM = "vmm"  # the guest's own VMM process (user space), e.g. QEMU's virtio device
    HOST_DAEMON = "host-daemon"  # one user-space process serving every guest
    KERNEL = "kernel"  # host kernel code that writes without consulting the guest's state
    KVM_CHECKED = "kvm-checked"  # KVM's mapping path that checks and locks the page first

    @property
    def accessor(self) -> HostAccessor:
        return (
            HostAccessor.USER
            if self in (Emulator.VMM, Emulator.HOST_DAEMON)
            else HostAccessor.KERNEL
        )


class HostAccessor(str, Enum):
    """Privilege of the host access: it decides what a policy can do (only a user-space
    process can be sent a signal; a kernel access cannot be killed)."""

    USER = "user"
    KERNEL = "kernel"


#: The emulator each scenario uses unless the setup says otherwise: (a) the guest's VMM
#: emulating its virtio device; (b) the host-wide daemon (the seed's CSP concern); (c) the
#: new kernel itself.
DEFAULT_EMULATOR = {
    HostFaultScenario.FORGOTTEN_SHARE: Emulator.VMM,
    HostFaultScenario.CONVERT_UNDER_EMULATION: Emulator.HOST_DAEMON,
    HostFaultScenario.KEXEC: Emulator.KERNEL,
}


class ScenarioSetup(BaseModel):
    """The host around the modelled guest."""

    model_config = ConfigDict(frozen=True)

    emulator: Emulator | None = Field(
        default=None, description="Who touches the page; None: the scenario's default."
    )
    other_guests: int = Field(default=2, ge=0, description="Other guests on the same host.")
    guest_terminates_on_error: bool = Field(
        default=True,
        description="A guest that detects corrupted private memory logs the "
        "error to its owner and terminates (seed 003, Peter Gonda); False: it logs and "
        "carries on.",
    )
    platform_errata: frozenset[str] = Field(
        default=frozenset(),
        description="Named platform errata a backend knows, e.g. "
        "'tdx-pw-mce' (the TDX partial-write machine-check erratum).",
    )

    def emulator_for(self, scenario: HostFaultScenario) -> Emulator:
        return self.emulator if self.emulator is not None else DEFAULT_EMULATOR[scenario]

    def guests(self) -> list[str]:
        """Every guest on the host; the first is the modelled one."""
        return [f"{GUEST}{i}" for i in range(self.other_guests + 1)]


class DataFate(str, Enum):
    """What became of the guest's private data on the page."""

    INTACT = "intact"
    OVERWRITTEN = "overwritten"  # the host's data replaced it; the guest can detect it
    LOST_WITH_GUEST = "lost with the guest"  # the guest is gone, and its memory with it


class FaultStep(BaseModel):
    """One step of a scenario, in order."""

    actor: str
    action: str
    result: str = ""


class FaultOutcome(BaseModel):
    """The consequences of one scenario under one policy on one backend."""

    backend: str
    policy: str
    policy_consulted: bool = Field(description="Whether the host's fault policy ran at all.")
    scenario: HostFaultScenario
    emulator: Emulator
    accessor: HostAccessor
    host_fault: str | None = Field(
        default=None, description="What the CPU raised on the host, e.g. '#PF (RMP)'."
    )
    host_panicked: bool = False
    guests: list[str]
    guests_lost: dict[str, str] = Field(default_factory=dict, description="Guest -> why.")
    processes_killed: dict[str, str] = Field(
        default_factory=dict, description="Host process -> why."
    )
    services_lost: list[str] = Field(default_factory=list)
    guest_errors: list[str] = Field(
        default_factory=list, description="Errors guests see, 'guestN: ...'."
    )
    data: DataFate
    write_completed: bool = Field(description="The host's write reached memory.")
    steps: list[FaultStep] = Field(default_factory=list)
    events: list[Event] = Field(
        default_factory=list, description="Primitives the machine executed (its trace)."
    )
    rules: list[str] = Field(default_factory=list, description="Modelled rules applied.")

    @property
    def data_lost(self) -> bool:
        return self.data is not DataFate.INTACT

    @property
    def host_survives(self) -> bool:
        return not self.host_panicked


# -- the scene every backend sets ---------------------------------------------------------------
#: The page the scenarios put under the device (inside the first 2M region, so a 2M mapping
#: covers it after validation and a conversion has to split it).
DMA_PAGE = 0x1000
#: The guest's data on that page.
GUEST_DATA = b"guest0 private data"
#: What the device emulator writes.
DEVICE_DATA = b"device DMA payload"
#: The host kernel kexec starts.
NEW_KERNEL = "new kernel"


def keep_guest_data(m: Any, layer: str, size: int) -> TraceMark:
    """The guest ``layer`` makes ``[0, size)`` private and usable (validates / accepts it) and
    keeps :data:`GUEST_DATA` at :data:`DMA_PAGE`. Returns the trace mark the outcome's events
    start at."""
    from cocopart.model import GpaRange
    from cocopart.ops import ValidatePages

    r = m.execute(ValidatePages(layer=layer, range=GpaRange.of(0, size)))
    assert r.ok, r
    m.memory.write(DMA_PAGE, GUEST_DATA)
    mark: TraceMark = m.trace.mark()
    return mark


def finish_scene(m: Any, b: OutcomeBuilder, before: bytes, mark: TraceMark) -> FaultOutcome:
    """The outcome, with the data lost if :data:`DMA_PAGE` no longer holds ``before``."""
    changed = m.memory.read(DMA_PAGE, len(before)) != before
    return b.build(b.data_fate(changed), m.trace.since(mark).events)


def vmm_process(guest: str) -> str:
    """The user-space process of ``guest``'s own VMM."""
    return f"qemu:{guest}"


@dataclass
class OutcomeBuilder:
    """Collects a scenario's steps and consequences; the host-wide meaning of a consequence
    (a dead VMM loses its guest, a dead host-wide daemon every guest's network, a panic every
    guest) is decided here, once for every backend."""

    backend: str
    policy: str
    policy_consulted: bool
    scenario: HostFaultScenario
    setup: ScenarioSetup
    host_fault: str | None = None
    panicked: bool = False
    write_completed: bool = False
    lost: dict[str, str] = field(default_factory=dict)
    killed: dict[str, str] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    steps: list[FaultStep] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)

    @property
    def emulator(self) -> Emulator:
        return self.setup.emulator_for(self.scenario)

    @property
    def guests(self) -> list[str]:
        return self.setup.guests()

    @property
    def guest(self) -> str:
        """The modelled guest."""
        return self.guests[0]

    def process(self) -> str:
        """The host process (or kernel context) of the scenario's emulator."""
        return {
            Emulator.VMM: vmm_process(self.guest),
            Emulator.HOST_DAEMON: HOST_DAEMON,
            Emulator.KERNEL: "host kernel",
            Emulator.KVM_CHECKED: "kvm",
        }[self.emulator]

    def step(self, actor: str, action: str, result: str = "") -> None:
        self.steps.append(FaultStep(actor=actor, action=action, result=result))

    def extend(self, steps: Iterable[FaultStep], rules: Iterable[str] = ()) -> None:
        self.steps.extend(steps)
        self.rules.extend(r for r in rules if r not in self.rules)

    def lose(self, guest: str, why: str) -> None:
        self.lost.setdefault(guest, why)

    def error(self, guest: str, text: str) -> None:
        self.errors.append(f"{guest}: {text}")

    def panic(self, why: str) -> None:
        """The host panicked: every guest on it is lost."""
        self.panicked = True
        for g in self.guests:
            self.lose(g, f"host panic ({why})")

    def kill(self, process: str, why: str) -> None:
        """A host process died: a guest's VMM takes its guest with it; the host-wide daemon
        takes every guest's virtual network."""
        self.killed[process] = why
        for g in self.guests:
            if process == vmm_process(g):
                self.lose(g, f"its VMM {process} was killed ({why})")
        if process == HOST_DAEMON:
            self.services.append(f"virtual network of all {len(self.guests)} guests")
            for g in self.guests:
                if g not in self.lost:
                    self.error(g, "its network device stops responding")

    def data_fate(self, changed: bool) -> DataFate:
        """OVERWRITTEN if the page no longer holds the guest's data, else lost with the guest
        or intact."""
        if changed:
            return DataFate.OVERWRITTEN
        return DataFate.LOST_WITH_GUEST if self.guest in self.lost else DataFate.INTACT

    def build(self, data: DataFate, events: list[Event]) -> FaultOutcome:
        return FaultOutcome(
            backend=self.backend,
            policy=self.policy,
            policy_consulted=self.policy_consulted,
            scenario=self.scenario,
            emulator=self.emulator,
            accessor=self.emulator.accessor,
            host_fault=self.host_fault,
            host_panicked=self.panicked,
            guests=self.guests,
            guests_lost=self.lost,
            processes_killed=self.killed,
            services_lost=self.services,
            guest_errors=self.errors,
            data=data,
            write_completed=self.write_completed,
            steps=self.steps,
            events=events,
            rules=self.rules,
        )


@runtime_checkable
class HostFaultModel(Protocol):
    """What a backend's machine implements to run host fault scenarios."""

    def host_fault_policies(self) -> tuple[str, ...]:
        """Values the backend accepts for option ``host_fault_policy`` (empty: none)."""
        ...

    def host_fault_scenario(
        self, scenario: HostFaultScenario, setup: ScenarioSetup
    ) -> FaultOutcome:
        """Run ``scenario`` on this machine under its configured policy."""
        ...


def _model(machine: object, backend: str) -> HostFaultModel:
    if not isinstance(machine, HostFaultModel):
        raise NotSupportedError(
            "host fault scenarios", f"the {backend} backend does not model host faults"
        )
    return machine


def run_host_fault_scenario(
    partition: Any, scenario: HostFaultScenario | str, setup: ScenarioSetup | None = None
) -> FaultOutcome:
    """Run ``scenario`` on ``partition`` (a :class:`~cocopart.partition.Partition`) under the
    policy its backend options select. The partition's machine state changes."""
    model = _model(partition.machine, partition.backend.name)
    with partition._lock:
        return model.host_fault_scenario(HostFaultScenario(scenario), setup or ScenarioSetup())


#: The guest the comparison builds on every backend (small: the scenarios touch few pages).
DEFAULT_CONFIG: dict[str, Any] = {"memory": 64 << 20, "vcpus": 1, "services": []}


class FaultComparison(BaseModel):
    """Every scenario under every policy on every backend."""

    setup: ScenarioSetup
    outcomes: list[FaultOutcome]

    def find(self, backend: str, scenario: HostFaultScenario | str, policy: str) -> FaultOutcome:
        for o in self.outcomes:
            if (o.backend, o.scenario.value, o.policy) == (
                backend,
                HostFaultScenario(scenario).value,
                policy,
            ):
                return o
        raise KeyError((backend, scenario, policy))


def compare_host_faults(
    backends: Iterable[str] | None = None,
    scenarios: Iterable[HostFaultScenario] = tuple(HostFaultScenario),
    setup: ScenarioSetup | None = None,
    config: dict[str, Any] | None = None,
) -> FaultComparison:
    """Run each scenario on a fresh guest per (backend, policy); default: every installed
    backend."""
    from cocopart.partition import Partition
    from cocopart.registry import installed

    backends = installed() if backends is None else backends

    setup = setup or ScenarioSetup()
    base = dict(DEFAULT_CONFIG if config is None else config)
    out: list[FaultOutcome] = []
    for backend in backends:
        probe = Partition(base, backend)
        policies: tuple[str | None, ...] = _model(probe.machine, backend).host_fault_policies() or (
            None,
        )
        for scenario in scenarios:
            for policy in policies:
                cfg = dict(base)
                if policy is not None:
                    cfg["backend_options"] = {
                        **base.get("backend_options", {}),
                        POLICY_OPTION: policy,
                    }
                out.append(run_host_fault_scenario(Partition(cfg, backend), scenario, setup))
    return FaultComparison(setup=setup, outcomes=out)


HEADERS = (
    "scenario",
    "backend",
    "policy",
    "host fault",
    "host",
    "guests lost",
    "processes killed",
    "guest-visible errors",
    "data",
)


def _lost(o: FaultOutcome) -> str:
    if not o.guests_lost:
        return f"0 of {len(o.guests)}"
    return f"{len(o.guests_lost)} of {len(o.guests)}"


def outcome_row(o: FaultOutcome) -> list[str]:
    """One outcome as the cells of :data:`HEADERS` (plain text)."""
    errors = "; ".join(o.guest_errors) if o.guest_errors else "none"
    killed = ", ".join(o.processes_killed) if o.processes_killed else "none"
    policy = o.policy if o.policy_consulted else f"{o.policy} (not consulted)"
    return [
        o.scenario.value,
        o.backend,
        policy,
        o.host_fault or "none",
        "panics" if o.host_panicked else "survives",
        _lost(o),
        killed,
        errors,
        o.data.value,
    ]


def comparison_rows(cmp: FaultComparison) -> tuple[tuple[str, ...], list[list[str]]]:
    """Headers and one row per outcome, ordered by scenario, backend, policy."""
    return HEADERS, [outcome_row(o) for o in cmp.outcomes]


def markdown_table(cmp: FaultComparison) -> str:
    """The comparison as a Markdown table (docs/host-faults.md embeds it)."""
    headers, rows = comparison_rows(cmp)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines) + "\n"
