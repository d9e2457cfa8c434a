# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Switch in place from OCA's queue_job (19.0.2.x): adopt its jobs.

Odoo runs this on ``-u queue_job`` from any version below 19.0.3.0.0, after
the tables have our columns; on a database of ours it does nothing
(``from_oca`` looks at the database, not at the version).
"""

from odoo.addons.queue_job import from_oca


def migrate(cr, version):
    from_oca.adopt(cr)
