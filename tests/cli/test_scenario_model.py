"""cocopart.scenario: loading (errors with file, line and field), macros and the runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import FAKES, SMALL

from cocopart.errors import ConfigError
from cocopart.model import GIB, MIB, GpaRange
from cocopart.ops import Status
from cocopart.scenario import (
    BringUp,
    OperationStep,
    Runner,
    Scenario,
    ScenarioRun,
    ShareRound,
    default_scenario,
    key_lines,
    load_scenario,
    loads_scenario,
    run_scenario,
)


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        loads_scenario(text, "f.toml")
    return err.value


def test_key_lines_tables_arrays_dotted_and_multiline() -> None:
    text = (
        'name = "x"\n'  # 1
        "[guest]\n"  # 2
        'memory = "1GiB"  # comment\n'  # 3
        '[backend_options."sev-snp"]\n'  # 4
        "a.b = 1\n"  # 5
        "[[steps]]\n"  # 6
        'macro = "bring-up"\n'  # 7
        "[[steps]]\n"  # 8
        "vectors = [\n"  # 9
        "  32,\n"  # 10
        "]\n"  # 11
        "range = { start = 0, size = 4096 }\n"  # 12
        'd = """\n'  # 13
        "x = 1\n"  # 14
        '"""\n'
    )  # 15
    lines = key_lines(text)
    assert lines[("name",)] == 1 and lines[("guest", "memory")] == 3
    assert lines[("backend_options", "sev-snp", "a", "b")] == 5
    assert lines[("steps", 0)] == 6 and lines[("steps", 1)] == 8
    assert lines[("steps", 1, "vectors")] == 9
    assert lines[("steps", 1, "range", "size")] == 12
    assert ("steps", 1, "x") not in lines  # inside a multi-line string


@pytest.mark.parametrize(
    "text,line,field,words",
    [
        ("[guest]\nmemory = \n", 2, None, "TOML syntax error"),
        ("[guest]\nmemory = [1,\n", 2, None, "TOML syntax error"),
        ('[guest]\nmemory = "1KiB"\n', 2, "guest.memory", "between"),
        (
            '[guest]\nworkload_layers = 2\n[[steps]]\nop = "validate"\n',
            3,
            "steps.0.range",
            "missing",
        ),
        ('[[steps]]\nmacro = "share-round"\nlayer = "l2.2"\n', 3, "steps.0.layer", "l2.2"),
        (
            '[[steps]]\nop = "attest"\nreport_data = "00"\nsource = "tpm"\n',
            4,
            "steps.0.source",
            "hardware",
        ),
        (
            '[[layers]]\nname = "l2.1"\nshared = [{ start = "32GiB", size = "2MiB" }]\n',
            3,
            "layers.0.shared.0",
            "not inside",
        ),
        (
            (
                '[guest]\nworkload_layers = 2\n[[layers]]\nname = "l2.1"\nmemory = {start = 0, size = '
                '"8GiB"}\n[[layers]]\nname = "l2.2"\nmemory = {start = "4GiB", size = "8GiB"}\n'
            ),
            8,
            "layers.1.memory",
            "overlaps",
        ),
        ('[costs.primitives]\nPVALIDATE = "fast"\n', 2, "costs.primitives.PVALIDATE", "ns"),
        ("surprise = 1\n", 1, "surprise", "unknown field"),
    ],
)
def test_loading_errors_name_line_and_field(
    text: str, line: int, field: str | None, words: str
) -> None:
    err = error_of(text)
    assert err.source == "f.toml" and err.line == line, str(err)
    assert err.field == field
    assert words in str(err)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_scenario(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="directory"):
        load_scenario(tmp_path)


def test_default_scenario_and_layer_defaults() -> None:
    s = default_scenario()
    assert s.guest.memory == 64 * GIB and s.guest.vcpus == 16 and s.guest.workload_layers == 2
    assert [type(x).__name__ for x in s.steps] == [
        "BringUp",
        "ShareRound",
        "AttestEachLayer",
        "Interrupts",
    ]
    plain = loads_scenario('[guest]\nmemory = "10MiB"\nworkload_layers = 3\nvcpus = 2\n')
    specs = plain.layer_specs()
    assert [sp.memory for sp in specs] == [
        GpaRange.of(0, 2 * MIB),
        GpaRange.of(2 * MIB, 2 * MIB),
        GpaRange.of(4 * MIB, 6 * MIB),
    ]
    assert all(sp.vcpus == 2 for sp in specs)


