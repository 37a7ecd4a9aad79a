"""The provider as users install it: a wheel with its data inside, seen by Airflow."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import airflow_carbon
from tests.helpers import BUNDLED, wheel_version

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_bundled_data_and_the_entry_points(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"airflow_carbon/data/{name}" for name in BUNDLED} <= set(names)
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "apache_airflow_provider" in entry_points and "airflow-carbon = airflow_carbon.cli:main" in entry_points


def test_the_wheel_carries_the_package_alone(wheel):
    """No tests, benches, example DAGs or build leftovers: only airflow_carbon and its metadata."""
    names = zipfile.ZipFile(wheel).namelist()
    version = wheel_version(wheel)
    assert {name.split("/")[0] for name in names} == {"airflow_carbon", f"airflow_carbon-{version}.dist-info"}
    assert not [name for name in names if "/tests/" in name or "__pycache__" in name or name.endswith(".pyc")]
    assert version == airflow_carbon.__version__


def test_bundled_data_reads_from_the_unpacked_wheel_outside_the_checkout(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import airflow_carbon, sys; from airflow_carbon.signals.bundled import bundled_intensity; "
            "s = bundled_intensity('FR'); print(airflow_carbon.__file__, len(s), s.period_s)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    path, length, period_s = result.stdout.split()
    assert path.startswith(str(tmp_path / "site")) and int(length) > 17000 and period_s == "1800"


def test_provider_info_names_the_distribution():
    from importlib.metadata import distribution

    from airflow_carbon.get_provider_info import get_provider_info

    assert get_provider_info()["package-name"] == distribution("airflow-carbon").metadata["Name"]


# --- the provider info: a literal that agrees with the code it describes ---

HEAVY = ("numpy", "pandas", "sqlalchemy", "matplotlib")


def _provider_info() -> dict:
    from airflow_carbon.get_provider_info import get_provider_info

    return get_provider_info()


def test_provider_info_imports_nothing_heavy():
    """Provider discovery runs in every Airflow process: it must not pay for numpy or pandas."""
    code = "import airflow_carbon.get_provider_info as m; m.get_provider_info()"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "airflow_carbon.get_provider_info" in imported  # the output is the one we mean to read
    heavy = sorted({name.split(".")[0] for name in imported} & set(HEAVY))
    assert not heavy, f"provider discovery imports {heavy}"


def test_provider_info_is_valid_for_airflow():
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(_provider_info(), schema)


def test_the_carbon_config_section_is_the_settings_options_word_for_word():
    from airflow_carbon.settings import CONFIG_OPTIONS, CONFIG_SECTION

    config = _provider_info()["config"]
    assert list(config) == [CONFIG_SECTION]
    options = config[CONFIG_SECTION]["options"]
    assert list(options) == list(CONFIG_OPTIONS)
    for name, (default, description) in CONFIG_OPTIONS.items():
        assert (options[name]["default"], options[name]["description"]) == (default, description), name


def test_every_path_in_the_provider_info_imports():
    from airflow.sdk import BaseOperatorLink
    from airflow.sdk._shared.module_loading import import_string

    info = _provider_info()
    for role in ("sensors", "operators", "triggers", "hooks"):
        for module in (m for entry in info[role] for m in entry["python-modules"]):
            importlib.import_module(module)
    for path in info["extra-links"]:
        assert issubclass(import_string(path), BaseOperatorLink), path
    for decorator in info["task-decorators"]:
        assert callable(import_string(decorator["class-name"])), decorator


def _hook_classes(info: dict) -> dict[str, type]:
    """Every hook with a connection type in the modules the provider info lists, by connection type."""
    from airflow.sdk import BaseHook

    modules = [importlib.import_module(m) for entry in info["hooks"] for m in entry["python-modules"]]
    return {cls.conn_type: cls for module in modules for cls in vars(module).values()
            if isinstance(cls, type) and issubclass(cls, BaseHook) and cls.__module__ == module.__name__
            and isinstance(getattr(cls, "conn_type", None), str)}


def test_each_connection_type_is_its_hooks_with_the_extras_the_hook_documents():
    from airflow.sdk._shared.module_loading import import_string

    info = _provider_info()
    declared = {entry["connection-type"]: entry for entry in info["connection-types"]}
    hooks = _hook_classes(info)
    assert set(declared) == set(hooks)
    for conn_type, entry in declared.items():
        hook = import_string(entry["hook-class-name"])
        assert hook is hooks[conn_type]
        assert (hook.conn_type, hook.hook_name) == (conn_type, entry["hook-name"])
        undocumented = [field for field in entry["conn-fields"] if f"``{field}``" not in (hook.__doc__ or "")]
        assert not undocumented, f"{hook.__name__} does not say what the extra {undocumented} means"
