"""Checks Kubernetes manifests against the API's schema as the Kubernetes
Python client (Debian's python3-kubernetes) carries it: the model classes
generated from the Kubernetes OpenAPI specification. Every object must be a
known apiVersion/kind; every field must exist in its model (a misspelt or
misplaced field is an error, as `kubectl apply --validate=strict` makes it);
every value must have the field's type; the models themselves check that
required fields are there. (Values are not checked beyond their type: a
Service `type: Bogus` passes.) Prints the documents as one JSON array, or
one line per error on standard error and exits 1.

    /usr/bin/python3 kubernetes_schema.py FILE.yaml...
"""
import json
import re
import sys

import yaml
from kubernetes.client import models


class Invalid(Exception):
    pass


def model_class(api_version, kind):
    version = api_version.split("/")[-1]
    cls = getattr(models, version[0].upper() + version[1:] + kind, None)
    if cls is None:
        raise Invalid(f"unknown apiVersion/kind {api_version}/{kind}")
    return cls


def check(value, typ, path):
    """Checks `value` against the client's type name `typ`; returns what the model takes."""
    if typ == "object":  # IntOrString and free-form fields
        return value
    if typ in ("str", "datetime"):
        if not isinstance(value, str):
            raise Invalid(f"{path}: a string is expected, not {value!r}")
        return value
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(f"{path}: an integer is expected, not {value!r}")
        return value
    if typ == "bool":
        if not isinstance(value, bool):
            raise Invalid(f"{path}: true or false is expected, not {value!r}")
        return value
    if typ == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise Invalid(f"{path}: a number is expected, not {value!r}")
        return value
    listed = re.fullmatch(r"list\[(.+)\]", typ)
    if listed:
        if not isinstance(value, list):
            raise Invalid(f"{path}: a list is expected")
        return [check(v, listed.group(1), f"{path}[{i}]") for i, v in enumerate(value)]
    mapped = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if mapped:
        if not isinstance(value, dict):
            raise Invalid(f"{path}: a map is expected")
        return {k: check(v, mapped.group(1), f"{path}.{k}") for k, v in value.items()}
    cls = getattr(models, typ)
    if not isinstance(value, dict):
        raise Invalid(f"{path}: an object ({typ}) is expected")
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs = {}
    for key, v in value.items():
        if key not in fields:
            raise Invalid(f"{path}: unknown field {key!r} in {typ}")
        kwargs[fields[key]] = check(v, cls.openapi_types[fields[key]], f"{path}.{key}")
    try:
        cls(**kwargs)
    except ValueError as err:
        raise Invalid(f"{path}: {err}") from None
    return kwargs


def main(files):
    docs, errors = [], []
    for file in files:
        with open(file, encoding="utf-8") as f:
            try:
                loaded = list(yaml.safe_load_all(f))
            except yaml.YAMLError as err:
                errors.append(f"{file}: not YAML: {' '.join(str(err).split())}")
                continue
            for n, doc in enumerate(loaded):
                if doc is None:
                    continue
                name = f"{file}: document {n + 1}"
                try:
                    if not isinstance(doc.get("apiVersion"), str) or not isinstance(doc.get("kind"), str):
                        raise Invalid("apiVersion and kind are required")
                    name = f"{file}: {doc['kind']} {doc.get('metadata', {}).get('name')}"
                    check(doc, model_class(doc["apiVersion"], doc["kind"]).__name__, doc["kind"])
                    if not doc.get("metadata", {}).get("name"):
                        raise Invalid("metadata.name is required")
                    docs.append(doc)
                except Invalid as err:
                    errors.append(f"{name}: {err}")
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        sys.exit(1)
    json.dump(docs, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
