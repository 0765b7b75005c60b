"""Configuration schemas of the chromecast module, checked by hand.

Kept apart from the gRPC code so it can be read (and tested) on its own.
Validators return (value, errors): errors is a list of FieldError, each with a
path such as "devices[1].port"; the module turns them into one
INVALID_ARGUMENT status.  Unknown keys are errors too: a typo ("prot") must
not silently fall back to a default.

Module configuration (ApplyConfig):

    {
      "devices": [                      # optional, default []: devices by address
        {"name": "living-room",         # required, unique, [A-Za-z0-9_.-]{1,64}: the entity id
         "host": "192.168.1.20",        # required, IPv4/IPv6 address or hostname
         "port": 8009}                  # optional, 1..65535, default 8009
      ],
      "discovery": false,               # optional, default false: find devices over mDNS
      "mdns_interfaces": ["192.168.1.5"],  # optional: local addresses to run mDNS on
                                        # (default: every interface)
      "retry_interval_ms": 5000         # optional, 100..600000: reconnect wait for a device
    }

cast_target entity configuration (ConfigureEntity):

    {"volume": 0.5}                     # optional, 0.0..1.0: set the device's volume
"""

import ipaddress
import re

DEFAULT_CAST_PORT = 8009
DEFAULT_RETRY_MS = 5000
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class FieldError:
    """One problem in a configuration, at a field path."""

    def __init__(self, path, message):
        self.path = path or "<root>"
        self.message = message

    def __str__(self):
        return f"{self.path}: {self.message}"

    def __repr__(self):
        return f"FieldError({self.path!r}, {self.message!r})"


def _join(prefix, key):
    return f"{prefix}.{key}" if prefix else key


def is_valid_host(host):
    """An IP address, or a hostname made of RFC 1123 labels."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    if labels[-1].isdigit():  # "300.1.1.1" is a bad address, not a hostname
        return False
    return all(_HOST_LABEL_RE.match(label) for label in labels)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_value(value):
    """JSON numbers may arrive as floats (google.protobuf.Struct has only
    doubles): accept 8009.0 as 8009, reject 8009.5."""
    if _is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _check_keys(obj, allowed, prefix, errors):
    for key in obj:
        if key not in allowed:
            errors.append(FieldError(_join(prefix, key), "unknown field"))


def validate_device(obj, prefix):
    errors = []
    if not isinstance(obj, dict):
        return None, [FieldError(prefix, "must be an object")]
    _check_keys(obj, ("name", "host", "port"), prefix, errors)

    name = obj.get("name")
    if name is None:
        errors.append(FieldError(_join(prefix, "name"), "is required"))
    elif not isinstance(name, str) or not NAME_RE.match(name):
        errors.append(FieldError(_join(prefix, "name"),
                                 "must be 1-64 characters of A-Z a-z 0-9 _ . -"))

    host = obj.get("host")
    if host is None:
        errors.append(FieldError(_join(prefix, "host"), "is required"))
    elif not isinstance(host, str) or not is_valid_host(host):
        errors.append(FieldError(_join(prefix, "host"), "must be an IP address or a hostname"))

    port = _int_value(obj.get("port", DEFAULT_CAST_PORT))
    if port is None or not 1 <= port <= 65535:
        errors.append(FieldError(_join(prefix, "port"), "must be an integer in 1..65535"))

    if errors:
        return None, errors
    return {"name": name, "host": host, "port": port}, []


def validate_module_config(config):
    """Check the module configuration; returns (normalized config, errors)."""
    if not isinstance(config, dict):
        return None, [FieldError("", "configuration must be an object")]
    errors = []
    _check_keys(config, ("devices", "discovery", "mdns_interfaces", "retry_interval_ms"), "", errors)

    devices = []
    raw_devices = config.get("devices", [])
    if not isinstance(raw_devices, list):
        errors.append(FieldError("devices", "must be a list"))
        raw_devices = []
    seen = {}
    for i, raw in enumerate(raw_devices):
        prefix = f"devices[{i}]"
        device, device_errors = validate_device(raw, prefix)
        errors.extend(device_errors)
        if device is None:
            continue
        if device["name"] in seen:
            errors.append(FieldError(_join(prefix, "name"),
                                     f"duplicate of devices[{seen[device['name']]}].name"))
            continue
        seen[device["name"]] = i
        devices.append(device)

    discovery = config.get("discovery", False)
    if not isinstance(discovery, bool):
        errors.append(FieldError("discovery", "must be true or false"))

    interfaces = config.get("mdns_interfaces", [])
    if not isinstance(interfaces, list):
        errors.append(FieldError("mdns_interfaces", "must be a list of IP addresses"))
        interfaces = []
    for i, addr in enumerate(interfaces):
        try:
            ipaddress.ip_address(addr if isinstance(addr, str) else "")
        except ValueError:
            errors.append(FieldError(f"mdns_interfaces[{i}]", "must be an IP address of a local interface"))

    retry = _int_value(config.get("retry_interval_ms", DEFAULT_RETRY_MS))
    if retry is None or not 100 <= retry <= 600000:
        errors.append(FieldError("retry_interval_ms", "must be an integer in 100..600000"))

    if errors:
        return None, errors
    return {"devices": devices, "discovery": discovery, "mdns_interfaces": list(interfaces),
            "retry_interval_ms": retry}, []


def validate_entity_config(config):
    """Check a cast_target entity's configuration; returns (normalized config, errors)."""
    if not isinstance(config, dict):
        return None, [FieldError("", "configuration must be an object")]
    errors = []
    _check_keys(config, ("volume",), "", errors)
    volume = config.get("volume")
    if volume is not None and (not _is_number(volume) or not 0.0 <= volume <= 1.0):
        errors.append(FieldError("volume", "must be a number in 0.0..1.0"))
    if errors:
        return None, errors
    return ({"volume": float(volume)} if volume is not None else {}), []
