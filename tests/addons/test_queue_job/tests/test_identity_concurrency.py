# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl.html)
"""identity_key holds across concurrent transactions: PostgreSQL decides.

Odoo's transactions run in REPEATABLE READ: the enqueue that loses the race
fails with a serialization error, and Odoo's request handling (``retrying``)
runs it again, when it finds the winner's job.
"""

import threading
import time
import uuid

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.exceptions import ConcurrencyError
from odoo.orm.environments import Transaction
from odoo.sql_db import db_connect
from odoo.tests import TransactionCase, tagged


@tagged("post_install", "-at_install")
class TestIdentityConcurrency(TransactionCase):
    def real_cursor(self):
        """A cursor on a connection of its own, outside the test transaction.

        Its transaction is bound to the test's registry up front: building one
        from the database name would wait for the registry lock, which the
        test runner holds while tests run.
        """
        cr = db_connect(self.env.cr.dbname).cursor()
        cr.transaction = Transaction(self.registry)
        return cr

    @staticmethod
    def retrying(func, cr, tries=5):
        """Run ``func`` again after a concurrency error, as Odoo's requests do.

        (``odoo.service.model.retrying`` itself reloads the registry, whose
        lock the test runner holds while tests run.)
        """
        for _try in range(tries - 1):
            try:
                result = func()
                cr.commit()
                return result
            except (psycopg2.errors.SerializationFailure, ConcurrencyError):
                cr.rollback()
        return func()

    def test_concurrent_enqueues_store_one_job(self):
        key = f"concurrent-{uuid.uuid4()}"
        start = threading.Barrier(2)
        uuids, errors = [], []

        def enqueue_and_hold(env):
            job = env["test.queue.job"].with_delay(identity_key=key).echo(key)
            # Keep the transaction open: the other enqueue must wait on it.
            time.sleep(0.3)
            return job

        def enqueue():
            try:
                with self.real_cursor() as cr:
                    env = api.Environment(cr, SUPERUSER_ID, {})
                    start.wait()
                    uuids.append(self.retrying(lambda: enqueue_and_hold(env), cr).uuid)
            except Exception as err:  # noqa: BLE001 - reported by the assertion below
                errors.append(err)

        threads = [threading.Thread(target=enqueue) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            self.assertEqual(errors, [])
            self.assertEqual(len(uuids), 2)
            self.assertEqual(uuids[0], uuids[1], "both enqueues return the same job")
            with self.real_cursor() as cr:
                cr.execute("SELECT count(*) FROM queue_job WHERE identity_key = %s", (key,))
                self.assertEqual(cr.fetchone()[0], 1)
        finally:
            with self.real_cursor() as cr:
                cr.execute("DELETE FROM queue_job WHERE identity_key = %s", (key,))
