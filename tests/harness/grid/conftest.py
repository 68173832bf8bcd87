import pytest

from gridtext import BASE

@pytest.fixture
def write_grid(tmp_path):
    """Write a grid file (``BASE`` when no text is given) and return its path."""

    def write(text: str = BASE, name: str = "g.yaml") -> str:
        p = tmp_path / name
        p.write_text(text.replace("DATA", str(tmp_path / "data")))
        return str(p)

    return write
