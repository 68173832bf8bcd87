import pytest
from pydantic import ValidationError

from harness.data import DataConfig


def test_data_section_prepares_the_corpus(tmp_path):
    cfg = DataConfig(corpus="synthetic", out=str(tmp_path / "d"), tier="tiny", seed=2, num_jobs=1)
    p = cfg.prepare(progress=False)
    assert p.corpus == "synthetic" and p.info["options"]["seed"] == 2 and p.info["tier"]["name"] == "tiny"


@pytest.mark.parametrize("section, message", [
    ({"corpus": "librispeech"}, "data.src is required"),
    ({"corpus": "aishell", "src": "/x", "tier": "easy"}, "data.tier apply to corpus 'synthetic' only"),
    ({"corpus": "synthetic", "src": "/x"}, "takes no src"),
    ({"corpus": "timit", "src": "/x"}, "corpus"),
    ({"tier": "huge"}, "tier"),
    ({"hours": 0}, "hours"),
    ({"typo": 1}, "typo"),
])
def test_bad_sections_are_named(tmp_path, section, message):
    with pytest.raises(ValidationError, match=message):
        DataConfig(out=str(tmp_path), **section)
