# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""How job arguments are stored as JSON and brought back as the same objects.

The format is OCA ``queue_job``'s, so jobs stored by OCA's can be read here:
records and recordsets, dates and datetimes are tagged dicts
(``{"_type": "odoo_recordset", ...}``), tuples become lists. One difference:
a plain dict that has a ``_type`` key of its own is stored wrapped
(``{"_type": "dict", "value": {...}}``), so that it comes back as the dict it
was. OCA's stores it as it is, and reads back a dict that looks like a
recordset as records of the model, ids, user and superuser flag it names.

Everything is checked when the job is enqueued: a value that cannot be
stored raises there, at the call site, and not when the job runs.
"""

import datetime

from odoo import models

_PLAIN = (str, int, float, bool, type(None))


class UnstorableArgument(TypeError):
    """A job argument that JSON (or PostgreSQL's jsonb) cannot hold."""


def encode(value, path="argument"):
    """Return ``value`` as plain JSON data; ``path`` names it in errors."""
    if isinstance(value, str):
        if "\x00" in value:
            # PostgreSQL's jsonb rejects \u0000: refuse it now, not at commit.
            raise UnstorableArgument(f"{path} contains a NUL character (\\x00)")
        return value
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, models.BaseModel):
        return {
            "_type": "odoo_recordset",
            "model": value._name,
            "ids": list(value.ids),
            "uid": value.env.uid,
            "su": value.env.su,
            "context": encode(value._job_prepare_context_before_enqueue(), path),
        }
    if isinstance(value, datetime.datetime):
        return {"_type": "datetime_isoformat", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"_type": "date_isoformat", "value": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [encode(item, f"{path}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        encoded = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnstorableArgument(f"{path} has a non-string key {key!r}")
            encoded[encode(key, path)] = encode(item, f"{path}[{key!r}]")
        return {"_type": "dict", "value": encoded} if "_type" in encoded else encoded
    raise UnstorableArgument(
        f"{path} of type {type(value).__name__} cannot be stored in a job: "
        "use records, dates, datetimes, or JSON types (str, int, float, bool, "
        "None, list, tuple, dict)"
    )


def decode(value, env):
    """Return the objects ``encode`` stored; records are bound to ``env``'s
    cursor, with their stored context over ``env``'s."""
    if isinstance(value, list):
        return [decode(item, env) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("_type")
    if kind == "odoo_recordset":
        # The stored context goes over the reader's, as in OCA.
        context = dict(env.context, **decode(value.get("context") or {}, env))
        record_env = env(user=value["uid"], su=value.get("su", False), context=context)
        return record_env[value["model"]].browse(value["ids"])
    if kind == "datetime_isoformat":
        return datetime.datetime.fromisoformat(value["value"])
    if kind == "date_isoformat":
        return datetime.date.fromisoformat(value["value"])
    if kind == "dict":  # a dict with a "_type" key of its own, taken as it is
        value = value["value"]
    return {key: decode(item, env) for key, item in value.items()}
