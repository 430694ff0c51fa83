"""The simulated guest's reports carry its launch digest (SNP_LAUNCH_UPDATE chaining over the
SVSM image, secrets and CPUID pages and one VMSA per vCPU), so a policy can pin it."""

from __future__ import annotations

from cocopart_sev_snp import measure
from cocopart_sev_snp.simroots import CPUID

from cocopart.attest.evidence import Evidence
from cocopart.attest.policy import Policy
from cocopart.attest.verifier import TrustStore, Verifier
from cocopart.ops import Attest
from cocopart.partition import Partition


def _evidence(vcpus: int, seed: str = "cocopart") -> Evidence:
    p = Partition({"memory": "64MiB", "vcpus": vcpus, "seed": seed}, "sev-snp")
    r = p.run(Attest(report_data=b"\x07" * 64))
    assert r.ok, r.reason
    return Evidence.model_validate(r.data["evidence"])


def test_report_measurement_is_the_launch_digest() -> None:
    sig = measure.cpu_signature(*CPUID["Milan"])
    want = measure.simulated_launch_digest("cocopart", 2, sig)
    # the same chain written out step by step
    ld = measure.LaunchDigest()
    image = measure.simulated_svsm_image("cocopart")
    ld.add_normal(measure.SIM_SVSM_GPA, image)
    end = measure.SIM_SVSM_GPA + len(image)
    ld.add_empty(measure.PageType.SECRETS, end, 4096)
    ld.add_empty(measure.PageType.CPUID, end + 4096, 4096)
    vmsa = measure.svsm_vmsa(measure.SIM_SVSM_GPA + measure.SIM_SVSM_ENTRY, sig)
    ld.add_vmsa(vmsa)
    ld.add_vmsa(vmsa)
    assert ld.value == want and ld.pages == measure.SIM_SVSM_PAGES + 4
    ev = _evidence(2)
    trust = TrustStore().with_root("sev-snp", ev.certificates[-1])
    # service evidence speaks for the SVSM (l1) without the requester entry (issue 13)
    verdict = Verifier(Policy(expected_measurements={"measurement": want}), trust).verify(ev)
    assert verdict.ok, verdict.summary()


def test_measurement_changes_with_vcpus_and_image() -> None:
    sig = measure.cpu_signature(*CPUID["Milan"])
    one = measure.simulated_launch_digest("cocopart", 1, sig)
    assert one != measure.simulated_launch_digest("cocopart", 2, sig)
    assert one != measure.simulated_launch_digest("other", 1, sig)
    ev = _evidence(1)
    trust = TrustStore().with_root("sev-snp", ev.certificates[-1])
    pinned = Policy(
        expected_measurements={  # the SVSM's (l1) evidence (issue 13)
            "measurement": measure.simulated_launch_digest("cocopart", 2, sig)
        }
    )
    verdict = Verifier(pinned, trust).verify(ev)
    assert [c.name for c in verdict.failed] == ["policy.measurement.measurement"]
