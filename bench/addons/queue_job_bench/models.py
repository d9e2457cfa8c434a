# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from odoo import models


class ResPartner(models.Model):
    _inherit = "res.partner"

    def bench_noop(self, number):
        """The benchmark's job: nothing, so that only the queue's own cost is measured.

        ``number`` makes every job's arguments different, as in real use.
        """
        return None
