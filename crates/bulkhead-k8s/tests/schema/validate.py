"""Validates Kubernetes objects against the OpenAPI (JSON) schemas of one Kubernetes
version, strictly (an unknown field is an error), with the kubernetes-validate package.

Usage: python validate.py VERSION FILE
FILE holds YAML documents. Prints one JSON object a line per document, in order:
{"index": N, "kind": ..., "apiVersion": ..., "name": ..., "result": R, "message": ...}
where R is "valid", "invalid" (the schema rejects it) or "no-schema" (the version has
no schema for that apiVersion and kind: a custom resource). Exit status 0 when every
document was looked at, whatever the results; 2 on a usage or read error.
"""

import json
import sys

import kubernetes_validate
import yaml


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: validate.py VERSION FILE", file=sys.stderr)
        return 2
    version, path = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    for index, document in enumerate(documents):
        line = {
            "index": index,
            "kind": document.get("kind"),
            "apiVersion": document.get("apiVersion"),
            "name": (document.get("metadata") or {}).get("name"),
        }
        try:
            kubernetes_validate.validate(document, version, strict=True)
            line["result"] = "valid"
        except kubernetes_validate.SchemaNotFoundError as e:
            line["result"] = "no-schema"
            line["message"] = str(e)
        except kubernetes_validate.ValidationError as e:
            line["result"] = "invalid"
            path_ = "/".join(str(p) for p in e.path)
            line["message"] = f"{path_}: {e.message}"
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
