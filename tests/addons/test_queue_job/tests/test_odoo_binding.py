# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""The runner's Odoo binding: connections bounded per database."""

import threading

from unittest.mock import patch

from odoo.sql_db import PoolError
from odoo.tests import TransactionCase, tagged
from odoo.tools import config

from odoo.addons.queue_job.jobrunner.odoo_binding import OdooBinding


@tagged("post_install", "-at_install")
class TestOdooBinding(TransactionCase):
    @patch.dict(config._runtime_options, {"db_maxconn": 3})
    def test_each_database_has_a_pool_of_its_own(self):
        binding = OdooBinding({})
        thread = threading.current_thread()
        test_dbname = thread.dbname
        cursors = []
        try:
            for db_name in (self.env.cr.dbname, "postgres"):
                cursors += [binding.cursor(db_name) for _executor in range(3)]
            for cr in cursors:
                cr.execute("SELECT pg_backend_pid()")
            self.assertEqual(len({cr.fetchone()[0] for cr in cursors}), 6)
            with self.assertRaises(PoolError, msg="a fourth connection on one database"):
                binding.cursor(self.env.cr.dbname)
            cursors.pop().close()
            cursors.append(binding.cursor("postgres"))  # a connection given back is lent again
        finally:
            for cr in cursors:
                cr.close()
            for pool in binding._pools.values():
                pool.close_all()
            thread.dbname = test_dbname
