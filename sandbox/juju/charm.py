# Loads a machine charm (directory or .charm zip) into the controller's store and parses
# its contract: metadata (or charmcraft.yaml), config options and action schemas.
import os
import shutil
import stat
import zipfile

import yaml


class CharmError(Exception):
    pass


CONFIG_TYPES = {"string", "int", "float", "boolean", "secret"}
CHARMCRAFT_META_KEYS = ("name", "summary", "description", "provides", "requires", "peers",
                        "subordinate", "storage", "extra-bindings", "resources", "assumes",
                        "containers", "devices", "payloads", "terms", "series")


def _load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise CharmError(f"cannot read {os.path.basename(path)}: {e}") from e
    return data if data is not None else {}


def unpack(src, dest):
    """Copy a charm directory or extract a .charm zip into dest, keeping file modes."""
    if os.path.isdir(src):
        shutil.copytree(src, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", "build"))
        return
    if not zipfile.is_zipfile(src):
        raise CharmError(f'invalid charm or bundle provided at "{src}"')
    os.makedirs(dest)
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            name = os.path.normpath(info.filename)
            if name.startswith("..") or os.path.isabs(name):
                raise CharmError(f"charm archive has an unsafe path: {info.filename}")
            target = os.path.join(dest, name)
            mode = (info.external_attr >> 16) & 0o7777
            ftype = (info.external_attr >> 16) & 0o170000
            if info.is_dir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if ftype == stat.S_IFLNK:
                os.symlink(z.read(info).decode(), target)
                continue
            with z.open(info) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.chmod(target, mode if mode else 0o644)


def read_contract(charm_dir):
    """Return (metadata, config options, actions) from an unpacked charm."""
    meta_path = os.path.join(charm_dir, "metadata.yaml")
    craft_path = os.path.join(charm_dir, "charmcraft.yaml")
    craft = _load_yaml(craft_path) if os.path.exists(craft_path) else {}
    if os.path.exists(meta_path):
        meta = _load_yaml(meta_path)
    elif craft.get("name"):
        # an unpacked charmcraft project: charmcraft pack would generate metadata.yaml from it
        meta = {k: craft[k] for k in CHARMCRAFT_META_KEYS if k in craft}
        if "title" in craft:
            meta["display-name"] = craft["title"]
    else:
        raise CharmError(f'invalid charm or bundle provided at "{charm_dir}"')
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise CharmError("charm metadata: name is missing")
    cfg_path = os.path.join(charm_dir, "config.yaml")
    config = _load_yaml(cfg_path) if os.path.exists(cfg_path) else craft.get("config", {})
    act_path = os.path.join(charm_dir, "actions.yaml")
    actions = _load_yaml(act_path) if os.path.exists(act_path) else craft.get("actions", {})
    options = (config or {}).get("options") or {}
    for name, opt in options.items():
        opt = opt or {}
        options[name] = opt
        t = opt.get("type", "string")
        if t not in CONFIG_TYPES:
            raise CharmError(f'invalid config: option "{name}" has unknown type "{t}"')
        opt["type"] = t
    endpoints = {}
    for role in ("provides", "requires", "peers"):
        for ep, spec in (meta.get(role) or {}).items():
            if isinstance(spec, str):
                spec = {"interface": spec}
            if not isinstance(spec, dict) or "interface" not in spec:
                raise CharmError(f"charm metadata: endpoint {ep} has no interface")
            endpoints[ep] = {"role": {"provides": "provider", "requires": "requirer",
                                      "peers": "peer"}[role],
                             "interface": spec["interface"],
                             "scope": spec.get("scope", "global"),
                             "limit": spec.get("limit"),
                             "optional": bool(spec.get("optional", False))}
    # every charm implicitly provides juju-info (what subordinates usually attach to)
    endpoints.setdefault("juju-info", {"role": "provider", "interface": "juju-info",
                                       "scope": "global", "limit": None, "optional": False,
                                       "implicit": True})
    meta["_endpoints"] = endpoints
    return meta, options, actions or {}


def coerce_option(opt, raw, name):
    """Turn a CLI string into the option's typed value; raises CharmError like Juju."""
    t = opt.get("type", "string")
    try:
        if t == "int":
            return int(raw, 0) if isinstance(raw, str) else int(raw)
        if t == "float":
            return float(raw)
        if t == "boolean":
            if isinstance(raw, bool):
                return raw
            low = raw.lower()
            if low in ("true", "1", "t", "yes", "y", "on"):
                return True
            if low in ("false", "0", "f", "no", "n", "off"):
                return False
            raise ValueError
    except ValueError:
        type_name = {"int": "int", "float": "float", "boolean": "bool"}[t]
        raise CharmError(f'option "{name}" expected {"boolean" if t == "boolean" else type_name}, '
                         f'got "{raw}"') from None
    return str(raw)


def default_value(opt):
    d = opt.get("default")
    if d is None:
        return None
    t = opt.get("type", "string")
    if t == "float":
        return float(d)
    if t == "int":
        return int(d)
    return d


def validate_action_params(actions, name, params):
    """Validate params against the action's JSON schema and insert defaults, as Juju does."""
    import jsonschema

    spec = actions.get(name) or {}
    schema = {"type": "object", "properties": spec.get("params") or {}}
    if spec.get("required"):
        schema["required"] = spec["required"]
    if "additionalProperties" in spec:
        schema["additionalProperties"] = spec["additionalProperties"]
    out = dict(params)
    for key, prop in (spec.get("params") or {}).items():
        if key not in out and isinstance(prop, dict) and "default" in prop:
            out[key] = prop["default"]
    try:
        jsonschema.validate(out, schema)
    except jsonschema.ValidationError as e:
        raise CharmError(f'validation failed: (root) : {e.message}') from None
    except jsonschema.SchemaError as e:
        raise CharmError(f"invalid params schema for action {name}: {e.message}") from None
    return out
