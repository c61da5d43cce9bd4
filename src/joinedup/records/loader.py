"""Read FHIR resources from a folder of FHIR XML or JSON files, one resource a file, for
loading into the store. The folder is always given by the caller (a test, a command's option):
the product reads nothing outside its own files at run time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from joinedup.errors import InputError
from joinedup.fhir.xml import read_xml_resource
from joinedup.records.validation import CodeSystems


def read_resource(path: Path) -> dict[str, Any]:
    """The FHIR JSON dict of the resource in `path` (`.xml` or `.json`)."""
    if path.suffix == ".xml":
        return read_xml_resource(path)
    try:
        resource = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(str(path), f"not readable JSON ({err})") from None
    if not isinstance(resource, dict):
        raise InputError(str(path), "not a FHIR resource (a JSON object)")
    return resource


def read_folder(folder: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every `.xml` and `.json` file in `folder`, in name order, with its resource."""
    if not folder.is_dir():
        raise InputError(str(folder), "not a folder")
    for path in sorted(folder.iterdir()):
        if path.suffix in (".xml", ".json") and path.is_file():
            yield path, read_resource(path)


def read_code_systems(folder: Path) -> CodeSystems:
    """The CodeSystem resources in `folder` (FHIR XML or JSON files, such as the UK Core
    package's), for `$validate` to check codings against. Files holding other resources are
    passed over, so a whole package's folder may be given; a folder with no CodeSystem is an
    error."""
    found = [r for _, r in read_folder(folder) if r.get("resourceType") == "CodeSystem"]
    if not found:
        raise InputError(str(folder), "holds no CodeSystem resource (.xml or .json)")
    return CodeSystems.of(found)
