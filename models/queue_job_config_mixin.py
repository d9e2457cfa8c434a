# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
from odoo import api, models


class QueueJobConfigMixin(models.AbstractModel):
    """Configuration that every enqueue reads through an ``ormcache``.

    Channels and job functions are read on each ``with_delay()``: their
    caches are cleared on any change, in this process and, through the
    registry's signaling, in the others.
    """

    _name = "queue.job.config.mixin"
    _description = "Job queue configuration cached by the enqueue path"

    @api.model_create_multi
    def create(self, vals_list):
        records = super().create(vals_list)
        self.env.registry.clear_cache()
        return records

    def write(self, vals):
        result = super().write(vals)
        self.env.registry.clear_cache()
        return result

    def unlink(self):
        result = super().unlink()
        self.env.registry.clear_cache()
        return result
