# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The jobrunner: runs the jobs, in threads of its own process, coordinated through PostgreSQL.

``databases`` and ``runner`` import nothing from Odoo (the pure tests use
them on plain psycopg2), and take the claim, the channels and the settings
from ``core/``; ``odoo_binding``, ``server`` and ``__main__`` are their Odoo
side. Nothing is imported here,
so that importing the addon does not import the runner.
"""
