# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""``JobSerialized``: a JSON field that holds records, dates and datetimes (OCA's field).

Values are stored in the format of the job arguments (``serialization.py``):
a model of any addon can keep records or dates in a jsonb column and read
them back as records bound to the reader's environment. ``JobEncoder`` and
``JobDecoder`` give that format to ``json.dumps``/``json.loads``.
"""

import json

from psycopg2.extras import Json

from odoo import fields, models
from odoo.tools.misc import SENTINEL

from . import serialization


def _empty_recordset(env):
    return env["base"]


class JobSerialized(fields.Json):
    """JSON with records, dates and datetimes; ``base_type`` says what it holds.

    ``base_type`` is ``dict``, ``list``, ``tuple`` or ``models.BaseModel``; an
    empty field reads as an empty value of that type (``{}``, ``[]``, or an
    empty recordset).
    """

    type = "job_serialized"
    _column_type = ("jsonb", "jsonb")

    _base_type = None

    # What an empty field reads as, by base type.
    _empty_values = {
        dict: lambda env: {},
        list: lambda env: [],
        tuple: lambda env: [],
        models.BaseModel: _empty_recordset,
    }

    def __init__(self, string=SENTINEL, base_type=SENTINEL, **kwargs):
        super().__init__(string=string, _base_type=base_type, **kwargs)

    def _setup_attrs__(self, model, name):  # pylint: disable=missing-return
        super()._setup_attrs__(model, name)
        if self._base_type not in self._empty_values:
            raise ValueError(
                f"{model._name}.{name}: base_type must be one of dict, list, tuple "
                f"or models.BaseModel, got {self._base_type!r}"
            )

    def convert_to_cache(self, value, record, validate=True):
        # The cache holds the JSON text, as OCA's field does.
        if isinstance(value, self._base_type):
            return json.dumps(serialization.encode(value, self.name))
        return value or None

    def convert_to_column(self, value, record, values=None, validate=True):
        value = self.convert_to_cache(value, record, validate=validate)
        return None if value is None else Json(json.loads(value))

    def convert_to_record(self, value, record):
        if not value:
            return self._empty_values[self._base_type](record.env)
        if isinstance(value, (str, bytes, bytearray)):
            value = json.loads(value)
        return serialization.decode(value, record.env)

    def convert_to_export(self, value, record):
        if not value:
            return ""
        return json.dumps(serialization.encode(value, self.name))


class JobEncoder(json.JSONEncoder):
    """``json.dumps(value, cls=JobEncoder)``: records, dates and datetimes
    as job arguments store them."""

    def iterencode(self, o, _one_shot=False):
        # The whole value at once, not only what json cannot write itself
        # (``default``): a plain dict with a "_type" key must be wrapped.
        # Raises UnstorableArgument (a TypeError, as json's) for the rest.
        return super().iterencode(serialization.encode(o, type(o).__name__), _one_shot)


class JobDecoder(json.JSONDecoder):
    """``json.loads(text, cls=JobDecoder, env=env)``: what :class:`JobEncoder`
    wrote, records bound to ``env``."""

    def __init__(self, *args, env, **kwargs):
        super().__init__(*args, **kwargs)
        self._env = env

    def decode(self, s, *args, **kwargs):
        # The whole document at once, not dict by dict from the innermost
        # (``object_hook``): a wrapped dict's content is not a tag.
        return serialization.decode(super().decode(s, *args, **kwargs), self._env)
