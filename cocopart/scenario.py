"""Scenario files: one TOML file describes a partitioned guest and what to do with it.

A scenario (also used as a *guest file* by ``cocopart setup``) has these parts::

    name = "default"                 # optional; defaults to the file name
    description = "..."              # optional

    [guest]                          # PartitionConfig fields (cocopart.model)
    memory = "64GiB"
    vcpus = 16
    workload_layers = 2

    [backend_options.sev-snp]        # handed to that backend only, as
    workload_vmpls = [1, 2]          # PartitionConfig.backend_options
    [backend_options.tdx]
    host_mapping = "2M"

    [costs.primitives]               # optional cost overrides (cocopart.trace layout)
    PVALIDATE = 150

    [[layers]]                       # how the workload layers use guest RAM
    name = "l2.1"
    memory = { start = 0, size = "32GiB" }
    vcpus = 16
    shared = [{ start = "31GiB", size = "1GiB" }]

    [[steps]]                        # an ordered list: macros ...
    macro = "bring-up"
    [[steps]]                        # ... or single operations (cocopart.ops)
    op = "set-access"
    range = { start = 0, size = "2MiB" }
    target = "l2.2"
    access = "r"

Macros: ``bring-up`` validates every workload layer's RAM from that layer, shares what the
file marks shared and creates each layer's vCPUs; ``share-round`` converts a range to shared
and back (re-validating it when the backend left it unvalidated); ``attest-each-layer`` asks
for evidence from every workload layer; ``interrupts`` configures the interrupt mode and
injects a few vectors.

Loading never raises anything but :class:`cocopart.errors.ConfigError`, which names the file,
the line and the dotted field (``steps.2.range.size``). tomllib reports no positions for
values, so the line is found by scanning the text for the offending key or table.

:class:`Runner` executes a scenario on one backend and returns a :class:`ScenarioRun`: per
step the operations it issued, primitives, world switches, estimated time, status and
reason, plus totals — all pydantic, JSON-serialisable, with a schema.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from cocopart.backend import Backend
from cocopart.errors import CocopartError, ConfigError
from cocopart.model import (
    FIRMWARE,
    HOST,
    L1,
    PAGE_2M,
    GpaRange,
    InterruptMode,
    LayerName,
    PartitionConfig,
    Strategy,
    format_size,
)
from cocopart.ops import (
    ArchError,
    Attest,
    ConfigureInterrupts,
    ConvertPages,
    CreateVcpu,
    InjectInterrupt,
    Operation,
    OperationResult,
    Status,
    ValidatePages,
)
from cocopart.partition import Partition
from cocopart.registry import load_backend
from cocopart.trace import CostTable, load_cost_overrides

__all__ = [
    "EXAMPLE_SCENARIO",
    "AttestEachLayer",
    "BringUp",
    "Interrupts",
    "LayerSpec",
    "OperationOutcome",
    "OperationStep",
    "RunTotals",
    "Runner",
    "Scenario",
    "ScenarioRun",
    "ShareRound",
    "StepResult",
    "config_error",
    "default_scenario",
    "key_lines",
    "line_of",
    "load_scenario",
    "loads_scenario",
    "parse_toml",
    "run_scenario",
    "worst",
]


# --------------------------------------------------------------------------------------------
# The file model


class LayerSpec(BaseModel):
    """How one workload layer uses the guest: its RAM, its vCPUs, what it shares."""

    model_config = ConfigDict(extra="forbid")

    name: LayerName = Field(description="Workload layer: 'l2.1', 'l2.2' or 'l2.3'.")
    memory: GpaRange | None = Field(
        default=None, description="Guest RAM this layer validates at bring-up; default: an "
        "equal 2 MiB-aligned share of guest RAM.")
    vcpus: int | None = Field(
        default=None, ge=0, le=512,
        description="vCPUs of this layer created at bring-up (0..n-1); default: all guest vCPUs.")
    shared: list[GpaRange] = Field(
        default_factory=list, description="Ranges of the layer's memory shared with the host "
        "at bring-up (converted to shared after validation).")


class _Named(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, description="Label shown in results.")


class BringUp(_Named):
    """Validate each workload layer's RAM from that layer, share what the file marks shared,
    create each layer's vCPUs (skipping those already running after launch)."""

    macro: Literal["bring-up"] = "bring-up"
    layers: list[LayerName] | None = Field(
        default=None, description="Only these layers; default: every [[layers]] entry.")
    create_vcpus: bool = True


