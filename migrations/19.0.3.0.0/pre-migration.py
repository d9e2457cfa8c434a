# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""Switch in place from OCA's queue_job (19.0.2.x): before our tables are set up.

See ``post-migration.py``; on a database of ours this does nothing.
"""

from odoo.addons.queue_job import from_oca


def migrate(cr, version):
    from_oca.prepare(cr)
