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
        if not self.env.context.get("install_mode"):
            records = super().create(vals_list)
            self.env.registry.clear_cache()
            return records
        # Loading a module's data: a record it declares may exist already,
        # declared by another module or created on first use. It takes the
        # declared values (unless its own data is noupdate) and the new XML id.
        existing = [self._same_record(vals) for vals in vals_list]
        new_vals_list = [vals for vals, record in zip(vals_list, existing) if not record]
        created = iter(super().create(new_vals_list))
        for vals, record in zip(vals_list, existing):
            if record and not record.get_metadata()[0].get("noupdate"):
                record.write(vals)
        self.env.registry.clear_cache()
        return self.browse([(record or next(created)).id for record in existing])

    def _same_record(self, vals):
        """The record that ``vals``, declared in a module's data, stands for, if any."""
        raise NotImplementedError

    def write(self, vals):
        result = super().write(vals)
        self.env.registry.clear_cache()
        return result

    def unlink(self):
        result = super().unlink()
        self.env.registry.clear_cache()
        return result