class ShareRound(_Named):
    """Convert a range to shared and back to private (re-validating it if needed)."""

    macro: Literal["share-round"] = "share-round"
    layer: LayerName = "l2.1"
    range: GpaRange | None = Field(
        default=None, description="Default: the first 2 MiB of the layer's memory.")
    revalidate: bool = Field(
        default=True, description="Validate the range again when converting back left it "
        "unvalidated.")


class AttestEachLayer(_Named):
    """Ask for evidence from every workload layer."""

    macro: Literal["attest-each-layer"] = "attest-each-layer"
    source: Literal["hardware", "service", "both"] = "service"
    report_data: str | None = Field(
        default=None, description="Hex, at most 64 bytes; default: SHA-512 of "
        "'cocopart:<layer>'.")
    service: str | None = None
    layers: list[LayerName] | None = None

    @field_validator("report_data")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            raw = bytes.fromhex(v)
        except ValueError:
            raise ValueError("report_data must be a hex string") from None
        if len(raw) > 64:
            raise ValueError(f"report_data is {len(raw)} bytes; at most 64")
        return v


class Interrupts(_Named):
    """Configure the interrupt mode, then inject a few vectors into each workload layer."""

    macro: Literal["interrupts"] = "interrupts"
    mode: InterruptMode | None = Field(default=None, description="Default: the guest's mode.")
    vectors: list[Annotated[int, Field(ge=16, le=255)]] = Field(
        default_factory=lambda: [0x20, 0x30, 0xEC])
    vcpu: int = Field(default=0, ge=0, lt=512)
    targets: list[LayerName] | None = Field(default=None, description="Default: all workloads.")
    requester: LayerName = Field(
        default=HOST, description="Layer that raises the interrupts (a device on the host by "
        "default).")
    configure_from: LayerName = Field(default="l2.1", description="Layer that configures.")


class OperationStep(_Named):
    """One operation of :mod:`cocopart.ops`, written inline: ``op = "validate"`` plus its
    fields."""

    operation: Operation

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, data: Any) -> Any:
        if isinstance(data, dict) and "operation" not in data:
            rest = dict(data)
            name = rest.pop("name", None)
            return {"name": name, "operation": rest}
        return data


def _step_tag(v: Any) -> str:
    if isinstance(v, dict):
        return "macro" if "macro" in v else "op"
    return "macro" if not isinstance(v, OperationStep) else "op"


MacroStep = Annotated[BringUp | ShareRound | AttestEachLayer | Interrupts,
                      Field(discriminator="macro")]
Step = Annotated[
    Annotated[OperationStep, Tag("op")] | Annotated[MacroStep, Tag("macro")],
    Discriminator(_step_tag),
]


