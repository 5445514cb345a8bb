"""The roles' shape: tasks/main.yml an index of one-concern files, a switch that leaves systemd
alone, and roles that meet only through the play's wiring (or a declared dependency)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
ROLES = sorted(p.name for p in (ANSIBLE / "roles").iterdir() if (p / "tasks/main.yml").exists())
INDEX_MODULES = {"ansible.builtin.import_tasks", "ansible.builtin.include_tasks", "ansible.builtin.assert",
                 "ansible.builtin.include_vars"}


def load(path: Path):
    return yaml.safe_load(path.read_text()) if path.exists() else None


def role_text(role: str) -> str:
    """Everything a role evaluates: tasks, handlers, defaults, vars, templates."""
    folder = ANSIBLE / "roles" / role
    return "\n".join(p.read_text() for sub in ("tasks", "handlers", "defaults", "vars", "templates")
                     for p in sorted((folder / sub).rglob("*")) if p.is_file())


def dependencies(role: str) -> set[str]:
    meta = load(ANSIBLE / "roles" / role / "meta/main.yml") or {}
    return {d if isinstance(d, str) else d["role"] for d in meta.get("dependencies") or []}


@pytest.mark.parametrize("role", ROLES)
def test_main_is_an_index_of_concern_files(role):
    tasks = load(ANSIBLE / "roles" / role / "tasks/main.yml")
    modules = [next(k for k in task if k.startswith("ansible.")) for task in tasks]
    assert set(modules) <= INDEX_MODULES, f"{role}/tasks/main.yml does work itself: {modules}"
    files = [task[m] for task, m in zip(tasks, modules) if m.endswith("_tasks")]
    assert "install.yml" in files
    for name in files:
        assert (ANSIBLE / "roles" / role / "tasks" / name).exists(), name


@pytest.mark.parametrize("role", [r for r in ROLES if (ANSIBLE / "roles" / r / "tasks/service.yml").exists()])
def test_a_switch_leaves_systemd_alone(role):
    """<role>_service_manage false: only install.yml and configure.yml run, no handler touches systemd."""
    switch = f"{role}_service_manage"
    assert load(ANSIBLE / "roles" / role / "defaults/main.yml")[switch] is True
    specs = load(ANSIBLE / "roles" / role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert specs[switch]["type"] == "bool"
    for task in load(ANSIBLE / "roles" / role / "tasks/main.yml"):
        target = task.get("ansible.builtin.import_tasks") or task.get("ansible.builtin.include_tasks")
        if target and target not in ("install.yml", "configure.yml"):
            assert switch in str(task.get("when", "")), f"{target} runs without {switch}"
    for handler in load(ANSIBLE / "roles" / role / "handlers/main.yml") or []:
        assert handler.get("when") == f"{switch} | bool", handler["name"]
    for name in ("install.yml", "configure.yml"):
        text = (ANSIBLE / "roles" / role / "tasks" / name).read_text()
        assert not re.search(r"systemd_service|ansible\.builtin\.(service|uri):|meta: flush_handlers", text), \
            f"{role}/tasks/{name} needs a running system"


@pytest.mark.parametrize("role", ROLES)
def test_roles_meet_only_through_the_play(role):
    """No role reads another's private (__) variables; only a declared dependency's public ones."""
    text = role_text(role)
    for other in set(ROLES) - {role}:
        assert not re.search(rf"(?<![.\w])__{other}_", text), f"{role} reads private variables of {other}"
        if other not in dependencies(role):
            used = sorted(set(re.findall(rf"(?<![.\w]){other}_[a-z_]+", text)) - {f"{role}_{other}"})
            assert not used, f"{role} reads {other}'s variables {used}; wire them in group_vars"


def test_the_wiring_names_only_variables_that_exist():
    wiring = load(ANSIBLE / "group_vars/all/wiring.yml")
    defaults = {k for role in ROLES for k in (load(ANSIBLE / "roles" / role / "defaults/main.yml") or {})}
    for name, value in wiring.items():
        assert name in defaults, f"wiring.yml sets {name}, which no role has"
        for used in re.findall(r"\b[a-z]+_[a-z_]+\b", str(value)):
            if used.split("_")[0] in ROLES or used.startswith("cwl_airflow_"):
                assert used in defaults, f"wiring.yml reads {used}, which no role has"
