# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""``test.queue.job.hold_a_slot``, the capacity probe of tests/e2e/test_chaos.py."""

from odoo.sql_db import db_connect
from odoo.tests import TransactionCase, tagged

from ..models.test_queue_job import SLOT_LOCK_NAMESPACE


@tagged("post_install", "-at_install")
class TestHoldASlot(TransactionCase):
    def test_takes_the_first_free_slot_or_says_none_is_free(self):
        record = self.env["test.queue.job"].create({"name": "slots"})
        # Another transaction, as another job, holds slot 0.
        with db_connect(self.env.cr.dbname).cursor() as other:
            other.execute("SELECT pg_advisory_xact_lock(%s, 0)", (SLOT_LOCK_NAMESPACE,))
            self.assertEqual(record.hold_a_slot(1, 0), "no free slot")
            self.assertEqual(record.hold_a_slot(2, 0), "slot 1")
        self.assertEqual(record.log_ids.mapped("tag"), ["no free slot", "slot 1"])