class Scenario(BaseModel):
    """A guest and an ordered list of steps to run on it."""

    model_config = ConfigDict(extra="forbid")

    name: str = "scenario"
    description: str = ""
    backend: str | None = Field(
        default=None, description="Backend `cocopart setup` uses when --backend is not given.")
    guest: PartitionConfig = Field(default_factory=PartitionConfig)
    backend_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per backend name, options handed to that backend as "
        "PartitionConfig.backend_options.")
    costs: dict[str, dict[str, Any]] | None = Field(
        default=None, description="Cost overrides: [costs.primitives] / [costs.switches], "
        "each name = ns or {ns = ..., source = ...}.")
    layers: list[LayerSpec] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)

    _source: str | None = PrivateAttr(default=None)
    _text: str | None = PrivateAttr(default=None)

    # -- derived ---------------------------------------------------------------------------
    def layer_specs(self) -> list[LayerSpec]:
        """One spec per workload layer, with memory and vCPUs filled in."""
        given = {s.name: s for s in self.layers}
        names = list(given) if given else list(self.guest.workloads)
        ram = self.guest.memory
        share = max(ram // len(names) // PAGE_2M * PAGE_2M, PAGE_2M)
        out = []
        for i, name in enumerate(names):
            spec = given.get(name) or LayerSpec(name=name)
            memory = spec.memory
            if memory is None:
                start = i * share
                size = ram - start if i == len(names) - 1 else share
                memory = GpaRange.of(start, size)
            vcpus = self.guest.vcpus if spec.vcpus is None else spec.vcpus
            out.append(spec.model_copy(update={"memory": memory, "vcpus": vcpus}))
        return out

    def config_for(self, backend: str, strategy: Strategy | None = None) -> PartitionConfig:
        """The guest configuration as backend ``backend`` receives it."""
        options = {**self.guest.backend_options, **self.backend_options.get(backend, {})}
        update: dict[str, Any] = {"backend_options": options}
        if strategy is not None:
            update["strategy"] = strategy
        return self.guest.model_copy(update=update)

    def cost_table(self, base: CostTable) -> CostTable:
        """``base`` with this scenario's overrides applied."""
        return base.merged(self.costs, source=f"{self.name} [costs]") if self.costs else base

    def relocate(self, err: ConfigError, backend: str) -> ConfigError:
        """Point a backend's :class:`ConfigError` about the configuration (field ``memory``,
        ``backend_options.X``) at this file: its path, line and dotted field."""
        if err.source is not None or self._source is None:
            return err
        parts: list[str | int] = list((err.field or "").split(".")) if err.field else []
        if parts and parts[0] == "backend_options":
            in_guest = len(parts) > 1 and parts[1] in self.guest.backend_options
            path: list[str | int] = (["guest", *parts] if in_guest
                                     else ["backend_options", backend, *parts[1:]])
        elif parts:
            path = ["guest", *parts]
        else:
            path = ["guest"]
        line = line_of(self._text, path) if self._text is not None else None
        return ConfigError(f"{err.message} (backend {backend})", field=_dotted(path),
                           source=self._source, line=line)

    def known_layers(self) -> set[str]:
        return {FIRMWARE, HOST, L1, *self.guest.workloads, *self.guest.services}


# --------------------------------------------------------------------------------------------
# Line numbers for fields (tomllib gives none)

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _split_dotted(key: str) -> list[str] | None:
    """Split a TOML dotted key (``a."b.c".d``) into its parts; None if it is not one."""
    parts: list[str] = []
    i, n = 0, len(key)
    while i < n:
        while i < n and key[i] in " \t":
            i += 1
        if i < n and key[i] in "\"'":
            q = key[i]
            j = key.find(q, i + 1)
            if j < 0:
                return None
            parts.append(key[i + 1:j])
            i = j + 1
        else:
            m = _BARE.match(key, i)
            if not m:
                return None
            parts.append(m.group(0))
            i = m.end()
        while i < n and key[i] in " \t":
            i += 1
        if i < n:
            if key[i] != ".":
                return None
            i += 1
    return parts or None


def _scan(line: str) -> tuple[str, int, str | None]:
    """Strip a comment; return (code, bracket balance outside strings, an unterminated
    multi-line string delimiter if one opens on this line)."""
    out: list[str] = []
    depth = 0
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            q = line[i:i + 3]
            j = line.find(q, i + 3)
            if j < 0:
                out.append(line[i:])
                return "".join(out), depth, q
            out.append(line[i:j + 3])
            i = j + 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if (c == '"' and line[j] == "\\") else 1
            out.append(line[i:j + 1])
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        out.append(c)
        i += 1
    return "".join(out), depth, None


def key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map every table, array-of-tables element and key of a TOML text to its line (1-based).

    Paths use the data's shape: ``("steps", 2, "range")`` is the ``range`` key of the third
    ``[[steps]]``. Keys inside a multi-line value map to the line where the value starts.
    """
    lines: dict[tuple[str | int, ...], int] = {}
    counts: dict[tuple[str | int, ...], int] = {}
    current: tuple[str | int, ...] = ()
    in_string: str | None = None
    depth = 0

    def resolve(parts: list[str]) -> tuple[str | int, ...]:
        path: tuple[str | int, ...] = ()
        for p in parts:
            path += (p,)
            if path in counts:  # an array of tables: refer to its last element
                path += (counts[path] - 1,)
        return path

    def note(path: tuple[str | int, ...], no: int) -> None:
        for k in range(1, len(path) + 1):
            lines.setdefault(path[:k], no)

    for no, raw in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if in_string in raw:
                rest = raw.split(in_string, 1)[1]
                in_string = None
                depth += _scan(rest)[1]
            continue
        code, balance, opened = _scan(raw)
        if depth > 0:
            depth += balance
            in_string = opened
            continue
        s = code.strip()
        if not s:
            continue
        if s.startswith("[["):
            parts = _split_dotted(s[2:s.rfind("]]")])
            if parts:
                parent = resolve(parts[:-1]) + (parts[-1],)
                counts[parent] = counts.get(parent, 0) + 1
                current = parent + (counts[parent] - 1,)
                note(current, no)
                lines[current] = no
            continue
        if s.startswith("["):
            parts = _split_dotted(s[1:s.rfind("]")])
            if parts:
                current = resolve(parts)
                note(current, no)
                lines[current] = no
            continue
        eq = _find_eq(s)
        if eq > 0:
            parts = _split_dotted(s[:eq])
            if parts:
                path = current + tuple(parts)
                note(path, no)
                lines[path] = no
                for sub in re.finditer(r"([A-Za-z0-9_-]+)\s*=", s[eq + 1:]):
                    lines.setdefault(path + (sub.group(1),), no)
        depth = max(balance, 0)
        in_string = opened
    return lines


def _find_eq(s: str) -> int:
    """Index of the ``=`` that ends the key of a key/value line (outside quotes), or -1."""
    quote: str | None = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "=":
            return i
    return -1


def line_of(text: str, path: Sequence[str | int]) -> int | None:
    """Line of the key or table at ``path`` (or of its nearest enclosing one) in TOML text."""
    table = key_lines(text)
    p = tuple(path)
    while p:
        if p in table:
            return table[p]
        p = p[:-1]
    return None


def _data_path(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """The part of a pydantic error location that exists in the input data.

    Pydantic locations carry union tags (``op``, ``validate``) and wrapper fields
    (``operation``) that are not keys of the file; a tag may also be a key (``op``). This
    picks the reading that follows the data furthest, keeping a final missing key."""

    def walk(cur: Any, rest: Sequence[str | int]) -> list[str | int]:
        if not rest:
            return []
        part, tail = rest[0], rest[1:]
        options: list[list[str | int]] = []
        if part in _TAGS or part == "operation":  # on a tie, read it as a tag
            options.append(walk(cur, tail))
        present = (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur))
        if present:
            options.append([part, *walk(cur[part], tail)])
        elif isinstance(cur, dict) and isinstance(part, str) and not tail \
                and part not in _TAGS and part != "operation":
            options.append([part])  # a missing key
        if not options:
            options.append(walk(cur, tail))
        return max(options, key=len)

    return walk(data, list(loc))


_TAGS = frozenset({"op", "macro", "validate", "rescind", "convert", "set-access", "create-vcpu",
                   "delete-vcpu", "attest", "inject-interrupt", "eoi", "configure-interrupts",
                   "extend-measurement", "bring-up", "share-round", "attest-each-layer",
                   "interrupts", "function-after", "function-before", "function-wrap"})


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _clean_message(msg: str) -> str:
    if msg == "Field required":
        return "this required field is missing"
    if msg == "Extra inputs are not permitted":
        return "unknown field (not allowed here)"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


# --------------------------------------------------------------------------------------------
# Loading


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """``tomllib.loads`` whose syntax errors become a :class:`ConfigError` with the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        msg = str(err)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        if "end of document" in msg:
            line = len(text.splitlines()) or 1
        detail = re.sub(r" \(at .*\)$", "", msg)
        raise ConfigError(f"TOML syntax error: {detail}", source=source, line=line) from None


def config_error(err: ValidationError, data: Any, text: str, source: str) -> ConfigError:
    """The first error of a pydantic validation of TOML ``data``, with its dotted field and
    the line of that field in ``text``."""
    first = err.errors()[0]
    path = _data_path(data, first["loc"])
    return ConfigError(_clean_message(first["msg"]), field=_dotted(path) or None,
                       source=source, line=line_of(text, path))


def loads_scenario(text: str, source: str = "<scenario>", *, name: str | None = None
                   ) -> Scenario:
    """Parse and validate a scenario from TOML text. Raises :class:`ConfigError` only."""
    data = parse_toml(text, source)
    if name is not None:
        data.setdefault("name", name)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise config_error(err, data, text, source) from None
    _check(scenario, data, text, source)
    scenario._source = source
    scenario._text = text
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file. A missing or unreadable file is a :class:`ConfigError` too."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", source=str(p)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a TOML file", source=str(p)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the file: {err}", source=str(p)) from None
    return loads_scenario(text, str(p), name=p.stem)


