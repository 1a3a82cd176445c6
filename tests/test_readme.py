"""The README's configuration reference lists every setting."""

from pathlib import Path

from portico.settings import Settings


def test_every_setting_is_documented() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [
        f"PORTICO_{name.upper()}" for name in Settings.model_fields if f"PORTICO_{name.upper()}" not in readme
    ]
    assert not missing, f"README.md does not document {missing}"