def test_config_for_backend_options_and_strategy() -> None:
    s = loads_scenario(
        '[guest]\nstrategy = "optimal"\n[backend_options.a]\nx = 1\n[backend_options.b]\ny = 2\n'
    )
    assert s.config_for("a").backend_options == {"x": 1}
    assert s.config_for("b", strategy=None).backend_options == {"y": 2}
    assert s.config_for("c").backend_options == {}
    from cocopart.model import Strategy

    assert s.config_for("a", Strategy.LINUX).strategy is Strategy.LINUX


def test_relocate_backend_option_errors(tmp_path: Path) -> None:
    p = tmp_path / "g.toml"
    p.write_text('[guest]\nmemory = "16MiB"\n\n[backend_options.fake]\nspeed = 3\n')
    s = load_scenario(p)
    moved = s.relocate(ConfigError("unknown option", field="backend_options.speed"), "fake")
    assert moved.source == str(p) and moved.line == 5
    assert moved.field == "backend_options.fake.speed"
    guest = s.relocate(ConfigError("too big", field="memory"), "fake")
    assert guest.line == 2 and guest.field == "guest.memory"


def test_runner_on_the_fake_backend() -> None:
    s = loads_scenario(
        SMALL + '\n[[steps]]\nmacro = "share-round"\n'
        '\n[[steps]]\nmacro = "interrupts"\nvectors = [32, 33]\n'
    )
    runner = Runner(s, FAKES["fake"]())
    assert runner.expected_operations() == (2 + 4) + 1 + 2 + 3 + 1 + 2 * 2
    seen: list[tuple[int, int]] = []
    run = runner.run(lambda done, total, label: seen.append((done, total)))
    assert [st.name for st in run.steps] == [
        "bring-up",
        "grant l2.2 read",
        "attest-each-layer",
        "share-round",
        "interrupts",
    ]
    assert run.steps[0].status is Status.OK and len(run.steps[0].operations) == 6
    assert run.steps[3].status is Status.NOT_SUPPORTED  # the fake host shares nothing
    assert run.totals.status is Status.NOT_SUPPORTED and not run.failed
    assert run.totals.primitives == sum(st.primitives for st in run.steps) > 0
    assert seen[-1][0] == run.totals.operations
    again = ScenarioRun.model_validate_json(run.model_dump_json())
    assert again.totals == run.totals
    json.loads(run.model_dump_json())


def test_bring_up_skips_running_vcpus_and_run_scenario() -> None:
    s = Scenario(guest={"memory": "16MiB", "vcpus": 2}, steps=[BringUp(), BringUp()])
    run = run_scenario(s, FAKES["fake"](), keep_data=False)
    first, second = run.steps
    assert [o.op for o in first.operations] == ["validate", "create-vcpu", "create-vcpu"]
    assert [o.op for o in second.operations] == ["validate"]  # vCPUs already run


def test_operation_step_inline_and_share_round_default_range() -> None:
    s = loads_scenario(
        '[guest]\nworkload_layers = 2\n[[layers]]\nname = "l2.1"\n'
        '[[layers]]\nname = "l2.2"\nmemory = {start = "8GiB", size = "8GiB"}\n'
        '[[steps]]\nname = "v"\nop = "validate"\nlayer = "l2.2"\n'
        'range = {start = "8GiB", size = "2MiB"}\n'
        '[[steps]]\nmacro = "share-round"\nlayer = "l2.2"\n'
    )
    step = s.steps[0]
    assert isinstance(step, OperationStep) and step.name == "v"
    assert step.operation.layer == "l2.2"
    assert isinstance(s.steps[1], ShareRound)
    ops = list(Runner(s, FAKES["fake"]())._expand(s.steps[1]))
    assert ops[0].range == GpaRange.of(8 * GIB, 2 * MIB)  # type: ignore[union-attr]