def _check(s: Scenario, data: dict[str, Any], text: str, source: str) -> None:
    """Cross-field rules pydantic cannot see: layers exist, ranges fit and do not overlap."""

    def fail(msg: str, *path: str | int) -> None:
        raise ConfigError(msg, field=_dotted(path), source=source, line=line_of(text, path))

    workloads = s.guest.workloads
    known = s.known_layers()
    memory = s.guest.memory
    seen: dict[str, int] = {}
    for i, spec in enumerate(s.layers):
        if spec.name not in workloads:
            fail(f"'{spec.name}' is not a workload layer of this guest (it has "
                 f"{', '.join(workloads)}; set guest.workload_layers)", "layers", i, "name")
        if spec.name in seen:
            fail(f"layer '{spec.name}' appears twice", "layers", i, "name")
        seen[spec.name] = i
        if spec.memory is not None and spec.memory.end > memory:
            fail(f"range {spec.memory} ends beyond guest memory ({format_size(memory)})",
                 "layers", i, "memory")
        for j, r in enumerate(spec.shared):
            inside = spec.memory or GpaRange.of(0, memory)
            if r.start < inside.start or r.end > inside.end:
                fail(f"shared range {r} is not inside the layer's memory {inside}",
                     "layers", i, "shared", j)
    specs = s.layer_specs()
    for a in range(len(specs)):
        for b in range(a + 1, len(specs)):
            ra, rb = specs[a].memory, specs[b].memory
            if ra is not None and rb is not None and ra.overlaps(rb):
                fail(f"memory of {specs[b].name} {rb} overlaps {specs[a].name} {ra}",
                     "layers", seen.get(specs[b].name, 0), "memory")
    for i, step in enumerate(s.steps):
        raw = data["steps"][i]
        if isinstance(step, OperationStep):
            op = step.operation
            for fname in ("layer", "target"):
                value = getattr(op, fname, None)
                if value is not None and value not in known:
                    fail(f"no layer '{value}' in this guest (layers: {', '.join(sorted(known))})",
                         "steps", i, fname if fname in raw else "op")
            rng = getattr(op, "range", None)
            if isinstance(rng, GpaRange) and rng.end > memory:
                fail(f"range {rng} ends beyond guest memory ({format_size(memory)})",
                     "steps", i, "range")
            continue
        layer_fields: list[tuple[str, list[str]]] = []
        if isinstance(step, ShareRound):
            layer_fields.append(("layer", [step.layer]))
            if step.range is not None and step.range.end > memory:
                fail(f"range {step.range} ends beyond guest memory ({format_size(memory)})",
                     "steps", i, "range")
        elif isinstance(step, (BringUp, AttestEachLayer)):
            layer_fields.append(("layers", list(step.layers or [])))
        elif isinstance(step, Interrupts):
            layer_fields += [("targets", list(step.targets or [])),
                             ("requester", [step.requester]),
                             ("configure_from", [step.configure_from])]
        for fname, values in layer_fields:
            allowed = known if fname in ("requester", "configure_from") else set(workloads)
            for v in values:
                if v not in allowed:
                    fail(f"no layer '{v}' here (allowed: {', '.join(sorted(allowed))})",
                         "steps", i, fname)
    if s.costs:
        try:
            s.cost_table(CostTable())
        except ConfigError as err:
            path = ("costs", *(err.field or "").split("."))
            raise ConfigError(err.message, field=_dotted([p for p in path if p]), source=source,
                              line=line_of(text, path)) from None


