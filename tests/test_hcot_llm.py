"""The transformers backend with the local SmolLM2-135M GGUF: batched, JSON validated, calibration never hurts."""

import pytest
from hcot_fakes import rotterdam_facts

from klip_lib.hcot.evaluate import compare_levels

DIMS = ("Terrain", "Water", "Count")


@pytest.fixture(scope="module")
def llm():
    from klip_lib.hcot.backends import BackendError, TransformersBackend

    try:
        return TransformersBackend(max_new_tokens=12, dimensions=DIMS)
    except BackendError as e:
        pytest.skip(str(e))


@pytest.mark.slow
def test_local_llm_levels_and_calibration(llm):
    result = compare_levels([rotterdam_facts()], llm, DIMS, retries=0)
    l0, l5 = result["records"]["L0"][0], result["records"]["L5"][0]
    assert l0["backend"] == "transformers" and l0["level"] == "L0" and l5["level"] == "L5"
    assert all(isinstance(l0[d], str) or l0[d] is None for d in DIMS) and l0["status"] in ("ok", "failed")
    for d in DIMS:  # calibration never lowers accuracy, and after it every asked dimension agrees
        assert (result["accuracy"]["HCoT+L5"][d] or 0) >= (result["accuracy"]["HCoT"][d] or 0)
        assert l5["factcheck"][d] is True
    assert result["repaired"] == sum(l5["draft_factcheck"][d] is False for d in DIMS)
