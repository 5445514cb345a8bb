"""Exit 0 when every requirement given (with its extras' requirements) is installed in the
Python that runs this; else print the unmet ones and exit 1. The roles run pip only then:
pip's resolver takes seconds even when there is nothing to install."""

import sys
from importlib import metadata

from packaging.requirements import Requirement


def unmet(spec: str, seen: set[str]) -> list[str]:
    if spec in seen:
        return []
    seen.add(spec)
    req = Requirement(spec)
    try:
        dist = metadata.distribution(req.name)
    except metadata.PackageNotFoundError:
        return [spec]
    if not req.specifier.contains(dist.version, prereleases=True):
        return [spec]
    missing = []
    for dep in map(Requirement, dist.requires or []):
        # only what an extra asked for: the rest came with the package
        if dep.marker and any(dep.marker.evaluate({"extra": extra}) for extra in req.extras) \
                and not dep.marker.evaluate({"extra": ""}):
            extras = f"[{','.join(sorted(dep.extras))}]" if dep.extras else ""
            missing += unmet(f"{dep.name}{extras}{dep.specifier}", seen)
    return missing


if __name__ == "__main__":
    missing = [m for spec in sys.argv[1:] for m in unmet(spec, set())]
    print("\n".join(missing))
    sys.exit(1 if missing else 0)