# --------------------------------------------------------------------------------------------
# The example / default scenario

EXAMPLE_SCENARIO = '''\
# cocopart scenario: one partitioned guest and the steps to run on it.
# Run it with:   cocopart compare THIS_FILE.toml      (every installed backend, side by side)
#                cocopart setup THIS_FILE.toml        (one backend, with a summary)
# Sizes are bytes or strings such as "2MiB", "64GiB"; ranges are { start = ..., size = ... }.

name = "default"
description = "64 GiB, 16 vCPUs, 2 workload layers: bring-up, share round, attestation, interrupts"

[guest]                       # the PartitionConfig (cocopart.model)
memory = "64GiB"
vcpus = 16
workload_layers = 2           # l2.1 and l2.2 (SNP: VMPL1/VMPL2..., TDX: L2 VM 1 and 2)
interrupt_mode = "alternate"  # direct | restricted | alternate | secure-avic
strategy = "optimal"          # optimal (architectural minimum) | linux (what Linux does today)
services = ["vtpm"]           # services of the privileged layer (SVSM / L1)
seed = "cocopart"             # seed of the simulated attestation roots

# Options each backend receives as PartitionConfig.backend_options (its section only).
[backend_options.sev-snp]
# workload_vmpls = [1, 2]     # VMPL of l2.1, l2.2 (default: [2] / [1, 2] / [1, 2, 3])
# host_page_size = "2M"       # "4K": the host backs private memory with 4K RMP entries
# call_protocol = "ghcb"      # "msr": SVSM calls through the GHCB MSR protocol
# product = "Milan"           # "Genoa" | "Turin": simulated AMD-SP and report layout

[backend_options.tdx]
# host_mapping = "4K"         # upstream KVM maps private memory at 4K; "2M": 512x fewer AUGs
# module = "1.5"              # "2.0": 1G accept and TDG.MEM.PAGE.RELEASE
# gpaw = 48                   # 52: the shared bit is bit 51
# enable_tdvmcall = false     # true: an L2's TDG.VP.VMCALL goes straight to the host

# Optional cost overrides in ns (same layout as examples/costs.toml):
# [costs.primitives]
# PVALIDATE = 150

# How the workload layers use guest RAM (validated by bring-up) and their vCPUs.
[[layers]]
name = "l2.1"
memory = { start = 0, size = "32GiB" }
vcpus = 16

[[layers]]
name = "l2.2"
memory = { start = "32GiB", size = "32GiB" }
vcpus = 16

# The steps, in order. A step is a macro or one operation (op = "validate", ...).
[[steps]]
macro = "bring-up"            # validate each layer's RAM from that layer, create its vCPUs

[[steps]]
macro = "share-round"         # convert to shared and back to private
layer = "l2.1"
range = { start = "16GiB", size = "2MiB" }

[[steps]]
macro = "attest-each-layer"   # evidence from l2.1 and l2.2
source = "service"            # service (privileged-layer attestation) | hardware | both

[[steps]]
macro = "interrupts"          # configure the mode, inject a few vectors into each layer
vectors = [0x20, 0x30, 0xec]
'''


