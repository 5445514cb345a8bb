"""The [cwl] section of Airflow's configuration (or AIRFLOW__CWL__* variables) and its defaults."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

SECTION = "cwl"
# docker: cwltool's default; podman: its --podman; none: steps that require a container are refused
CONTAINER_ENGINES = ("docker", "podman", "none")
# signatures are checked with a public key: a shared-secret algorithm (HS256) would let anyone
# who can read the verifying key sign
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA")


def _airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()


def _get(key: str, default: str, use_airflow: bool) -> str:
    """One [cwl] option: the environment, then (if asked) Airflow's configuration, then the default."""
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if env is not None or not use_airflow:
        return default if env is None else env
    from airflow.configuration import conf

    return conf.get(SECTION, key, fallback=default)


@dataclass(frozen=True)
class Settings:
    """Folders and options; every folder defaults to a place under AIRFLOW_HOME/cwl."""

    workflows_folder: Path  # uploaded workflows (the DAG files point here)
    inputs_folder: Path  # relative input paths of a job are resolved against it
    data_roots: tuple[Path, ...]  # more folders whose files a job may name (read-only data of the lab)
    http_inputs: bool  # whether a job may name http(s) inputs (the workers fetch them)
    outputs_folder: Path  # <outputs>/<dag_id>/<run_id>/ holds a run's results
    tmp_folder: Path  # <tmp>/<dag_id>/<run_id>/ holds a run's intermediate files (shared by workers)
    reports_folder: Path  # reports waiting for delivery
    queues_file: Path
    keep_tmp_data: bool  # keep tmp data after success too (it is always kept after a failure)
    cwltool_options: str  # extra cwltool options, e.g. "--no-container" or "--parallel"
    container_engine: str  # one of CONTAINER_ENGINES: what runs the steps' containers
    trigger_public_key: str  # PEM or a path: when set, triggers must carry a JWT signed by its private key
    report_private_key: str  # PEM or a path: when set, reports are sent as JWTs signed with it
    jwt_algorithm: str
    signature_audience: str  # the `aud` that signed triggers must name: this appliance
    max_signature_lifetime: int  # seconds a trigger's signature may be valid (exp - iat)
    stop_timeout: int  # seconds a stop request waits for the run's tasks to end
    max_upload_bytes: int  # largest input archive taken, and most it may unpack to
    max_workflow_bytes: int  # largest uploaded workflow document (decompressed)
    uploaders: tuple[str, ...]  # users who may upload workflows ("*": all with DAG edit rights)
    step_socket: str  # the step service's socket (steps run as the step user); empty: in the caller

    @classmethod
    def load(cls, use_airflow: bool = True) -> Settings:
        """The settings; use_airflow=False reads only the environment (no Airflow import)."""
        base = _airflow_home() / "cwl"

        def _opt(key: str, default: str) -> str:
            return _get(key, default, use_airflow)

        def folder(key: str, name: str) -> Path:
            return Path(_opt(key, str(base / name))).expanduser()

        algorithm = _opt("jwt_algorithm", "RS256")
        if algorithm not in JWT_ALGORITHMS:
            raise ValueError(f"[{SECTION}] jwt_algorithm {algorithm!r}: use one of {', '.join(JWT_ALGORITHMS)}")
        engine = _opt("container_engine", "docker")
        if engine not in CONTAINER_ENGINES:
            raise ValueError(f"[{SECTION}] container_engine {engine!r}: use one of {', '.join(CONTAINER_ENGINES)}")
        return cls(
            workflows_folder=folder("workflows_folder", "workflows"),
            inputs_folder=folder("inputs_folder", "inputs"),
            data_roots=tuple(Path(p).expanduser() for p in _opt("data_roots", "").split(os.pathsep) if p),
            http_inputs=_opt("http_inputs", "false").lower() in ("1", "true", "yes"),
            outputs_folder=folder("outputs_folder", "outputs"),
            tmp_folder=folder("tmp_folder", "tmp"),
            reports_folder=folder("reports_folder", "reports"),
            queues_file=folder("queues_file", "queues.yaml"),
            keep_tmp_data=_opt("keep_tmp_data", "false").lower() in ("1", "true", "yes"),
            cwltool_options=_opt("cwltool_options", ""),
            container_engine=engine,
            trigger_public_key=_opt("trigger_public_key", ""),
            report_private_key=_opt("report_private_key", ""),
            jwt_algorithm=algorithm,
            signature_audience=_opt("signature_audience", "") or socket.getfqdn(),
            max_signature_lifetime=int(_opt("max_signature_lifetime", "600")),
            stop_timeout=int(_opt("stop_timeout", "120")),
            max_upload_bytes=int(_opt("max_upload_mib", "4096")) << 20,
            max_workflow_bytes=int(_opt("max_workflow_mib", "16")) << 20,
            uploaders=tuple(name.strip() for name in _opt("uploaders", "").split(",") if name.strip()),
            step_socket=_opt("step_socket", ""),
        )

    @property
    def max_request_bytes(self) -> int:
        """Largest JSON request body: a workflow at no compression, base64-encoded, and a margin."""
        return self.max_workflow_bytes * 4 // 3 + (1 << 20)

    def folders(self) -> list[Path]:
        return [self.workflows_folder, self.inputs_folder, self.outputs_folder, self.tmp_folder, self.reports_folder]

    def run_tmp(self, dag_id: str, run_id: str) -> Path:
        return self.tmp_folder / dag_id / safe_name(run_id)

    def run_outputs(self, dag_id: str, run_id: str) -> Path:
        return self.outputs_folder / dag_id / safe_name(run_id)


def safe_name(value: str) -> str:
    """A run id as one path component (run ids may hold ':' and '+', never '/' after this)."""
    return "".join(c if c.isalnum() or c in "-_.:+" else "_" for c in value).lstrip(".") or "_"


def read_key(value: str) -> str:
    """A key given inline (PEM) or as a path to a file."""
    if not value or value.lstrip().startswith("-----BEGIN"):
        return value
    return Path(value).expanduser().read_text()
