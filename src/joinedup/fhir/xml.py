"""Read one FHIR XML resource (or Bundle) into the dict its FHIR JSON form would give.

The structure (which elements exist, which repeat, which are booleans, integers or decimals)
comes from the element definitions in fhir.resources (its `R4B` models; UK Core is R4, and
R4B is R4 plus additions for the resources joinedup reads); lxml parses the XML. The result is
then validated with the same models, so a resource FHIR would refuse is refused here too.

The conversion itself is ours rather than the library's `model_validate_xml`, because that
drops `id` attributes on elements, puts XML comments in a `fhir_comments` key and rewrites
date-times (`.000Z` and `+00:00` become `Z`, `.1` becomes `.100000`): here every primitive
keeps its exact lexical form, as `json.loads` of the FHIR JSON would have it.
"""

from __future__ import annotations

import decimal
import json
import re
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.types import FhirBase
from lxml import etree
from pydantic import ValidationError

from joinedup.errors import InputError, describe_validation_error

_FHIR = "http://hl7.org/fhir"
_XHTML = "http://www.w3.org/1999/xhtml"
_PARSER = etree.XMLParser(
    remove_comments=True, remove_pis=True, resolve_entities=False, no_network=True
)

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_ELEMENT = get_fhir_model_class("Element")  # what a primitive's id and extensions belong to

Model = type[FHIRAbstractModel]


class _Field(typing.NamedTuple):
    repeats: bool
    kind: type | Model  # bool, int, decimal.Decimal, str (other primitives), or a model class


@cache
def _field(model: Model, name: str) -> _Field | None:
    """How element `name` of `model` is typed, or None if the model has no such element."""
    attr = model.get_alias_mapping().get(name)
    if attr is None or name == "fhir_comments":
        return None
    repeats, kind = False, None
    todo: list[Any] = [model.model_fields[attr].annotation]
    while todo:
        ann = todo.pop()
        origin = typing.get_origin(ann)
        if origin is list:
            repeats = True
        if origin is typing.Annotated:
            kind = ann.__origin__
        elif origin is not None:
            todo.extend(typing.get_args(ann))
        elif isinstance(ann, type) and issubclass(ann, FhirBase):
            kind = ann.get_model_klass()
        elif ann not in (None, types.NoneType):
            kind = ann
    return None if kind is None else _Field(repeats, kind)


def _primitive(value: str | None, kind: type | Model, name: str) -> Any:
    if value is None:
        return None
    if kind is bool:
        if value not in ("true", "false"):
            raise ValueError(f"<{name}>: value is not true or false")
        return value == "true"
    if kind in (int, decimal.Decimal):
        if kind is int and not value.lstrip("-").isdigit():
            raise ValueError(f"<{name}>: value is not an integer")
        if not _NUMBER.fullmatch(value):
            raise ValueError(f"<{name}>: value is not a number")
        return json.loads(value)
    return value


def _resource(element: etree._Element) -> dict[str, Any]:
    qname = etree.QName(element)
    if qname.namespace != _FHIR:
        raise ValueError(f"<{qname.localname}> is not in the FHIR namespace {_FHIR}")
    try:
        model = get_fhir_model_class(qname.localname)
    except ValueError:
        model = None
    if model is None or not issubclass(model, Resource):
        raise ValueError(f"<{qname.localname}> is not a FHIR resource type")
    return {"resourceType": qname.localname, **_element(element, model)}


def _element(element: etree._Element, model: Model) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in ("id", "url"):  # XML attributes on elements; a resource's id is an element
        if attr in element.attrib and not issubclass(model, Resource) and _field(model, attr):
            out[attr] = element.attrib[attr]
    for child in element:
        qname = etree.QName(child)
        if qname.namespace == _XHTML and qname.localname == "div":
            out["div"] = etree.tostring(child, encoding="unicode", with_tail=False)
            continue
        name = qname.localname
        field = _field(model, name) if qname.namespace == _FHIR else None
        if field is None:
            where = model.get_resource_type()
            raise ValueError(f"<{name}> is not an element of {where}")
        if field.kind is Resource:
            found = list(child)
            if len(found) != 1:
                raise ValueError(f"<{name}> must hold exactly one resource")
            value, extra = _resource(found[0]), None
        elif isinstance(field.kind, type) and issubclass(field.kind, FHIRAbstractModel):
            value, extra = _element(child, field.kind), None
        else:
            value = _primitive(child.attrib.get("value"), field.kind, name)
            extra = _element(child, _ELEMENT) if len(child) or "id" in child.attrib else None
            if value is None and extra is None:
                raise ValueError(f"<{name}> has neither a value nor extensions")
        if field.repeats:
            values = out.setdefault(name, [])
            if extra is not None or f"_{name}" in out:
                out.setdefault(f"_{name}", [None] * len(values)).append(extra)
            values.append(value)
        else:
            if name in out or f"_{name}" in out:
                raise ValueError(f"<{name}> appears more than once")
            if value is not None:
                out[name] = value
            if extra is not None:
                out[f"_{name}"] = extra
    return out


def read_xml_resource(path: Path) -> dict[str, Any]:
    """The FHIR JSON dict of the resource in the FHIR XML file `path` (a Bundle stays whole)."""
    try:
        root = etree.parse(str(path), _PARSER).getroot()
    except (OSError, etree.XMLSyntaxError) as err:
        raise InputError(str(path), f"not readable XML ({err})") from None
    try:
        resource = _resource(root)
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except ValueError as err:  # pydantic's ValidationError is a ValueError too
        reason = describe_validation_error(err) if isinstance(err, ValidationError) else str(err)
        raise InputError(str(path), f"not a valid FHIR resource: {reason}") from None
    return resource