def default_scenario() -> Scenario:
    """The default scenario (also ``examples/default.toml`` and ``cocopart scenario new``)."""
    return loads_scenario(EXAMPLE_SCENARIO, "<default scenario>")


# --------------------------------------------------------------------------------------------
# Results


class OperationOutcome(BaseModel):
    """One operation a step issued and what it did."""

    model_config = ConfigDict(ser_json_bytes="hex")

    op: str = Field(description="Operation kind, e.g. 'validate'.")
    layer: str = Field(description="The requesting layer.")
    operation: str = Field(description="The operation with its arguments.")
    status: Status
    reason: str | None = None
    error: ArchError | None = None
    primitives: int = 0
    world_switches: int = 0
    estimated_ns: float = 0.0
    route: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, op: Operation, result: OperationResult, keep_data: bool) -> OperationOutcome:
        data = result.model_dump(mode="json")["data"]
        route = data.pop("route", None)
        return cls(op=op.op, layer=op.layer, operation=result.operation, status=result.status,
                   reason=result.reason, error=result.error, primitives=result.primitives,
                   world_switches=result.world_switches, estimated_ns=result.estimated_ns,
                   route=route if isinstance(route, str) else None,
                   data=data if keep_data else {})


_SEVERITY = {Status.OK: 0, Status.NOT_SUPPORTED: 1, Status.PARTIAL: 2, Status.ERROR: 3}


