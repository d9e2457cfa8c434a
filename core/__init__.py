# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The part of the addon that needs no Odoo: what the models and the runner share.

``states`` (the state vocabulary and its SQL spellings), ``schema`` (the
database objects the ORM cannot declare, the claim function among them),
``transitions`` (every other statement that changes a job's state),
``claim`` (the runners' claim, liveness lock and rescue), ``channels`` and
``settings`` (the runner's configuration), ``isolation`` (READ COMMITTED
where workers race). None of them imports Odoo: the tests in ``tests/pure``
run them on plain psycopg2 (``test_core_imports_no_odoo`` checks it).
"""
