#!/usr/bin/python3
"""Offline check of Kubernetes objects against the API's own schema.

The schema is the one the official Python client (Debian's python3-kubernetes)
was generated from: every model class carries the OpenAPI field names and
types (`attribute_map`, `openapi_types`) and refuses a missing required field
when built. This walks each object strictly, like `kubeconform -strict`: an
unknown field, a value of the wrong type, a missing required field, or a kind
that its apiVersion does not serve is an error naming its path.

stdin: a JSON array of {"name": str, "doc": object}.
stdout: a JSON array of "name: path: problem" strings (empty: all valid).
"""
import json
import re
import sys

import kubernetes
import kubernetes.client as k8s

SCALARS = {'str': str, 'int': int, 'float': (int, float), 'bool': bool}


def snake(kind):
    return re.sub(r'(?<!^)(?=[A-Z])', '_', kind).lower()


def model_for(api_version, kind):
    """The model class of kind in api_version, if that group/version serves it."""
    group, _, version = api_version.rpartition('/')
    words = [w.capitalize() for w in group.replace('.k8s.io', '').split('.') if w]
    api = getattr(k8s, ''.join(words or ['Core']) + version.capitalize() + 'Api', None)
    served = api is not None and any(
        hasattr(api, f'create_{scope}{snake(kind)}') for scope in ('', 'namespaced_')
    )
    cls = getattr(k8s, version.capitalize() + kind, None)
    return cls if served else None


class Walk:
    def __init__(self, name):
        self.name = name
        self.errors = []

    def bad(self, path, problem):
        self.errors.append(f'{self.name}: {path}: {problem}')

    def value(self, v, t, path):
        """Checks v against the client's type string t; returns the value to build with."""
        if v is None:
            return None
        m = re.fullmatch(r'list\[(.+)\]', t)
        if m:
            if not isinstance(v, list):
                return self.bad(path, f'must be a list ({t})')
            return [self.value(x, m.group(1), f'{path}[{i}]') for i, x in enumerate(v)]
        m = re.fullmatch(r'dict\(str, (.+)\)', t)
        if m:
            if not isinstance(v, dict):
                return self.bad(path, f'must be a map ({t})')
            return {k: self.value(x, m.group(1), f'{path}.{k}') for k, x in v.items()}
        if t in SCALARS:
            if isinstance(v, bool) != (t == 'bool') or not isinstance(v, SCALARS[t]):
                return self.bad(path, f'must be {t}, not {type(v).__name__} {json.dumps(v)}')
            return v
        if t in ('object', 'datetime', 'date'):
            return v  # int-or-string, raw extensions, timestamps: any JSON
        cls = getattr(k8s, t, None)
        if cls is None:
            return self.bad(path, f'the schema names an unknown type {t}')
        return self.model(v, cls, path)

    def model(self, v, cls, path):
        if not isinstance(v, dict):
            return self.bad(path, f'must be an object ({cls.__name__})')
        by_json = {j: py for py, j in cls.attribute_map.items()}
        kwargs = {}
        for key, x in v.items():
            py = by_json.get(key)
            if py is None:
                self.bad(f'{path}.{key}', f'unknown field (not in {cls.__name__})')
                continue
            kwargs[py] = self.value(x, cls.openapi_types[py], f'{path}.{key}')
        try:
            return cls(**kwargs)
        except ValueError as e:
            # the generated setters name the field: "Invalid value for `name`, must not be `None`"
            self.bad(path, f'{cls.__name__}: {e}')
            return None


def check(name, doc):
    w = Walk(name)
    if not isinstance(doc, dict):
        w.bad('$', 'not an object')
        return w.errors
    api_version, kind = doc.get('apiVersion'), doc.get('kind')
    if not isinstance(api_version, str) or not isinstance(kind, str):
        w.bad('$', 'apiVersion and kind are required strings')
        return w.errors
    cls = model_for(api_version, kind)
    if cls is None:
        w.bad('$', f'{api_version} serves no kind {kind}')
        return w.errors
    w.model(doc, cls, '$')
    return w.errors


def main():
    items = json.load(sys.stdin)
    errors = [e for item in items for e in check(item['name'], item['doc'])]
    json.dump({'schema': f'kubernetes python client {kubernetes.__version__}', 'errors': errors},
              sys.stdout)


main()