def worst(statuses: Sequence[Status]) -> Status:
    """The most severe status (error > partial > not-supported > ok)."""
    return max(statuses, key=lambda s: _SEVERITY[s], default=Status.OK)


class StepResult(BaseModel):
    """What one scenario step did on one backend."""

    index: int
    name: str
    kind: Literal["operation", "macro"]
    operations: list[OperationOutcome]
    primitives: int
    world_switches: int
    estimated_ns: float
    status: Status
    reason: str | None = None


class RunTotals(BaseModel):
    steps: int
    operations: int
    primitives: int
    world_switches: int
    estimated_ns: float
    status: Status
    failed_steps: list[str] = Field(default_factory=list,
                                    description="Steps whose status is error or partial.")
    unsupported_steps: list[str] = Field(default_factory=list)


class ScenarioRun(BaseModel):
    """A scenario executed on one backend."""

    scenario: str
    backend: str
    backend_title: str = ""
    backend_version: str = ""
    vendor: str = ""
    strategy: Strategy
    config: PartitionConfig
    steps: list[StepResult]
    totals: RunTotals

    @property
    def failed(self) -> bool:
        return self.totals.status in (Status.ERROR, Status.PARTIAL)


# --------------------------------------------------------------------------------------------
# Running

ProgressFn = Callable[[int, int, str], None]


def _report_data(layer: str, given: str | None) -> bytes:
    if given is not None:
        return bytes.fromhex(given)
    return hashlib.sha512(f"cocopart:{layer}".encode()).digest()


class Runner:
    """Runs a scenario on one backend. ``partition`` stays available for inspection.

    ``progress(done, total, label)`` is called after each operation (``total`` is the number
    of operations the scenario is expected to issue).
    """

    def __init__(self, scenario: Scenario, backend: str | Backend, *,
                 strategy: Strategy | None = None, costs: CostTable | Path | None = None,
                 keep_data: bool = True) -> None:
        self.scenario = scenario
        self.backend = load_backend(backend) if isinstance(backend, str) else backend
        self.config = scenario.config_for(self.backend.name, strategy)
        if isinstance(costs, Path):
            table = load_cost_overrides(self.backend.cost_table(), costs)
        else:
            table = costs if costs is not None else self.backend.cost_table()
        try:
            self.partition = Partition(self.config, self.backend,
                                       costs=scenario.cost_table(table))
        except ConfigError as err:
            raise scenario.relocate(err, self.backend.name) from None
        self.keep_data = keep_data
        self.specs = {s.name: s for s in scenario.layer_specs()}

    # -- expansion -------------------------------------------------------------------------
    def expected_operations(self) -> int:
        """How many operations the scenario will issue (for progress bars)."""
        n = 0
        for step in self.scenario.steps:
            if isinstance(step, OperationStep):
                n += 1
            elif isinstance(step, BringUp):
                for name in step.layers or list(self.specs):
                    spec = self.specs[name]
                    n += 1 + len(spec.shared) + ((spec.vcpus or 0) if step.create_vcpus else 0)
            elif isinstance(step, ShareRound):
                n += 3 if step.revalidate else 2
            elif isinstance(step, AttestEachLayer):
                n += len(step.layers or self.config.workloads) * (2 if step.source == "both"
                                                                   else 1)
            else:
                n += 1 + len(step.vectors) * len(step.targets or self.config.workloads)
        return n

    def _expand(self, step: Any) -> Iterator[Operation]:
        p = self.partition
        if isinstance(step, OperationStep):
            yield step.operation
        elif isinstance(step, BringUp):
            names = step.layers or list(self.specs)
            for name in names:
                spec = self.specs[name]
                assert spec.memory is not None
                yield ValidatePages(range=spec.memory, layer=name)
                for r in spec.shared:
                    yield ConvertPages(range=r, to="shared", layer=name)
            if step.create_vcpus:
                for name in names:
                    running = {v.vcpu for v in p.vcpus()
                               if v.layer == name and v.state == "running"}
                    for v in range(self.specs[name].vcpus or 0):
                        if v not in running:
                            yield CreateVcpu(vcpu=v, target=name, layer=name)
        elif isinstance(step, ShareRound):
            rng = step.range
            if rng is None:
                mem = self.specs[step.layer].memory if step.layer in self.specs else None
                rng = GpaRange.of(mem.start if mem else 0, PAGE_2M)
            yield ConvertPages(range=rng, to="shared", layer=step.layer)
            yield ConvertPages(range=rng, to="private", layer=step.layer)
            if step.revalidate:
                view = p.memory_view(rng.start, rng.end)
                if not all(r.private and r.validated for r in view):
                    yield ValidatePages(range=rng, layer=step.layer)
        elif isinstance(step, AttestEachLayer):
            sources = ["hardware", "service"] if step.source == "both" else [step.source]
            for layer in step.layers or list(self.config.workloads):
                for src in sources:
                    yield Attest(layer=layer, source=src,
                                 report_data=_report_data(layer, step.report_data),
                                 service=step.service)
        elif isinstance(step, Interrupts):
            mode = step.mode or self.config.interrupt_mode
            yield ConfigureInterrupts(mode=mode, layer=step.configure_from)
            for target in step.targets or list(self.config.workloads):
                for vector in step.vectors:
                    yield InjectInterrupt(vcpu=step.vcpu, target=target, vector=vector,
                                          layer=step.requester)

    @staticmethod
    def step_name(step: Any) -> str:
        if step.name:
            return str(step.name)
        if isinstance(step, OperationStep):
            return str(step.operation.op)
        return str(step.macro)

    # -- running ---------------------------------------------------------------------------
    def run_step(self, index: int, step: Any, progress: Callable[[str], None] | None = None
                 ) -> StepResult:
        outcomes: list[OperationOutcome] = []
        for op in self._expand(step):
            try:
                result = self.partition.run(op)
            except CocopartError as err:  # misuse the model refused: a result, not a crash
                result = OperationResult(operation=op.describe(), status=Status.ERROR,
                                         reason=str(err))
            outcomes.append(OperationOutcome.of(op, result, self.keep_data))
            if progress is not None:
                progress(op.describe())
        status = worst([o.status for o in outcomes])
        reason = next((f"{o.operation}: {o.reason or o.status.value}" for o in outcomes
                       if o.status is status and status is not Status.OK), None)
        return StepResult(
            index=index, name=self.step_name(step),
            kind="operation" if isinstance(step, OperationStep) else "macro",
            operations=outcomes, primitives=sum(o.primitives for o in outcomes),
            world_switches=sum(o.world_switches for o in outcomes),
            estimated_ns=sum(o.estimated_ns for o in outcomes), status=status, reason=reason)

    def run(self, progress: ProgressFn | None = None) -> ScenarioRun:
        total = self.expected_operations()
        done = 0

        def tick(label: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, max(total, done), label)

        steps = [self.run_step(i, s, tick) for i, s in enumerate(self.scenario.steps)]
        status = worst([s.status for s in steps])
        totals = RunTotals(
            steps=len(steps), operations=sum(len(s.operations) for s in steps),
            primitives=sum(s.primitives for s in steps),
            world_switches=sum(s.world_switches for s in steps),
            estimated_ns=sum(s.estimated_ns for s in steps), status=status,
            failed_steps=[s.name for s in steps if s.status in (Status.ERROR, Status.PARTIAL)],
            unsupported_steps=[s.name for s in steps if s.status is Status.NOT_SUPPORTED])
        b = self.backend
        return ScenarioRun(scenario=self.scenario.name, backend=b.name, backend_title=b.title,
                           backend_version=b.version, vendor=b.vendor,
                           strategy=self.config.strategy, config=self.config, steps=steps,
                           totals=totals)


def run_scenario(scenario: Scenario, backend: str | Backend, *,
                 strategy: Strategy | None = None, progress: ProgressFn | None = None,
                 keep_data: bool = True) -> ScenarioRun:
    """Run ``scenario`` on ``backend`` and return the per-step results."""
    return Runner(scenario, backend, strategy=strategy, keep_data=keep_data).run(progress)

